"""A restore longer than the consumer's poll deadline, through the real engine, RocksDB
and Kafka: the member is not expelled, and no record is processed before its partition's
state is complete."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Message, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from streams.engine.durable import RocksTable
from streams.engine.restoring import ChangelogRestore, Hold, Restore
from streams.engine.state import KeyedState
from streams.engine.transactional import EngineConfig, Output, Watchdog, run
from streams.kafka import admin, clients, credentials
from tests.integration.conftest import Stack

pytestmark = pytest.mark.stack

PARTITIONS = 2
PER_PARTITION = 60_000  # twelve changelog batches in all
STEP_PAUSE_S = 1.0  # a restore step made slow: the whole restore outlasts the deadline
POLL_DEADLINE_MS = 10_000  # max.poll.interval.ms, at its minimum (the session timeout)
INPUTS = 20


class Slow:
    """A restore whose every step also waits: long restores without gigabytes."""

    def __init__(self, restore: Restore) -> None:
        self._restore = restore

    def waiting(self) -> Collection[int]:
        return self._restore.waiting()

    def step(self) -> int:
        time.sleep(STEP_PAUSE_S)
        return self._restore.step()

    def close(self) -> None:
        self._restore.close()


class Counting:
    """A stage whose state is the changelog's keys: each record notes whether its
    partition's state was complete (the changelog's first and last keys in place) when it
    was processed."""

    def __init__(self, name: str, bootstrap: str, inputs: str, changelog: str, directory: Path):
        self.name = name
        self.topics = [inputs]
        self._bootstrap = bootstrap
        self._changelog = changelog
        self.state: KeyedState[int, str, bytes] = KeyedState(
            table=RocksTable(directory, bytes, bytes)
        )
        self.assignments: list[list[int]] = []
        self.revokes = 0
        self.seen: list[tuple[int, int, bool]] = []  # (partition, offset, state complete)

    def assigned(self, partitions: list[TopicPartition]) -> Hold:
        numbers = sorted({tp.partition for tp in partitions})
        self.assignments.append(numbers)
        restore = ChangelogRestore(self.state, self._bootstrap, self._changelog, numbers, "")
        return Hold(restores=[Slow(restore)])

    def revoked(self, partitions: list[TopicPartition]) -> None:
        self.revokes += 1
        self.state.drop({tp.partition for tp in partitions})

    def process(self, message: Message) -> list[Output]:
        p = message.partition()
        complete = (p, f"{p}-0") in self.state and (p, f"{p}-{PER_PARTITION - 1}") in self.state
        self.seen.append((p, message.offset(), complete))
        return []

    def committed(self, produced: object = None) -> None:
        self.state.commit()

    def aborted(self) -> None:
        self.state.abort()


@pytest.fixture()
def topics(stack: Stack) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    names = (f"govsync.test.restore-in-{suffix}", f"govsync.test.restore-log-{suffix}")
    client = admin.admin_client(stack.settings.bootstrap)
    for future in client.create_topics([NewTopic(n, PARTITIONS, 1) for n in names]).values():
        future.result()
    yield names
    for future in client.delete_topics(list(names)).values():
        future.result()


def fill(bootstrap: str, topic: str, count: int, value: bytes = b"x") -> None:
    producer = Producer(clients.config(bootstrap, credentials.ADMIN, **{"linger.ms": 50}))
    for partition in range(PARTITIONS):
        for n in range(count):
            while True:
                try:
                    producer.produce(topic, value, f"{partition}-{n}".encode(), partition=partition)
                    break
                except BufferError:
                    producer.poll(0.1)
    assert producer.flush(60) == 0


def test_a_restore_past_the_poll_deadline_keeps_the_member_and_precedes_processing(
    stack: Stack, topics: tuple[str, str], tmp_path: Path
) -> None:
    inputs, changelog = topics
    bootstrap = stack.settings.bootstrap
    fill(bootstrap, changelog, PER_PARTITION)
    fill(bootstrap, inputs, INPUTS)
    stage = Counting(f"test-restore-{uuid.uuid4().hex[:8]}", bootstrap, inputs, changelog, tmp_path)
    config = EngineConfig(
        bootstrap=bootstrap,
        instance="0",
        principal=credentials.ADMIN,
        consumer={"max.poll.interval.ms": POLL_DEADLINE_MS},
    )
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(stage, config, stop, Watchdog()), daemon=True)
    thread.start()
    try:
        for _ in range(300):
            if len(stage.seen) >= PARTITIONS * INPUTS:
                break
            time.sleep(1)
        # One assignment, never revoked: the group kept the member throughout.
        assert stage.assignments == [list(range(PARTITIONS))]
        assert stage.revokes == 0
    finally:
        stop.set()
        thread.join(60)
        stage.state.drop(range(PARTITIONS))
    assert len(stage.seen) == PARTITIONS * INPUTS, stage.seen[-3:]
    # Every record exactly once, each with its partition's whole state in place.
    assert sorted((p, o) for p, o, _ in stage.seen) == [
        (p, o) for p in range(PARTITIONS) for o in range(INPUTS)
    ]
    assert all(complete for _, _, complete in stage.seen)
