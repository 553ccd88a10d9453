"""The stages' transactional state: what the open transaction writes is read back at once
but becomes fact only on commit, vanishes on abort, and restored changelog values are
decoded once, on first use; expiry runs beside the stage's thread."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

from streams.engine.state import AfterCommit, KeyedState


def test_writes_are_read_back_at_once_and_committed_only_on_commit() -> None:
    state: KeyedState[int, str, int] = KeyedState()
    state.put(0, "a", 1)
    assert (state.get(0, "a"), state.pending(0, "a")) == (1, 1)
    assert (0, "a") in state and (1, "a") not in state
    assert state.keys(0) == ["a"]
    assert state.size() == 0  # nothing committed yet
    state.commit()
    assert (state.get(0, "a"), state.pending(0, "a"), state.size()) == (1, None, 1)
    state.put(0, "a", 2)
    assert state.get(0, "a") == 2  # the open transaction's value first
    state.commit()
    assert (state.get(0, "a"), state.size()) == (2, 1)


def test_abort_drops_the_open_transactions_writes_only() -> None:
    state: KeyedState[int, str, int] = KeyedState()
    state.put(0, "a", 1)
    state.commit()
    state.put(0, "a", 2)
    state.put(0, "b", 3)
    state.abort()
    assert state.get(0, "a") == 1
    assert state.get(0, "b") is None and (0, "b") not in state
    assert state.keys(0) == ["a"]
    state.commit()  # the next commit does not bring them back
    assert dict(state.items(0)) == {"a": 1}


def test_drop_forgets_revoked_slots_committed_and_pending() -> None:
    state: KeyedState[int, str, int] = KeyedState()
    for slot in (0, 1):
        state.put(slot, "committed", slot)
    state.commit()
    for slot in (0, 1):
        state.put(slot, "pending", slot)
    state.drop([0])
    state.commit()
    assert state.keys(0) == []
    assert dict(state.items(1)) == {"committed": 1, "pending": 1}
    assert state.size() == 2


def test_loaded_values_are_decoded_once_on_first_use() -> None:
    decoded: list[bytes] = []

    def decode(raw: bytes) -> str:
        decoded.append(raw)
        return raw.decode().upper()

    state: KeyedState[int, str, str] = KeyedState(decode=decode)
    state.put(1, "x", "written before the restore")
    restored = state.load(1, [("a", b"one"), ("b", b"two"), ("a", b"uno")])
    assert restored == 2  # the changelog's last value per key
    assert decoded == []  # nothing decoded until asked for
    assert state.pending(1, "x") is None  # the restore replaces the slot
    assert state.get(1, "a") == state.get(1, "a") == "UNO"
    assert decoded == [b"uno"]
    assert dict(state.items(1)) == {"a": "UNO", "b": "TWO"}
    assert decoded == [b"uno", b"two"]
    state.put(1, "c", "C")
    state.commit()
    assert state.get(1, "c") == "C"  # written by the stage: already a value, never decoded
    assert decoded == [b"uno", b"two"]
    assert state.load(1, [("z", b"z")]) == 1
    assert state.keys(1) == ["z"]


def test_retain_forgets_committed_entries_that_fail_the_test() -> None:
    state: KeyedState[int, str, int] = KeyedState()
    state.load(0, [("old", 100), ("new", 300)])
    state.load(1, [("older", 50)])
    state.put(0, "pending", 10)  # the open transaction's: not retain's to judge
    assert state.retain(lambda at_ms: at_ms >= 200) == 2
    assert dict(state.items(0)) == {"new": 300, "pending": 10}
    assert state.keys(1) == []


def test_retain_sees_raw_values_until_they_are_decoded() -> None:
    state: KeyedState[int, str, int] = KeyedState(decode=int)
    state.load(0, [("raw", b"1"), ("used", b"5")])
    assert state.get(0, "used") == 5
    seen: list[object] = []

    def keep(value: object) -> bool:
        seen.append(value)
        return True

    state.retain(keep)
    assert sorted(seen, key=repr) == [5, b"1"]


def test_retain_on_another_thread_beside_commits_reads_and_restores() -> None:
    """The worker expires dedup entries on its own thread while the stage commits."""
    state: KeyedState[int, str, int] = KeyedState()
    stop, running = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def expire() -> None:
        try:
            while True:
                state.retain(lambda n: n % 2 == 0)
                running.set()
                if stop.is_set():
                    return
        except BaseException as exc:
            errors.append(exc)
            running.set()

    def entries(start: int) -> Iterator[tuple[str, int]]:
        return ((f"k{n}", n) for n in range(start, start + 50))

    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so races show
    thread = threading.Thread(target=expire, daemon=True)
    try:
        thread.start()
        assert running.wait(10)
        for n in range(1_000):
            slot = n % 4
            state.put(slot, f"k{n}", n)
            state.commit()
            state.get(slot, f"k{n}")
            state.keys(slot)
            state.size()
            if n % 200 == 0:
                state.load(slot, entries(n))
            if n % 300 == 0:
                state.drop([slot])
    finally:
        stop.set()
        thread.join(10)
        sys.setswitchinterval(switching)
    assert not thread.is_alive()
    assert errors == []
    state.retain(lambda n: n % 2 == 0)
    assert state.size() > 0
    assert all(n % 2 == 0 for slot in range(4) for _, n in state.items(slot))


def test_effects_apply_once_on_commit_and_never_after_abort() -> None:
    applied: list[int] = []
    effects = AfterCommit()
    effects.add(lambda: applied.append(1))
    effects.add(lambda: applied.append(2))
    assert applied == []
    effects.commit()
    assert applied == [1, 2]
    effects.commit()
    assert applied == [1, 2]
    effects.add(lambda: applied.append(3))
    effects.abort()
    effects.commit()
    assert applied == [1, 2]
