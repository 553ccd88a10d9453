"""The route stage's store of what it knows per entity key (transform/authority.Canonical).

Merging several sources needs, for the entity a change is about, its canonical state,
who set each value and what the other sources hold. That lives in the engine's
transactional store per input partition, keyed ``<entity>/<key>`` as in its compacted
changelog, which is written in the same transaction as the master records and deliveries
it produced, to the partition number of the input, so a restarted or rebalanced worker
reads back exactly the partitions it was given. On disk (a state directory), a restart
reads only the changelog's tail; in memory, the whole changelog, keeping values as bytes
until first used.
"""

from __future__ import annotations

from pathlib import Path

from streams.engine.durable import RocksTable
from streams.engine.state import KeyedState
from streams.transform.authority import Canonical

Store = KeyedState[int, str, Canonical]


def store_key(entity: str, key: str) -> str:
    return f"{entity}/{key}"


def changelog_key(entity: str, key: str) -> bytes:
    return store_key(entity, key).encode()


def _encode(canonical: Canonical) -> bytes:
    return canonical.to_json()


def new_store(directory: Path | None = None) -> Store:
    if directory is None:
        return KeyedState(decode=Canonical.from_json)
    return KeyedState(table=RocksTable(directory, _encode, Canonical.from_json))
