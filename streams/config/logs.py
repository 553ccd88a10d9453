"""How govsync's long-running processes log: one line per event, naming the thread (each
stage runs in its own), with the HTTP clients' per-request lines kept out."""

from __future__ import annotations

import logging

FORMAT = "[%(asctime)s] %(levelname)s %(name)s %(threadName)s: %(message)s"


def configure() -> None:
    logging.basicConfig(level=logging.INFO, format=FORMAT)
    # One line per schema lookup would drown the process's own log.
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
