"""Which event_ids the route stage has already delivered, per input partition.

Exactly-once between Kafka topics comes from transactions; duplicates that arrive as
*new source records* (Debezium re-emitting after a connector restart, a re-snapshot)
are the same change under the same event_id, and only this store recognises them.

State lives in the engine's transactional store and in a changelog topic (compacted, with
deletion after the retention window so it stays bounded). A marker is produced to the
changelog in the same transaction as the deliveries it guards, so after a crash the store
and the delivery topics agree.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from datetime import timedelta

from streams.engine.state import KeyedState
from streams.kafka import topic_reader

_TIMESTAMP = struct.Struct(">q")


def encode_seen(at_ms: int) -> bytes:
    return _TIMESTAMP.pack(at_ms)


class DedupStore:
    """event_id -> first-seen time (ms), kept per partition of the stage's input."""

    def __init__(self, retention: timedelta) -> None:
        self.retention_ms = int(retention.total_seconds() * 1000)
        self.state: KeyedState[int, str, int] = KeyedState()

    def seen(self, partition: int, event_id: str) -> bool:
        return (partition, event_id) in self.state

    def add(self, partition: int, event_id: str, at_ms: int) -> None:
        self.state.put(partition, event_id, at_ms)

    def expire(self, now_ms: int | None = None) -> int:
        """Forget ids older than the retention window; returns how many were dropped.
        Safe beside the stage's thread (the store locks its committed entries)."""
        cutoff = (now_ms or int(time.time() * 1000)) - self.retention_ms
        return self.state.retain(lambda at_ms: at_ms >= cutoff)

    def restore(self, bootstrap: str, topic: str, partitions: Iterable[int]) -> int:
        """Read the committed changelog of ``partitions`` into the store; ids loaded."""
        partitions = list(partitions)
        cutoff = int(time.time() * 1000) - self.retention_ms
        restored: dict[int, dict[str, int]] = {p: {} for p in partitions}
        for message in topic_reader.partitions_to_end(bootstrap, topic, partitions):
            value, key = message.value(), message.key()
            if key is None or value is None:
                continue
            at_ms = _TIMESTAMP.unpack(value)[0]
            if at_ms >= cutoff:
                restored[message.partition()][key.decode()] = at_ms
        return sum(self.state.load(p, entries.items()) for p, entries in restored.items())
