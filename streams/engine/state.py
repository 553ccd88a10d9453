"""What a stage keeps between records, pending until the transaction it belongs to commits.

A batch is one Kafka transaction; an aborted one is processed again from the committed
offsets. Anything a stage learns while processing it (an event_id seen, an entity's new
canonical state, an audit chain's new head, a counter to increment) must therefore stay
provisional until the commit, and vanish on abort. Both kinds of state here do that:
``KeyedState`` for values read back by later records, ``AfterCommit`` for effects that
are only ever applied (metrics, exported spans).

Committed values may be kept in their changelog form and decoded on first use (``decode``),
which keeps restoring a large changelog cheap when few keys change again. Reads and writes
come from the stage's own thread; ``retain`` may run on another (expiry), so the committed
maps are guarded by a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Generic, TypeVar

S = TypeVar("S", bound=Hashable)  # a slot: what moves between instances on a rebalance
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class KeyedState(Generic[S, K, V]):
    """slot -> key -> value, with the open transaction's writes layered over the committed."""

    def __init__(self, decode: Callable[[Any], V] | None = None) -> None:
        self._decode = decode
        self._committed: dict[S, dict[K, Any]] = {}
        self._pending: dict[S, dict[K, V]] = {}
        self._lock = threading.Lock()

    def get(self, slot: S, key: K) -> V | None:
        pending = self._pending.get(slot)
        if pending is not None and key in pending:
            return pending[key]
        with self._lock:
            committed = self._committed.get(slot)
            if committed is None or key not in committed:
                return None
            found = committed[key]
            if self._decode is None:
                return found
            if not isinstance(found, _Decoded):
                found = committed[key] = _Decoded(self._decode(found))
            return found.value

    def __contains__(self, slot_key: tuple[S, K]) -> bool:
        slot, key = slot_key
        if key in self._pending.get(slot, ()):
            return True
        with self._lock:
            return key in self._committed.get(slot, ())

    def put(self, slot: S, key: K, value: V) -> None:
        self._pending.setdefault(slot, {})[key] = value

    def pending(self, slot: S, key: K) -> V | None:
        """What the open transaction wrote for ``key``, if anything."""
        return self._pending.get(slot, {}).get(key)

    def keys(self, slot: S) -> list[K]:
        """Every key of ``slot``, the open transaction's included, sorted."""
        with self._lock:
            committed = set(self._committed.get(slot, ()))
        return sorted(committed | set(self._pending.get(slot, ())))  # type: ignore[type-var]

    def items(self, slot: S) -> Iterator[tuple[K, V]]:
        for key in self.keys(slot):
            found = self.get(slot, key)
            if found is not None:
                yield key, found

    def commit(self) -> None:
        """The transaction holding the pending writes committed: they are now facts."""
        with self._lock:
            for slot, updates in self._pending.items():
                committed = self._committed.setdefault(slot, {})
                if self._decode is None:
                    committed.update(updates)
                else:
                    committed.update((k, _Decoded(v)) for k, v in updates.items())
        self._pending.clear()

    def abort(self) -> None:
        self._pending.clear()

    def load(self, slot: S, entries: Iterable[tuple[K, Any]]) -> int:
        """Replace ``slot`` with what its changelog holds (raw values, decoded on use)."""
        restored = dict(entries)
        with self._lock:
            self._committed[slot] = restored
        self._pending.pop(slot, None)
        return len(restored)

    def drop(self, slots: Iterable[S]) -> None:
        """Slots revoked: their next owner restores them from the changelog."""
        with self._lock:
            for slot in slots:
                self._committed.pop(slot, None)
                self._pending.pop(slot, None)

    def retain(self, keep: Callable[[Any], bool]) -> int:
        """Forget committed entries whose (raw or decoded) value fails ``keep``; the count."""
        dropped = 0
        with self._lock:
            for entries in self._committed.values():
                old = [k for k, v in entries.items() if not keep(_value(v))]
                for key in old:
                    del entries[key]
                dropped += len(old)
        return dropped

    def size(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._committed.values())


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
