"""Which event_ids the route stage has already delivered, per input partition.

Exactly-once between Kafka topics comes from transactions; duplicates that arrive as
*new source records* (Debezium re-emitting after a connector restart, a re-snapshot)
are the same change under the same event_id, and only this store recognises them.

State lives in memory and in a changelog topic (compacted, with deletion after the
retention window so it stays bounded). A marker is produced to the changelog in the
same transaction as the deliveries it guards, so after a crash the store and the
delivery topics agree; until that transaction commits the marker is only pending.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from datetime import timedelta

from streams import topic_reader

_TIMESTAMP = struct.Struct(">q")


def changelog_topic(stage: str) -> str:
    return f"govsync.{stage}.dedup-changelog"


def encode_seen(at_ms: int) -> bytes:
    return _TIMESTAMP.pack(at_ms)


class DedupStore:
    """event_id -> first-seen time (ms), kept per partition of the stage's input."""

    def __init__(self, retention: timedelta) -> None:
        self.retention_ms = int(retention.total_seconds() * 1000)
        self._seen: dict[int, dict[str, int]] = {}
        self._pending: dict[int, dict[str, int]] = {}

    def seen(self, partition: int, event_id: str) -> bool:
        return event_id in self._seen.get(partition, {}) or event_id in self._pending.get(
            partition, {}
        )

    def add(self, partition: int, event_id: str, at_ms: int) -> None:
        self._pending.setdefault(partition, {})[event_id] = at_ms

    def commit(self) -> None:
        """The transaction carrying the pending markers committed: they are now facts."""
        for partition, entries in self._pending.items():
            self._seen.setdefault(partition, {}).update(entries)
        self._pending.clear()

    def abort(self) -> None:
        self._pending.clear()

    def drop(self, partitions: Iterable[int]) -> None:
        """Partitions revoked: another owner restores them from the changelog."""
        for partition in partitions:
            self._seen.pop(partition, None)
            self._pending.pop(partition, None)

    def expire(self, now_ms: int | None = None) -> int:
        """Forget ids older than the retention window; returns how many were dropped."""
        cutoff = (now_ms or int(time.time() * 1000)) - self.retention_ms
        dropped = 0
        for entries in self._seen.values():
            old = [event_id for event_id, at in entries.items() if at < cutoff]
            for event_id in old:
                del entries[event_id]
            dropped += len(old)
        return dropped

    def size(self) -> int:
        return sum(len(entries) for entries in self._seen.values())

    def restore(self, bootstrap: str, topic: str, partitions: Iterable[int]) -> int:
        """Read the committed changelog of ``partitions`` into memory; returns ids loaded."""
        partitions = list(partitions)
        cutoff = int(time.time() * 1000) - self.retention_ms
        for partition in partitions:
            self._seen[partition] = {}
        loaded = 0
        for message in topic_reader.partitions_to_end(bootstrap, topic, partitions):
            value, key = message.value(), message.key()
            if key is None or value is None:
                continue
            at_ms = _TIMESTAMP.unpack(value)[0]
            if at_ms >= cutoff:
                self._seen[message.partition()][key.decode()] = at_ms
                loaded += 1
        return loaded
