"""`govsync worker`: the normalize and route stages, each an exactly-once transactional
loop in its own thread, and the worker's Prometheus metrics on ``/metrics``."""

from __future__ import annotations

import logging
import signal
import threading

from prometheus_client import start_http_server

from streams.pipeline import NormalizeStage, RouteStage
from streams.serde import registry_client
from streams.settings import Settings
from streams.topology import Topology
from streams.transactional import EngineConfig, Stage, run

log = logging.getLogger("govsync.worker")

EXPIRY_INTERVAL_S = 3600.0


def serve(settings: Settings, topology: Topology, stop: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``); each stage finishes its current transaction."""
    stop = stop or _stop_on_signals()
    registry = registry_client(settings.registry_url)
    route = RouteStage(topology, registry, settings.bootstrap)
    stages: list[Stage] = [NormalizeStage(topology, registry), route]
    config = EngineConfig(bootstrap=settings.bootstrap, instance=settings.worker_instance)
    start_http_server(settings.worker_port, addr=settings.host)
    log.info("metrics on http://%s:%d/metrics", settings.host, settings.worker_port)
    threads = [
        threading.Thread(target=run, args=(stage, config, stop), name=stage.name, daemon=True)
        for stage in stages
    ]
    for thread in threads:
        thread.start()
    log.info("worker ready: %s", ", ".join(f"{s.name} <- {', '.join(s.topics)}" for s in stages))
    while not stop.wait(EXPIRY_INTERVAL_S):
        log.info("dedup: expired %d event_ids", route.dedup.expire())
    for thread in threads:
        thread.join(timeout=30)
    log.info("worker stopped")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
