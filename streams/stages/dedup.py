"""Which event_ids the route stage has already delivered, per input partition.

Exactly-once between Kafka topics comes from transactions; duplicates that arrive as
*new source records* (Debezium re-emitting after a connector restart, a re-snapshot)
are the same change under the same event_id, and only this store recognises them.

State lives in the engine's transactional store (on disk per partition when the worker
has a state directory) and in a changelog topic (compacted, with deletion after the
retention window so it stays bounded). A marker is produced to the changelog in the same
transaction as the deliveries it guards, so after a crash the store and the delivery
topics agree.
"""

from __future__ import annotations

import struct
import time
from datetime import timedelta
from pathlib import Path

from confluent_kafka import Message

from streams.engine.durable import RocksTable
from streams.engine.restoring import ChangelogRestore
from streams.engine.state import KeyedState

_TIMESTAMP = struct.Struct(">q")


def encode_seen(at_ms: int) -> bytes:
    return _TIMESTAMP.pack(at_ms)


def decode_seen(value: bytes) -> int:
    return _TIMESTAMP.unpack(value)[0]


def _at_ms(seen: int | bytes) -> int:
    """A committed id's first-seen time; the memory table keeps restored ids in changelog
    form until read."""
    return decode_seen(seen) if isinstance(seen, bytes) else seen


class DedupStore:
    """event_id -> first-seen time (ms), kept per partition of the stage's input."""

    def __init__(self, retention: timedelta, directory: Path | None = None) -> None:
        """``directory``: keep the committed ids on disk there (None: in memory)."""
        self.retention_ms = int(retention.total_seconds() * 1000)
        table = None if directory is None else RocksTable(directory, encode_seen, decode_seen)
        self.state: KeyedState[int, str, int] = KeyedState(
            decode=decode_seen if table is None else None, table=table
        )

    def seen(self, partition: int, event_id: str) -> bool:
        return (partition, event_id) in self.state

    def add(self, partition: int, event_id: str, at_ms: int) -> None:
        self.state.put(partition, event_id, at_ms)

    def expire(self, now_ms: int | None = None) -> int:
        """Forget ids older than the retention window; returns how many were dropped.
        Safe beside the stage's thread (the store guards its committed entries)."""
        cutoff = (now_ms or int(time.time() * 1000)) - self.retention_ms
        return self.state.retain(lambda seen: _at_ms(seen) >= cutoff)

    def restoring(
        self, bootstrap: str, topic: str, partitions: list[int], changelog_id: str = ""
    ) -> ChangelogRestore:
        """Bring the partitions up to their changelog's end, reading only what the store
        does not hold yet and keeping only ids within the retention window."""
        cutoff = int(time.time() * 1000) - self.retention_ms

        def recent(batch: list[Message]) -> list[tuple[str, bytes]]:
            return [
                (m.key().decode(), m.value())
                for m in batch
                if m.key() is not None
                and m.value() is not None
                and decode_seen(m.value()) >= cutoff
            ]

        return ChangelogRestore(self.state, bootstrap, topic, partitions, changelog_id, recent)
