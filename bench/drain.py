"""One worker stage alone, draining a backlog that is already on its input topics.

The stage runs in this process on the worker's own engine (the same transactions, batch
size and serde), as a consumer group of its own that starts at given offsets, so the live
worker is untouched. What it writes goes to one scratch topic, deleted afterwards: a
drained route must not deliver twice, nor a drained ledger fork an audit chain. It starts
with empty state (no changelog restore), so every event_id is new to it.

The rate is the records processed over the time from the first to the last one, once
the stage has been idle for ``IDLE_S``. With ``profile`` the stage's thread runs under
cProfile and the heaviest functions are returned too.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config.settings import Settings
from streams.engine.restoring import Hold
from streams.engine.transactional import NOTHING, EngineConfig, Output, Produced, Stage, Watchdog
from streams.engine.transactional import run as run_stage
from streams.kafka import admin, clients, topic_reader
from streams.model.topology import Topology
from streams.worker.stage import build

IDLE_S = 3.0
SCRATCH_PARTITIONS = 6  # at least the audit topic's: the ledger writes chain c to partition c


class Redirected:
    """``stage`` under a name (group, transactional id) of its own, every output sent to
    ``scratch`` (same key, same partition), and no state restored on assignment."""

    def __init__(self, stage: Stage, run: str, scratch: str) -> None:
        self._stage = stage
        self._scratch = scratch
        self.name = f"bench-{stage.name}-{run}"
        self.topics = stage.topics
        self.processed = 0
        self.first = self.last = 0.0

    def assigned(self, partitions: list[TopicPartition]) -> Hold | None:
        hold = self._stage.assigned(partitions)
        if hold is None:
            return None
        for restore in hold.restores:
            restore.close()  # the stores are open and empty: start from nothing
        return Hold(held=hold.held)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        self._stage.revoked(partitions)

    def process(self, message: Message) -> list[Output]:
        now = time.monotonic()
        self.first = self.first or now
        scratch = self._scratch
        outputs = [Output(scratch, *o[1:]) for o in self._stage.process(message)]
        self.processed += 1
        self.last = time.monotonic()
        return outputs

    def committed(self, produced: Produced = NOTHING) -> None:
        self._stage.committed(produced)

    def aborted(self) -> None:
        self._stage.aborted()


@dataclass(frozen=True)
class Drained:
    stage: str
    records: int
    seconds: float
    profile: str = ""

    @property
    def rate(self) -> float:
        return round(self.records / self.seconds, 1) if self.seconds else 0.0


def inputs(settings: Settings, stage: Stage) -> list[str]:
    """The topics the stage reads now (its patterns resolved)."""
    client = admin.admin_client(settings.bootstrap)
    existing = client.list_topics(timeout=10).topics
    found = set()
    for wanted in stage.topics:
        if wanted.startswith("^"):
            found |= {t for t in existing if re.match(wanted, t)}
        elif wanted in existing:
            found.add(wanted)
    return sorted(found)


def drain(
    settings: Settings,
    topology: Topology,
    name: str,
    start: topic_reader.Offsets,
    *,
    profile: bool = False,
    timeout: float = 1800.0,
) -> Drained:
    """Run stage ``name`` from ``start`` (its other input partitions: from their ends now)
    until it has been idle for ``IDLE_S``."""
    run = uuid.uuid4().hex[:8]
    scratch = f"govsync.bench.drain-{name}-{run}"
    client = admin.admin_client(settings.bootstrap)  # kept: its futures die with it
    client.create_topics([NewTopic(scratch, SCRATCH_PARTITIONS, 1)])[scratch].result()
    with tempfile.TemporaryDirectory(prefix="govsync-drain-") as state_dir:
        stage = Redirected(build(name, settings, topology, Path(state_dir)), run, scratch)
        group = f"govsync-{stage.name}"
        ends = _ends(settings, stage)
        _start_group_at(settings, group, {**ends, **{k: v for k, v in start.items() if k in ends}})
        stop = threading.Event()
        profiler = cProfile.Profile() if profile else None

        def work() -> None:
            if profiler is not None:
                profiler.enable()
            try:
                run_stage(stage, EngineConfig(settings.bootstrap, instance=run), stop, Watchdog())
            finally:
                if profiler is not None:
                    profiler.disable()

        thread = threading.Thread(target=work, name=stage.name, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                time.sleep(0.5)
                if stage.processed and time.monotonic() - stage.last > IDLE_S:
                    break
        finally:
            stop.set()
            thread.join(60)
            client.delete_topics([scratch])[scratch].result()
            _delete_group(client, group)
    return Drained(
        name,
        stage.processed,
        round(stage.last - stage.first, 2),
        _top(profiler) if profiler is not None else "",
    )


def _ends(settings: Settings, stage: Stage) -> topic_reader.Offsets:
    return topic_reader.end_offsets(settings.bootstrap, inputs(settings, stage))


def _start_group_at(settings: Settings, group: str, offsets: topic_reader.Offsets) -> None:
    """Commit ``offsets`` for ``group``, so its first member starts there."""
    consumer = Consumer(clients.config(settings.bootstrap, **{"group.id": group}))
    try:
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
            asynchronous=False,
        )
    finally:
        consumer.close()


def _delete_group(client: AdminClient, group: str, timeout: float = 30.0) -> None:
    """Once its static member's session has expired (it does not leave on close)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.delete_consumer_groups([group])[group].result()
            return
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.NON_EMPTY_GROUP or time.monotonic() > deadline:
                raise
            time.sleep(1)


def _top(profiler: cProfile.Profile, lines: int = 30) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(lines)
    return out.getvalue()
