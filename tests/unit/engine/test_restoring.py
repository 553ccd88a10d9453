"""Restoring between polls: what a stage holds is paused at assignment, each restore
advances one bounded step at a time, partitions resume as their state completes, and a
revoke cancels the read (a later assignment reads on from what was restored)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import pytest
from confluent_kafka import Message, TopicPartition

from streams.engine import restoring
from streams.engine.durable import RocksTable
from streams.engine.restoring import ChangelogRestore, Hold, Holding
from streams.engine.state import KeyedState

CHANGES = "changes.enterprise"
PERSONS = "changes.person"


class Consumer:
    """Which partitions are paused, as the engine's consumer would have them."""

    def __init__(self) -> None:
        self.paused: set[tuple[str, int]] = set()

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}


class Scripted:
    """A restore whose partitions complete one per step, in the order given."""

    def __init__(self, *order: int) -> None:
        self.order = list(order)
        self.steps = 0
        self.closed = False

    def waiting(self) -> Collection[int]:
        return set(self.order)

    def step(self) -> int:
        self.steps += 1
        self.order.pop(0)
        return 10

    def close(self) -> None:
        self.closed = True


def assignment(*numbers: int) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in (CHANGES, PERSONS) for p in numbers]


def test_partitions_resume_one_by_one_as_every_restore_of_theirs_completes() -> None:
    consumer = Consumer()
    holding = Holding("route", consumer)
    dedup, canonical = Scripted(0, 1), Scripted(1, 0, 2)
    holding.assigned(assignment(0, 1, 2, 3), Hold(restores=[dedup, canonical]))
    # 3 has nothing to restore: processed at once; the rest wait, on every topic.
    assert consumer.paused == {(t, p) for t in (CHANGES, PERSONS) for p in (0, 1, 2)}
    assert holding.restoring

    holding.step()  # dedup has 0, canonical has 1: neither is complete in both
    assert consumer.paused == {(t, p) for t in (CHANGES, PERSONS) for p in (0, 1, 2)}
    holding.step()  # dedup done; canonical has 0 too
    assert consumer.paused == {(CHANGES, 2), (PERSONS, 2)}
    assert dedup.steps == 2
    holding.step()  # only canonical still reads
    assert dedup.steps == 2 and canonical.steps == 3
    assert consumer.paused == set()
    assert not holding.restoring
    assert dedup.closed and canonical.closed


def test_a_revoke_cancels_the_restore_and_the_next_assignment_starts_its_own() -> None:
    consumer = Consumer()
    holding = Holding("route", consumer)
    first = Scripted(0, 1)
    holding.assigned(assignment(0, 1), Hold(restores=[first]))
    holding.step()
    holding.close()  # revoked mid-restore
    assert first.closed and not holding.restoring

    second = Scripted(1)
    holding.assigned(assignment(1), Hold(restores=[second]))
    assert consumer.paused >= {(CHANGES, 1), (PERSONS, 1)}
    holding.step()
    assert not holding.restoring and second.closed


def test_held_partitions_stay_paused_whatever_completes() -> None:
    consumer = Consumer()
    holding = Holding("ledger", consumer)
    holding.assigned(assignment(0, 1), Hold(held=[(PERSONS, 1)]))
    assert consumer.paused == {(PERSONS, 1)}
    assert not holding.restoring
    holding.step()
    assert consumer.paused == {(PERSONS, 1)}


def test_a_stage_without_state_holds_nothing() -> None:
    consumer = Consumer()
    holding = Holding("normalize", consumer)
    holding.assigned(assignment(0, 1), None)
    assert consumer.paused == set() and not holding.restoring


class Tail:
    """A changelog tail read from memory, a batch of at most ``batch`` records per read."""

    def __init__(
        self, log: Mapping[int, list[tuple[str, bytes | None]]], starts: Mapping[int, int | None]
    ) -> None:
        self.records = {
            p: [(o, k, v) for o, (k, v) in enumerate(log.get(p, [])) if o >= (starts[p] or 0)]
            for p in starts
        }
        self.remaining = {p for p, rs in self.records.items() if rs}
        self.closed = False

    def read(self, timeout: float = 1.0) -> dict[int, list[Message]]:
        batch = {}
        for p in sorted(self.remaining):
            taken, self.records[p] = self.records[p][:2], self.records[p][2:]
            batch[p] = [
                Message(partition=p, offset=o, key=k.encode(), value=v) for o, k, v in taken
            ]
            if not self.records[p]:
                self.remaining.discard(p)
            break  # one partition per read, as a batch may be
        return batch

    def close(self) -> None:
        self.closed = True


def test_a_changelog_restore_checkpoints_each_batch_and_a_cancelled_one_reads_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = {0: [("a", b"1"), ("b", b"2"), ("a", b"3"), ("c", b"4")], 1: [("x", b"9")]}
    tails: list[Tail] = []

    def tail(bootstrap: str, topic: str, starts: Mapping[int, int | None]) -> Tail:
        tails.append(Tail(log, starts))
        return tails[-1]

    monkeypatch.setattr(restoring.topic_reader, "ChangelogTail", tail)
    store: KeyedState[int, str, bytes] = KeyedState(table=RocksTable(tmp_path, bytes, bytes))
    first = ChangelogRestore(store, "unused:9092", "changelog", [0, 1])
    assert first.step() == 2  # a, b of partition 0
    first.close()  # revoked
    assert tails[0].closed

    # On the next assignment: partition 0 from after its checkpoint, not from the start.
    again = ChangelogRestore(store, "unused:9092", "changelog", [0, 1])
    read = 0
    while again.waiting():
        read += again.step()
    assert read == 3
    assert (store.get(0, "a"), store.get(0, "c"), store.get(1, "x")) == (b"3", b"4", b"9")
    store.drop([0, 1])
