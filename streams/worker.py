"""`govsync worker`: the normalize and route stages, each an exactly-once transactional
loop in its own thread, and the worker's Prometheus metrics on ``/metrics``."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import NoReturn

from prometheus_client import start_http_server

from streams.pipeline import NormalizeStage, RouteStage
from streams.serde import registry_client
from streams.settings import Settings
from streams.topology import Topology
from streams.transactional import EngineConfig, Stage, Watchdog, run

log = logging.getLogger("govsync.worker")

EXPIRY_INTERVAL_S = 3600.0
WATCH_INTERVAL_S = 5.0


def serve(settings: Settings, topology: Topology, stop: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``); each stage finishes its current transaction."""
    stop = stop or _stop_on_signals()
    registry = registry_client(settings.registry_url)
    route = RouteStage(topology, registry, settings.bootstrap)
    stages: list[Stage] = [NormalizeStage(topology, registry), route]
    config = EngineConfig(bootstrap=settings.bootstrap, instance=settings.worker_instance)
    start_http_server(settings.worker_port, addr=settings.host)
    log.info("metrics on http://%s:%d/metrics", settings.host, settings.worker_port)
    watchdog = Watchdog()
    threads = [
        threading.Thread(
            target=run, args=(stage, config, stop, watchdog), name=stage.name, daemon=True
        )
        for stage in stages
    ]
    for thread in threads:
        thread.start()
    log.info("worker ready: %s", ", ".join(f"{s.name} <- {', '.join(s.topics)}" for s in stages))
    stall_limit = 3 * config.transaction_timeout
    last_expiry = time.monotonic()
    while not stop.wait(WATCH_INTERVAL_S):
        stalled = watchdog.stalled(stall_limit)
        if stalled:
            _restart(stalled)
        if time.monotonic() - last_expiry > EXPIRY_INTERVAL_S:
            last_expiry = time.monotonic()
            log.info("dedup: expired %d event_ids", route.dedup.expire())
    for thread in threads:
        thread.join(timeout=30)
    log.info("worker stopped")


def _restart(stalled: dict[str, float]) -> NoReturn:
    """Replace this process with a fresh worker (same pid, so pid files and signals still
    work). Its producers' init_transactions fence and abort the hung transactions; the
    committed offsets and the dedup changelog make the redo exactly once."""
    detail = ", ".join(f"{stage} for {seconds:.0f}s" for stage, seconds in stalled.items())
    log.error("stuck inside a Kafka transaction call (%s); restarting the worker", detail)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "streams.cli", "worker"])


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
