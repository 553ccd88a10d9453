"""A worker instance: claims its id, serves its metrics, and runs each stage in a child
process of its own (``streams.worker.stage``), restarting one that ends.

Why processes: the stages are Python, and in one process they share one interpreter
lock, so an instance never used more than one core however many the machine had.

The instance keeps its pid for life (supervisord, pid files and signals address it);
a child is replaced, never the instance. A child dies with the instance (the kernel's
parent-death signal), so a ``kill -9`` of the instance leaves no orphan stage running
beside the one its restart starts. Metrics: each child writes its own to files in
``<state>/worker-<id>/metrics/`` (prometheus_client's multiprocess mode) and the
instance serves their sum on ``/metrics``; a restarted child's counters carry on from
its predecessor's.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector, multiprocess, start_http_server

from streams import instance
from streams.config import logs
from streams.config.settings import Settings
from streams.contract.members import Advert
from streams.kafka import admin, applied, credentials
from streams.kafka.admin import AdminError, BrokerUnreachable
from streams.kafka.members import StageMember, stage_members
from streams.kafka.serde import RegistryUnreachable

log = logging.getLogger("govsync.worker")

STAGES = ("normalize", "route", "ledger")
FLAG = "--stage"
# What a stage child learns from its instance, besides the GOVSYNC_* settings.
CLIENT_ID_ENV = "GOVSYNC_WORKER_CLIENT_ID"
PARENT_ENV = "GOVSYNC_WORKER_PARENT"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A child exits with this when the applied topology changed what it cannot take live
# (sources, entities): every stage starts again on the new one.
EXIT_RESTART_ALL = 75

WATCH_INTERVAL_S = 0.5
RESTART_BACKOFF_S = 2.0
STOP_WAIT_S = 30.0
START_WAIT_S = 120.0
WILDCARDS = ("0.0.0.0", "::", "")  # bind addresses no other process can connect to


@dataclass
class Child:
    stage: str
    process: subprocess.Popen[bytes]
    started: float


def serve(settings: Settings, stop: threading.Event | None = None) -> None:
    """Run the stages until SIGTERM/SIGINT (or ``stop``); each finishes its transaction."""
    stop = stop or stop_on_signals()
    metrics_dir = instance.instance_dir(settings.state_dir, settings.worker_instance) / "metrics"
    # Left from an earlier run of this instance: its processes are gone, and their
    # counters would be summed in forever.
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    children: dict[str, Child] = {}
    advert = _serve_metrics(settings, _registry(metrics_dir, children))
    environment = {
        **os.environ,
        "GOVSYNC_WORKER_INSTANCE": settings.worker_instance,
        CLIENT_ID_ENV: advert.client_id(),
        PARENT_ENV: str(os.getpid()),
        MULTIPROC_ENV: str(metrics_dir),
    }
    children.update({name: _start(name, environment) for name in STAGES})
    log.info(
        "worker ready: stages %s",
        ", ".join(f"{c.stage} (pid {c.process.pid})" for c in children.values()),
    )
    while not stop.wait(WATCH_INTERVAL_S):
        for name, child in list(children.items()):
            code = child.process.poll()
            if code is None:
                continue
            if code == EXIT_RESTART_ALL:
                log.warning("%s asked for every stage to restart on the new topology", name)
                _stop_all(children.values())
                for ended in children.values():
                    multiprocess.mark_process_dead(ended.process.pid, str(metrics_dir))
                children.update({stage: _start(stage, environment) for stage in STAGES})
                break
            multiprocess.mark_process_dead(child.process.pid, str(metrics_dir))
            log.error(
                "stage %s (pid %d) exited with %s; starting it again", name, child.process.pid, code
            )
            # Not in a tight loop when it cannot start (e.g. the broker is down).
            stop.wait(max(0.0, RESTART_BACKOFF_S - (time.monotonic() - child.started)))
            children[name] = _start(name, environment)
    _stop_all(children.values())
    log.info("worker stopped")


def _start(stage: str, environment: dict[str, str]) -> Child:
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.worker", FLAG, stage], env=environment
    )
    return Child(stage, process, time.monotonic())


def _stop_all(children: Iterable[Child]) -> None:
    running = [c for c in children if c.process.poll() is None]
    for child in running:
        child.process.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    for child in running:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("stage %s did not stop within %.0fs; killing it", child.stage, STOP_WAIT_S)
            child.process.kill()
            child.process.wait()


def _registry(metrics_dir: Path, children: dict[str, Child]) -> CollectorRegistry:
    """The stages' metrics, summed; the instance's process metrics (``process_*``), and
    each stage process's as ``govsync_stage_<name>_process_*`` (memory, CPU, start)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))
    ProcessCollector(registry=registry)
    for name in STAGES:
        ProcessCollector(
            namespace=f"govsync_stage_{name}",
            pid=lambda name=name: children[name].process.pid if name in children else "self",
            registry=registry,
        )
    return registry


def _serve_metrics(settings: Settings, registry: CollectorRegistry) -> Advert:
    """Serve ``registry`` on /metrics (on a free port when ``worker_port`` is 0); what
    this instance advertises to the stage groups."""
    try:
        server, _ = start_http_server(
            settings.worker_port, addr=settings.listen_host, registry=registry
        )
    except OSError as exc:
        log.error(
            "the metrics port %s:%d is taken (%s); set GOVSYNC_WORKER_PORT=0 for a free one",
            settings.listen_host,
            settings.worker_port,
            exc.strerror,
        )
        sys.exit(1)
    # Advertised: the address bound to, if one; else GOVSYNC_HOST; else this host's FQDN.
    candidates = (settings.listen_host, settings.host)
    reachable = next((a for a in candidates if a not in WILDCARDS), socket.getfqdn())
    advert = Advert(
        instance=settings.worker_instance,
        host=socket.gethostname(),
        metrics_url=f"http://{reachable}:{server.server_port}/metrics",
    )
    log.info("worker instance %s: metrics on %s", advert.instance, advert.metrics_url)
    return advert


def stop_on_signals() -> threading.Event:
    """Set when SIGTERM or SIGINT arrives."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def wait_for_stack(settings: Settings) -> applied.InForce:
    """The topology in force, once Kafka and the registry answer and it is applied. A
    worker is a daemon: it is often started, or a stage restarted, while a broker is
    still coming back, and must wait for it rather than exit."""
    deadline = time.monotonic() + START_WAIT_S
    while True:
        try:
            # What was applied, not what the file says now: editing it is not applying it.
            current = applied.in_force(settings)
            applied.check_applied(current.topology, settings)
            return current
        except (BrokerUnreachable, RegistryUnreachable) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("waiting for the stack: %s", exc)
            time.sleep(2)


def _members(settings: Settings) -> list[StageMember]:
    """The stage groups' members, once the group coordinator answers: after a broker
    restart it may not for a while."""
    client = admin.admin_client(settings.bootstrap)
    deadline = time.monotonic() + START_WAIT_S
    while True:
        try:
            return stage_members(client)
        except AdminError as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("waiting for the stage groups: %s", exc)
            time.sleep(2)


def main() -> None:
    """Run a worker instance in this process (``python -m streams.worker``)."""
    logs.configure()
    settings = Settings.from_env().model_copy(update={"kafka_principal": credentials.WORKER})
    try:
        wait_for_stack(settings)
    except (BrokerUnreachable, RegistryUnreachable) as exc:
        log.error("%s", exc)
        sys.exit(3)
    except applied.NotApplied as exc:
        log.error("%s", exc)
        sys.exit(1)
    try:
        chosen, _lock = instance.claim(
            settings.state_dir, settings.worker_instance, socket.gethostname(), _members(settings)
        )
    except AdminError as exc:
        log.error("%s", exc)
        sys.exit(3)
    except (instance.InstanceInUse, ValueError) as exc:
        log.error("%s", exc)
        sys.exit(1)
    serve(settings.model_copy(update={"worker_instance": chosen}))
