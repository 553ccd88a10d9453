"""The route stage's store of what it knows per entity key (transform/authority.Canonical).

Merging several sources needs, for the entity a change is about, its canonical state,
who set each value and what the other sources hold. That lives in the engine's
transactional store per (entity, input partition) and in a compacted changelog written in
the same transaction as the master records and deliveries it produced, to the partition
number of the input, so a restarted or rebalanced worker reads back exactly the
partitions it was given.

Restored entries stay as changelog bytes until first used: the changelog holds every
version written since its last compaction, and decoding only the last one per key, and
only for keys that change again, keeps a restart fast.
"""

from __future__ import annotations

from collections.abc import Iterable

from streams.contract.topics import CANONICAL_CHANGELOG_TOPIC
from streams.engine.state import KeyedState
from streams.kafka import topic_reader
from streams.transform.authority import Canonical

Slot = tuple[str, int]  # (entity, input partition)


def changelog_key(entity: str, key: str) -> bytes:
    return f"{entity}/{key}".encode()


def new_store() -> KeyedState[Slot, str, Canonical]:
    return KeyedState(decode=Canonical.from_json)


def restore(store: KeyedState[Slot, str, Canonical], bootstrap: str, slots: Iterable[Slot]) -> int:
    """Read the committed changelog for ``slots`` in one pass; returns the keys held."""
    restored: dict[Slot, dict[str, bytes]] = {slot: {} for slot in slots}
    partitions = sorted({partition for _, partition in restored})
    for message in topic_reader.partitions_to_end(bootstrap, CANONICAL_CHANGELOG_TOPIC, partitions):
        key, value = message.key(), message.value()
        if key is None or value is None:
            continue
        entity, _, entity_key = key.decode().partition("/")
        slot = (entity, message.partition())
        if slot in restored:
            restored[slot][entity_key] = value
    return sum(store.load(slot, entries.items()) for slot, entries in restored.items())
