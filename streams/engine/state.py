"""What a stage keeps between records, pending until the transaction it belongs to commits.

A batch is one Kafka transaction; an aborted one is processed again from the committed
offsets. Anything a stage learns while processing it (an event_id seen, an entity's new
canonical state, an audit chain's new head, a counter to increment) must therefore stay
provisional until the commit, and vanish on abort. Both kinds of state here do that:
``KeyedState`` for values read back by later records, ``AfterCommit`` for effects that
are only ever applied (metrics, exported spans).

``KeyedState`` holds the open transaction's writes itself and keeps what is committed in
a ``Table``: in memory (``MemoryTable``: restored in full from the changelog at every
assignment), or on disk per partition (``streams.engine.durable.RocksTable``: checkpointed
with the changelog offset it reflects, so a restart restores only the changelog's tail).
Reads and writes come from the stage's own thread; ``retain`` may run on another (expiry),
so tables guard their committed entries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

S = TypeVar("S", bound=Hashable)  # a slot: what moves between instances on a rebalance
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Table(Protocol[S, K, V]):
    """Where committed entries live. ``checkpoints`` name, per slot, the last changelog
    offset the entries reflect (a durable table keeps it with them)."""

    def get(self, slot: S, key: K) -> V | None: ...

    def contains(self, slot: S, key: K) -> bool: ...

    def keys(self, slot: S, prefix: str = "") -> set[K]: ...

    def apply(self, updates: Mapping[S, Mapping[K, V]], checkpoints: Mapping[S, int]) -> None: ...

    def start(self, slot: S, changelog_id: str = "") -> int | None:
        """Take ``slot`` over: the changelog offset to restore from (None: its start).
        ``changelog_id`` names the changelog topic's incarnation; state kept for another
        one is discarded."""
        ...

    def restore(self, slot: S, entries: Iterable[tuple[K, Any]], through: int) -> int:
        """Upsert changelog entries (raw values; None deletes) read up to ``through``."""
        ...

    def replace(self, slot: S, entries: Iterable[tuple[K, Any]]) -> int: ...

    def drop(self, slots: Iterable[S]) -> None: ...

    def retain(self, keep: Callable[[V], bool]) -> int: ...

    def size(self) -> int: ...


class KeyedState(Generic[S, K, V]):
    """slot -> key -> value, with the open transaction's writes layered over the committed."""

    def __init__(
        self,
        decode: Callable[[Any], V] | None = None,
        table: Table[S, K, V] | None = None,
    ) -> None:
        """``decode`` turns a changelog value into V on first use (memory table only)."""
        self.table: Table[S, K, V] = table or MemoryTable(decode)
        self._pending: dict[S, dict[K, V]] = {}

    def get(self, slot: S, key: K) -> V | None:
        pending = self._pending.get(slot)
        if pending is not None and key in pending:
            return pending[key]
        return self.table.get(slot, key)

    def __contains__(self, slot_key: tuple[S, K]) -> bool:
        slot, key = slot_key
        return key in self._pending.get(slot, ()) or self.table.contains(slot, key)

    def put(self, slot: S, key: K, value: V) -> None:
        self._pending.setdefault(slot, {})[key] = value

    def pending(self, slot: S, key: K) -> V | None:
        """What the open transaction wrote for ``key``, if anything."""
        return self._pending.get(slot, {}).get(key)

    def keys(self, slot: S, prefix: str = "") -> list[K]:
        """Every key of ``slot`` (starting with ``prefix``), the open transaction's
        included, sorted."""
        pending = {k for k in self._pending.get(slot, ()) if str(k).startswith(prefix)}
        return sorted(self.table.keys(slot, prefix) | pending)  # type: ignore[type-var]

    def items(self, slot: S, prefix: str = "") -> Iterator[tuple[K, V]]:
        for key in self.keys(slot, prefix):
            found = self.get(slot, key)
            if found is not None:
                yield key, found

    def commit(self, checkpoints: Mapping[S, int] | None = None) -> None:
        """The transaction holding the pending writes committed: they are now facts.
        ``checkpoints``: per slot, the last changelog offset that transaction wrote."""
        self.table.apply(self._pending, checkpoints or {})
        self._pending = {}

    def abort(self) -> None:
        self._pending.clear()

    def start(self, slot: S, changelog_id: str = "") -> int | None:
        self._pending.pop(slot, None)
        return self.table.start(slot, changelog_id)

    def restore(self, slot: S, entries: Iterable[tuple[K, Any]], through: int) -> int:
        return self.table.restore(slot, entries, through)

    def load(self, slot: S, entries: Iterable[tuple[K, Any]]) -> int:
        """Replace ``slot`` with ``entries`` (raw changelog values, decoded on use)."""
        self._pending.pop(slot, None)
        return self.table.replace(slot, entries)

    def drop(self, slots: Iterable[S]) -> None:
        """Slots revoked: their next owner restores them from the changelog."""
        slots = list(slots)
        for slot in slots:
            self._pending.pop(slot, None)
        self.table.drop(slots)

    def retain(self, keep: Callable[[Any], bool]) -> int:
        """Forget committed entries whose value fails ``keep``; the count."""
        return self.table.retain(keep)

    def size(self) -> int:
        return self.table.size()


class MemoryTable(Generic[S, K, V]):
    """Committed entries in dicts, kept in changelog form until first read (``decode``):
    a restore reads every version since the last compaction, and decoding only the last
    one per key, only for keys used again, keeps it cheap."""

    def __init__(self, decode: Callable[[Any], V] | None = None) -> None:
        self._decode = decode
        self._entries: dict[S, dict[K, Any]] = {}
        self._lock = threading.Lock()

    def get(self, slot: S, key: K) -> V | None:
        with self._lock:
            entries = self._entries.get(slot)
            if entries is None or key not in entries:
                return None
            found = entries[key]
            if self._decode is None:
                return found
            if not isinstance(found, _Decoded):
                found = entries[key] = _Decoded(self._decode(found))
            return found.value

    def contains(self, slot: S, key: K) -> bool:
        with self._lock:
            return key in self._entries.get(slot, ())

    def keys(self, slot: S, prefix: str = "") -> set[K]:
        with self._lock:
            return {k for k in self._entries.get(slot, ()) if str(k).startswith(prefix)}

    def apply(self, updates: Mapping[S, Mapping[K, V]], checkpoints: Mapping[S, int]) -> None:
        with self._lock:
            for slot, changed in updates.items():
                entries = self._entries.setdefault(slot, {})
                if self._decode is None:
                    entries.update(changed)
                else:
                    entries.update((k, _Decoded(v)) for k, v in changed.items())

    def start(self, slot: S, changelog_id: str = "") -> int | None:
        """Nothing survives a restart here: restore the slot from the changelog's start."""
        with self._lock:
            self._entries[slot] = {}
        return None

    def restore(self, slot: S, entries: Iterable[tuple[K, Any]], through: int) -> int:
        restored = 0
        with self._lock:
            table = self._entries.setdefault(slot, {})
            for key, value in entries:
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
                restored += 1
        return restored

    def replace(self, slot: S, entries: Iterable[tuple[K, Any]]) -> int:
        restored = dict(entries)
        with self._lock:
            self._entries[slot] = restored
        return len(restored)

    def drop(self, slots: Iterable[S]) -> None:
        with self._lock:
            for slot in slots:
                self._entries.pop(slot, None)

    def retain(self, keep: Callable[[V], bool]) -> int:
        dropped = 0
        with self._lock:
            for entries in self._entries.values():
                old = [k for k, v in entries.items() if not keep(_value(v))]
                for key in old:
                    del entries[key]
                dropped += len(old)
        return dropped

    def size(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._entries.values())


class AfterCommit:
    """Effects (metrics, spans) held until the transaction they describe commits: an
    aborted batch is processed again and must not be counted twice."""

    def __init__(self) -> None:
        self._effects: list[Callable[[], None]] = []

    def add(self, effect: Callable[[], None]) -> None:
        self._effects.append(effect)

    def commit(self) -> None:
        effects, self._effects = self._effects, []
        for effect in effects:
            effect()

    def abort(self) -> None:
        self._effects.clear()


class _Decoded:
    """A committed value already decoded, never mistaken for a raw one."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _value(found: Any) -> Any:
    return found.value if isinstance(found, _Decoded) else found
