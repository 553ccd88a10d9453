"""The route stage's store of what it knows per entity key (streams/authority.Canonical).

Merging several sources needs, for the entity a change is about, its canonical state,
who set each value and what the other sources hold. That lives in memory per input
partition and in a compacted changelog written in the same transaction as the master
records and deliveries it produced, to the partition number of the input, so a restarted
or rebalanced worker reads back exactly the partitions it was given. As with the dedup
store, updates stay pending until their transaction commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from streams import topic_reader
from streams.authority import Canonical

CHANGELOG_TOPIC = "govsync.route.canonical-changelog"

Slot = tuple[str, int]  # (entity, input partition)


def changelog_key(entity: str, key: str) -> bytes:
    return f"{entity}/{key}".encode()


class CanonicalStore:
    """(entity, partition) -> entity key -> Canonical.

    Restored entries stay as changelog bytes until first used: the changelog holds every
    version written since its last compaction, and decoding only the last one per key,
    and only for keys that change again, keeps a restart fast.
    """

    def __init__(self) -> None:
        self._state: dict[Slot, dict[str, Canonical | bytes]] = {}
        self._pending: dict[Slot, dict[str, Canonical]] = {}

    def get(self, entity: str, partition: int, key: str) -> Canonical | None:
        pending = self._pending.get((entity, partition), {})
        if key in pending:
            return pending[key]
        state = self._state.get((entity, partition), {})
        found = state.get(key)
        if isinstance(found, bytes):
            found = state[key] = Canonical.from_json(found)
        return found

    def put(self, entity: str, partition: int, key: str, canonical: Canonical) -> None:
        self._pending.setdefault((entity, partition), {})[key] = canonical

    def entities(self, entity: str, partition: int) -> Iterator[tuple[str, Canonical]]:
        """Every key of one slot with what govsync knows of it, the open transaction's
        changes included: what a snapshot taken at this point of the partition holds."""
        slot = (entity, partition)
        for key in sorted({*self._state.get(slot, {}), *self._pending.get(slot, {})}):
            found = self.get(entity, partition, key)
            if found is not None:
                yield key, found

    def commit(self) -> None:
        for slot, updates in self._pending.items():
            self._state.setdefault(slot, {}).update(updates)
        self._pending.clear()

    def abort(self) -> None:
        self._pending.clear()

    def drop(self, slots: Iterable[Slot]) -> None:
        for slot in slots:
            self._state.pop(slot, None)
            self._pending.pop(slot, None)

    def size(self) -> int:
        return sum(len(state) for state in self._state.values())

    def restore(self, bootstrap: str, slots: Iterable[Slot]) -> int:
        """Read the committed changelog for ``slots`` in one pass; returns the keys held."""
        slots = set(slots)
        for slot in slots:
            self._state[slot] = {}
        partitions = sorted({partition for _, partition in slots})
        for message in topic_reader.partitions_to_end(bootstrap, CHANGELOG_TOPIC, partitions):
            key, value = message.key(), message.value()
            if key is None or value is None:
                continue
            entity, _, entity_key = key.decode().partition("/")
            slot = (entity, message.partition())
            if slot in slots:
                self._state[slot][entity_key] = value
        return sum(len(self._state[slot]) for slot in slots)
