"""Committed state on disk, one RocksDB per input partition, checkpointed with the
changelog offset it reflects.

The changelog topic stays the record of truth (another instance may own the partition
next); the local database is a cache of it that survives restarts. Each commit writes the
entries and the last changelog offset its transaction produced in one atomic write batch,
after Kafka committed that transaction. On assignment the partition's database is opened
and only the changelog from that offset on is read; a crash between the Kafka commit and
the write batch just means a slightly longer tail. A database written against another
incarnation of the changelog topic (the topic was deleted and recreated) is discarded.

State does not have to fit in RAM: RocksDB keeps it on disk with a bounded block cache.
"""

from __future__ import annotations

import shutil
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from rocksdict import BlockBasedIndexType, BlockBasedOptions, Cache, Options, Rdict, WriteBatch

V = TypeVar("V")

_CHECKPOINT = b"\x00checkpoint"  # user keys are text, never starting with NUL
_CHANGELOG_ID = b"\x00changelog"
_OFFSET = struct.Struct(">q")


class RocksTable(Generic[V]):
    """Slot = input partition; keys are text; values stored as their changelog bytes."""

    def __init__(
        self,
        directory: Path,
        encode: Callable[[V], bytes],
        decode: Callable[[bytes], V],
    ) -> None:
        self._directory = directory
        self._encode = encode
        self._decode = decode
        self._dbs: dict[int, Rdict] = {}
        self._lock = threading.Lock()  # guards the set of open databases, not their content

    def _db(self, slot: int) -> Rdict | None:
        with self._lock:
            return self._dbs.get(slot)

    def get(self, slot: int, key: str) -> V | None:
        db = self._db(slot)
        found = db.get(key.encode()) if db is not None else None
        return None if found is None else self._decode(found)

    def contains(self, slot: int, key: str) -> bool:
        db = self._db(slot)
        return db is not None and db.get(key.encode()) is not None

    def keys(self, slot: int, prefix: str = "") -> set[str]:
        db = self._db(slot)
        if db is None:
            return set()
        start = prefix.encode()
        found = set()
        iterator = db.iter()
        try:
            iterator.seek(start)
            while iterator.valid():
                key = iterator.key()
                if not key.startswith(start):
                    break
                if not key.startswith(b"\x00"):
                    found.add(key.decode())
                iterator.next()
        finally:
            del iterator  # an open iterator keeps the database locked past close()
        return found

    def apply(self, updates: Mapping[int, Mapping[str, V]], checkpoints: Mapping[int, int]) -> None:
        for slot in set(updates) | set(checkpoints):
            db = self._db(slot)
            if db is None:
                continue  # revoked meanwhile: its next owner restores from the changelog
            batch = WriteBatch(raw_mode=True)
            for key, value in updates.get(slot, {}).items():
                batch.put(key.encode(), self._encode(value))
            if slot in checkpoints:
                batch.put(_CHECKPOINT, _OFFSET.pack(checkpoints[slot]))
            db.write(batch)

    def start(self, slot: int, changelog_id: str = "") -> int | None:
        """Open the partition's database; the changelog offset to read from (None: the
        log start, for a new database or one of another changelog incarnation)."""
        self.drop([slot])  # a session that ended without a revoke may still hold it open
        path = self._directory / str(slot)
        db = _open(path)
        if db.get(_CHANGELOG_ID) not in (None, changelog_id.encode()):
            db.close()
            shutil.rmtree(path)
            db = _open(path)
        db[_CHANGELOG_ID] = changelog_id.encode()
        with self._lock:
            self._dbs[slot] = db
        checkpoint = db.get(_CHECKPOINT)
        return None if checkpoint is None else _OFFSET.unpack(checkpoint)[0] + 1

    def restore(self, slot: int, entries: Iterable[tuple[str, Any]], through: int) -> int:
        db = self._db(slot)
        assert db is not None, f"partition {slot} was not started"
        batch = WriteBatch(raw_mode=True)
        restored = 0
        for key, value in entries:
            if value is None:
                batch.delete(key.encode())
            else:
                batch.put(key.encode(), value)
            restored += 1
        batch.put(_CHECKPOINT, _OFFSET.pack(through))
        db.write(batch)
        return restored

    def replace(self, slot: int, entries: Iterable[tuple[str, Any]]) -> int:
        shutil.rmtree(self._directory / str(slot), ignore_errors=True)
        self.start(slot)
        db = self._db(slot)
        assert db is not None
        restored = 0
        for key, value in entries:
            db[key.encode()] = value
            restored += 1
        return restored

    def drop(self, slots: Iterable[int]) -> None:
        """Close (the files stay, for when the partition comes back)."""
        with self._lock:
            closing = [self._dbs.pop(slot) for slot in slots if slot in self._dbs]
        for db in closing:
            db.close()

    def retain(self, keep: Callable[[V], bool]) -> int:
        dropped = 0
        with self._lock:
            dbs = list(self._dbs.values())
        for db in dbs:
            batch = WriteBatch(raw_mode=True)
            iterator = db.iter()
            try:
                iterator.seek_to_first()
                while iterator.valid():
                    key = iterator.key()
                    if not key.startswith(b"\x00") and not keep(self._decode(iterator.value())):
                        batch.delete(key)
                        dropped += 1
                    iterator.next()
            finally:
                del iterator
            db.write(batch)
        return dropped

    def size(self) -> int:
        """RocksDB's estimate of the keys held (exact counts would mean a full scan)."""
        with self._lock:
            dbs = list(self._dbs.values())
        return sum(db.property_int_value("rocksdb.estimate-num-keys") or 0 for db in dbs)

    def close(self) -> None:
        self.drop(list(self._dbs))


# Memory is bounded per process, not per partition: every database shares one block
# cache, and each keeps small memtables (RocksDB's 64 MiB default, times two stores and
# every partition, would be most of a worker's RAM).
BLOCK_CACHE_BYTES = 64 << 20
WRITE_BUFFER_BYTES = 4 << 20
BLOOM_BITS_PER_KEY = 10
_CACHE = Cache(BLOCK_CACHE_BYTES)


def _open(path: Path) -> Rdict:
    path.mkdir(parents=True, exist_ok=True)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(_CACHE)
    # Index and filters live in the block cache too (memory stays bounded however much
    # state there is), partitioned into blocks of their own: a file's index as one block
    # outgrows a cache shard (a 30 MB file of canonical states has a 1.8 MB index), is
    # never kept, and every lookup read and decompressed it again (~500 us a get).
    table.set_cache_index_and_filter_blocks(True)
    table.set_index_type(BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_pin_top_level_index_and_filter(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    # Most dedup lookups are for ids never seen: a Bloom filter answers those without
    # reading any data block (~1 % false positives at 10 bits a key).
    table.set_bloom_filter(BLOOM_BITS_PER_KEY, False)
    options.set_block_based_table_factory(table)
    return Rdict(str(path), options)
