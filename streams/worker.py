"""`govsync worker`: the normalize, route and ledger stages, each an exactly-once
transactional loop in its own thread, and the worker's Prometheus metrics on ``/metrics``."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from typing import NoReturn

from prometheus_client import start_http_server

from streams import instance
from streams.config import logs
from streams.config.settings import Settings
from streams.contract.members import Advert
from streams.engine.transactional import EngineConfig, Stage, Watchdog, run
from streams.kafka import admin, applied, credentials
from streams.kafka.admin import AdminError, BrokerUnreachable
from streams.kafka.members import StageMember, stage_members
from streams.kafka.serde import RegistryCodec, RegistryUnreachable, registry_client
from streams.model.topology import Topology, TopologyError
from streams.stages.ledger import LedgerStage
from streams.stages.normalize import NormalizeStage
from streams.stages.route import ReloadRefused, RouteStage
from streams.transform import masking

log = logging.getLogger("govsync.worker")

EXPIRY_INTERVAL_S = 3600.0
WATCH_INTERVAL_S = 1.0
# A transaction call still running this long after its own timeout is hung (Watchdog).
HANG_MARGIN_S = 3.0
TOPOLOGY_POLL_S = 1.0


def serve(
    settings: Settings,
    topology: Topology,
    applied_sha256: str | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``); each stage finishes its current transaction."""
    stop = stop or _stop_on_signals()
    codec = RegistryCodec(registry_client(settings))
    secrets_dir = settings.path("secrets")
    route = RouteStage(
        topology,
        codec,
        settings.bootstrap,
        lambda department: masking.department_key(secrets_dir, department),
        state_dir=instance.instance_dir(settings.state_dir, settings.worker_instance) / "route",
    )
    ledger = LedgerStage(topology, codec, settings.bootstrap, topology.kafka.partitions)
    stages: list[Stage] = [NormalizeStage(topology, codec), route, ledger]
    advert = _serve_metrics(settings)
    config = EngineConfig(
        bootstrap=settings.bootstrap,
        instance=settings.worker_instance,
        # What `govsync.ops.instances` and the monitor read back from the groups' members.
        consumer={"client.id": advert.client_id()},
    )
    configs = {stage.name: config for stage in stages}
    configs[ledger.name] = replace(
        config,
        principal=credentials.LEDGER,
        consumer={
            **config.consumer,
            # One instance owns partition p of every input topic, so the ledger holds
            # nothing back once every member knows every topic (stages/ledger.py).
            "partition.assignment.strategy": "range",
            # Delivery topics of new subscriptions are picked up within seconds.
            "topic.metadata.refresh.interval.ms": 5000,
        },
    )
    watchdog = Watchdog()
    threads = [
        threading.Thread(
            target=run,
            args=(stage, configs[stage.name], stop, watchdog),
            name=stage.name,
            daemon=True,
        )
        for stage in stages
    ]
    threads.append(
        threading.Thread(
            target=_follow_topology,
            args=(settings.bootstrap, route, ledger, applied_sha256, stop),
            name="topology",
            daemon=True,
        )
    )
    for thread in threads:
        thread.start()
    log.info("worker ready: %s", ", ".join(f"{s.name} <- {', '.join(s.topics)}" for s in stages))
    stall_limit = config.transaction_timeout + HANG_MARGIN_S
    last_expiry = time.monotonic()
    while not stop.wait(WATCH_INTERVAL_S):
        stalled = watchdog.stalled(stall_limit)
        if stalled:
            detail = ", ".join(f"{stage} for {seconds:.0f}s" for stage, seconds in stalled.items())
            _restart(f"stuck inside a Kafka transaction call ({detail})")
        if time.monotonic() - last_expiry > EXPIRY_INTERVAL_S:
            last_expiry = time.monotonic()
            log.info("dedup: expired %d event_ids", route.dedup.expire())
    for thread in threads:
        thread.join(timeout=30)
    log.info("worker stopped")


def _serve_metrics(settings: Settings) -> Advert:
    """Serve /metrics (on a free port when ``worker_port`` is 0); what this instance
    advertises to the stage groups."""
    try:
        server, _ = start_http_server(settings.worker_port, addr=settings.host)
    except OSError as exc:
        log.error(
            "the metrics port %s:%d is taken (%s); set GOVSYNC_WORKER_PORT=0 for a free one",
            settings.host,
            settings.worker_port,
            exc.strerror,
        )
        sys.exit(1)
    reachable = socket.getfqdn() if settings.host in ("0.0.0.0", "::", "") else settings.host
    advert = Advert(
        instance=settings.worker_instance,
        host=socket.gethostname(),
        metrics_url=f"http://{reachable}:{server.server_port}/metrics",
    )
    log.info("worker instance %s: metrics on %s", advert.instance, advert.metrics_url)
    return advert


def _follow_topology(
    bootstrap: str,
    route: RouteStage,
    ledger: LedgerStage,
    sha256: str | None,
    stop: threading.Event,
) -> None:
    """Take each newly applied topology: subscription changes (approval, fields, masks,
    new subscriptions) in place; changed sources or entities by restarting the worker."""
    for current in applied.follow(bootstrap, stop, TOPOLOGY_POLL_S):
        if current.sha256 == sha256:
            continue
        try:
            topology = current.topology()
            route.reload(topology)
            ledger.reload(topology)
        except TopologyError as exc:
            log.error("ignoring an invalid applied topology %s: %s", current.sha256[:12], exc)
        except ReloadRefused as exc:
            _restart(f"the applied topology {current.sha256[:12]} changed {exc}")
        else:
            log.info("now serving the topology applied at %s", current.applied_at.isoformat())
        sha256 = current.sha256


def _restart(reason: str) -> NoReturn:
    """Replace this process with a fresh worker (same pid, so pid files and signals still
    work). Its producers' init_transactions fence and abort open transactions; the
    committed offsets and the dedup changelog make the redo exactly once."""
    log.error("%s; restarting the worker", reason)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "streams.worker"])


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


START_WAIT_S = 120.0


def wait_for_stack(settings: Settings) -> applied.InForce:
    """The topology in force, once Kafka and the registry answer and it is applied. A
    worker is a daemon: it is often started, or re-executed by its watchdog, while a
    broker is still coming back, and must wait for it rather than exit."""
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
    restart (when the watchdog re-executes the worker) it may not for a while."""
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
    """Run the worker in this process, as the ``worker`` principal (also how the watchdog
    re-executes it: ``python -m streams.worker``)."""
    logs.configure()
    settings = Settings.from_env().model_copy(update={"kafka_principal": credentials.WORKER})
    try:
        current = wait_for_stack(settings)
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
    # The watchdog's re-exec (_restart) comes back as this same instance.
    os.environ["GOVSYNC_WORKER_INSTANCE"] = chosen
    settings = settings.model_copy(update={"worker_instance": chosen})
    serve(settings, current.topology, current.applied.sha256 if current.applied else None)


if __name__ == "__main__":
    main()
