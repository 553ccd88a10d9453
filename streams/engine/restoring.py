"""Assigned partitions a stage cannot process yet: paused, restored in steps, resumed.

A stage's state for a partition must be complete before the partition's first record is
processed. Restoring it inside the assignment callback blocks the consumer for as long as
the read takes, and a new instance taking over partitions it never held reads their whole
changelog: past the poll deadline (``max.poll.interval.ms``) the group expels the member,
and its successor starts over. So the engine assigns, pauses what the stage holds, and
advances each restore by one bounded step (a changelog batch, about a second) between
polls, on its own thread, resuming partitions as they become ready. A revoke or the end
of the session closes the restore; what it wrote is checkpointed (a durable table), so
the next assignment reads on from there.

A stage may also hold partitions until the next rebalance (``Hold.held``): the ledger
does so with partitions whose audit chain another member writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Message, TopicPartition

from streams.engine.state import KeyedState
from streams.kafka import topic_reader

log = logging.getLogger("govsync.worker")

STEP_S = 0.5  # one read of one restore; a step reads each store once
PROGRESS_EVERY_S = 10.0


class Restore(Protocol):
    """State of some partitions (by number, across the stage's topics) being read back."""

    def waiting(self) -> Collection[int]:
        """Partition numbers whose state is not complete yet."""
        ...

    def step(self) -> int:
        """Read a bounded amount (about ``STEP_S``); the records read."""
        ...

    def close(self) -> None:
        """Stop reading; what was restored so far stays (checkpointed on disk)."""
        ...


@dataclass(frozen=True)
class Hold:
    """What ``Stage.assigned`` answers: the assigned partitions not to process yet."""

    restores: Sequence[Restore] = ()  # partitions they wait for, until they are complete
    held: Collection[tuple[str, int]] = ()  # (topic, partition), until the next rebalance


class ChangelogRestore:
    """One store's partitions brought up to their changelog's end, a batch per step; each
    batch is one restore of the table, checkpointed with the offset it reached."""

    def __init__(
        self,
        store: KeyedState[int, Any, Any],
        bootstrap: str,
        topic: str,
        partitions: Iterable[int],
        changelog_id: str = "",
        entries: Callable[[list[Message]], list[tuple[Any, Any]]] | None = None,
    ) -> None:
        """``entries``: the (key, raw value) pairs to keep of a batch (default: every
        keyed record)."""
        self._store = store
        self._entries = entries or _keyed
        starts = {p: store.start(p, changelog_id) for p in partitions}
        self._tail = topic_reader.ChangelogTail(bootstrap, topic, starts)

    def waiting(self) -> Collection[int]:
        return self._tail.remaining

    def step(self) -> int:
        read = 0
        for partition, batch in self._tail.read(STEP_S).items():
            read += self._store.restore(partition, self._entries(batch), through=batch[-1].offset())
        return read

    def close(self) -> None:
        self._tail.close()


def _keyed(batch: list[Message]) -> list[tuple[Any, Any]]:
    return [(m.key().decode(), m.value()) for m in batch if m.key() is not None]


class Pausing(Protocol):
    """The consumer, as far as holding partitions goes."""

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...


class Holding:
    """The engine's side: pauses what a stage holds at assignment, steps its restores
    between polls, resumes partitions as they become ready, and cancels on revoke."""

    def __init__(self, stage: str, consumer: Pausing) -> None:
        self._stage = stage
        self._consumer = consumer
        self._paused: list[TopicPartition] = []
        self._held: set[tuple[str, int]] = set()
        self._restores: list[Restore] = []
        self._read = 0
        self._began = self._logged = 0.0

    @property
    def restoring(self) -> bool:
        return bool(self._restores)

    def assigned(self, partitions: list[TopicPartition], hold: Hold | None) -> None:
        self.close()
        hold = hold or Hold()
        self._held = set(hold.held)
        self._restores = list(hold.restores)
        self._read = 0
        self._began = self._logged = time.monotonic()
        waiting = self._waiting()
        self._paused = [
            tp
            for tp in partitions
            if (tp.topic, tp.partition) in self._held or tp.partition in waiting
        ]
        if self._paused:
            self._consumer.pause(self._paused)
        if self._held:
            log.warning("%s: holding %s until the next rebalance", self._stage, sorted(self._held))
        self._resume_ready()

    def step(self) -> None:
        """One bounded step of every unfinished restore, then resume what is ready."""
        if not self._restores:
            return
        for restore in self._restores:
            if restore.waiting():
                self._read += restore.step()
        self._resume_ready()
        now = time.monotonic()
        if self._restores and now - self._logged >= PROGRESS_EVERY_S:
            self._logged = now
            log.info(
                "%s: restoring partitions %s: %d records read",
                self._stage,
                sorted(self._waiting()),
                self._read,
            )

    def _resume_ready(self) -> None:
        waiting = self._waiting()
        still = [
            tp
            for tp in self._paused
            if (tp.topic, tp.partition) in self._held or tp.partition in waiting
        ]
        if len(still) < len(self._paused):
            kept = {(tp.topic, tp.partition) for tp in still}
            self._consumer.resume(
                [tp for tp in self._paused if (tp.topic, tp.partition) not in kept]
            )
            self._paused = still
        if self._restores and not waiting:
            log.info(
                "%s: restored: %d records in %.1fs",
                self._stage,
                self._read,
                time.monotonic() - self._began,
            )
            self.close()

    def _waiting(self) -> set[int]:
        return {p for restore in self._restores for p in restore.waiting()}

    def close(self) -> None:
        """Revoked, or the session ends: stop restoring (the next assignment reads on
        from what was checkpointed)."""
        restores, self._restores = self._restores, []
        for restore in restores:
            restore.close()
