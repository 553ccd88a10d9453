"""One stage of a worker instance, in a process of its own: its exactly-once loop
(``streams.engine.transactional``), the applied topology followed live (route and
ledger), and the watchdog for a transaction call that hangs."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from streams import instance
from streams.config import logs
from streams.config.settings import Settings
from streams.contract import signatures
from streams.engine.transactional import EngineConfig, Stage, Watchdog, run
from streams.kafka import applied, credentials, lifecycle
from streams.kafka.admin import BrokerUnreachable
from streams.kafka.serde import (
    RegistryCodec,
    RegistryUnreachable,
    registry_client,
    upstream_codecs,
)
from streams.model.topology import Topology, TopologyError
from streams.stages.ledger import LedgerStage
from streams.stages.normalize import NormalizeStage
from streams.stages.route import ReloadRefused, RouteStage
from streams.transform import masking
from streams.worker.process import (
    CLIENT_ID_ENV,
    EXIT_RESTART_ALL,
    PARENT_ENV,
    STAGES,
    stop_on_signals,
    wait_for_stack,
)

log = logging.getLogger("govsync.worker")

EXPIRY_INTERVAL_S = 3600.0
WATCH_INTERVAL_S = 1.0
# A transaction call still running this long after its own timeout is hung (Watchdog).
HANG_MARGIN_S = 3.0
TOPOLOGY_POLL_S = 1.0
# Ended by the watchdog: the instance starts the stage again at once.
EXIT_HUNG = 70
PR_SET_PDEATHSIG = 1


def build(
    name: str, settings: Settings, topology: Topology, state_dir: Path | None = None
) -> Stage:
    """The stage ``name``; the route keeps its state in ``state_dir`` (default: the
    instance's)."""
    codec = RegistryCodec(registry_client(settings))
    if name == "normalize":
        return NormalizeStage(topology, codec, upstream_codecs(settings, topology))
    if name == "route":
        secrets_dir = settings.path("secrets")
        return RouteStage(
            topology,
            codec,
            settings.bootstrap,
            lambda department: masking.department_key(secrets_dir, department),
            state_dir=state_dir
            or instance.instance_dir(settings.state_dir, settings.worker_instance) / "route",
        )
    if name == "ledger":
        keys: dict[str, bytes] = {}

        def receipt_key(department: str) -> bytes:
            if department not in keys:
                keys[department] = signatures.receipt_key(settings.path("secrets"), department)
            return keys[department]

        return LedgerStage(
            topology,
            codec,
            settings.bootstrap,
            topology.kafka.partitions,
            receipt_key,
            keys=lifecycle.keys_dir(settings),
            repeat_window=settings.ledger_repeat_window,
        )
    raise ValueError(f"no stage {name!r}; the stages are {', '.join(STAGES)}")


def engine_config(stage: Stage, settings: Settings, client_id: str) -> EngineConfig:
    config = EngineConfig(
        bootstrap=settings.bootstrap,
        instance=settings.worker_instance,
        # What `govsync.ops.instances` and the monitor read back from the groups' members.
        consumer={"client.id": client_id},
    )
    if not isinstance(stage, LedgerStage):
        return config
    return replace(
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


def serve(
    name: str,
    settings: Settings,
    topology: Topology,
    version: str,
    client_id: str,
    stop: threading.Event,
) -> None:
    """Run the stage until ``stop``; it finishes its current transaction."""
    stage = build(name, settings, topology)
    config = engine_config(stage, settings, client_id)
    watchdog = Watchdog()
    threads = [threading.Thread(target=run, args=(stage, config, stop, watchdog), name=name)]
    if isinstance(stage, RouteStage | LedgerStage):
        threads.append(
            threading.Thread(
                target=_follow_topology,
                args=(settings, stage, version, stop),
                name="topology",
                daemon=True,
            )
        )
    for thread in threads:
        thread.start()
    log.info("stage %s ready (pid %d): %s", name, os.getpid(), ", ".join(stage.topics))
    stall_limit = config.transaction_timeout + HANG_MARGIN_S
    last_expiry = time.monotonic()
    while not stop.wait(WATCH_INTERVAL_S):
        stalled = watchdog.stalled(stall_limit)
        if stalled:
            detail = ", ".join(f"{s} for {seconds:.0f}s" for s, seconds in stalled.items())
            _end(EXIT_HUNG, f"stuck inside a Kafka transaction call ({detail})")
        if isinstance(stage, RouteStage) and time.monotonic() - last_expiry > EXPIRY_INTERVAL_S:
            last_expiry = time.monotonic()
            log.info("dedup: expired %d event_ids", stage.dedup.expire())
    threads[0].join(timeout=30)


def _follow_topology(
    settings: Settings,
    stage: RouteStage | LedgerStage,
    version: str,
    stop: threading.Event,
) -> None:
    """Take each new topology in force (an apply, or the data authority's decision):
    subscription changes (approval, fields, masks, new subscriptions) in place; changed
    sources or entities by restarting every stage."""
    for current in applied.follow(settings, stop, TOPOLOGY_POLL_S):
        if current.version == version:
            continue
        try:
            stage.reload(current.topology)
        except TopologyError as exc:
            log.error("ignoring an invalid topology in force %s: %s", current.version[:12], exc)
        except ReloadRefused as exc:
            _end(EXIT_RESTART_ALL, f"the topology in force {current.version[:12]} changed {exc}")
        else:
            log.info("now serving the topology in force as %s", current.version[:12])
        version = current.version


def _end(code: int, reason: str) -> NoReturn:
    """End this process now, whatever its threads are doing (a hung librdkafka call
    cannot be interrupted). The instance starts the stage again: its producer's
    init_transactions fences and aborts the open transaction; the committed offsets and
    the dedup changelog make the redo exactly once."""
    log.error("%s; restarting", reason)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _die_with_parent() -> None:
    """The kernel kills this process when the instance that started it dies, however it
    dies; and if it died before this call, end now."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if str(os.getppid()) != os.environ.get(PARENT_ENV):
        sys.exit(1)


def main(name: str) -> None:
    """``python -m streams.worker --stage NAME``, as the worker instance starts it."""
    if name not in STAGES:
        sys.exit(f"no stage {name!r}; the stages are {', '.join(STAGES)}")
    _die_with_parent()
    threading.current_thread().name = name  # log lines name the stage
    logs.configure()
    stop = stop_on_signals()
    settings = Settings.from_env().model_copy(update={"kafka_principal": credentials.WORKER})
    try:
        current = wait_for_stack(settings)
    except (BrokerUnreachable, RegistryUnreachable, applied.NotApplied) as exc:
        log.error("%s", exc)
        sys.exit(3)
    serve(name, settings, current.topology, current.version, os.environ[CLIENT_ID_ENV], stop)
