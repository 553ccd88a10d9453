"""The on-disk table: what a restart keeps, and where it says to resume reading."""

from __future__ import annotations

import threading
from pathlib import Path

from streams.engine.durable import RocksTable
from streams.engine.state import KeyedState
from streams.stages.dedup import decode_seen, encode_seen


def table(directory: Path) -> RocksTable[int]:
    return RocksTable(directory, encode_seen, decode_seen)


def test_committed_entries_and_their_checkpoint_survive_a_restart(tmp_path: Path) -> None:
    first = KeyedState(table=table(tmp_path))
    assert first.start(3, "topic-a") is None  # a new database: read the changelog from its start
    first.put(3, "e1", 100)
    first.put(3, "e2", 200)
    first.commit({3: 41})
    first.put(3, "e3", 300)  # never committed
    first.drop([3])

    second = KeyedState(table=table(tmp_path))
    assert second.start(3, "topic-a") == 42  # resume after the last offset the commit wrote
    assert second.get(3, "e1") == 100 and second.get(3, "e2") == 200
    assert (3, "e3") not in second


def test_a_restore_upserts_deletes_and_moves_the_checkpoint(tmp_path: Path) -> None:
    state = KeyedState(table=table(tmp_path))
    state.start(0, "t")
    state.restore(0, [("a", encode_seen(1)), ("b", encode_seen(2))], through=9)
    state.restore(0, [("a", encode_seen(5)), ("b", None)], through=12)
    assert state.get(0, "a") == 5
    assert (0, "b") not in state
    state.drop([0])
    assert KeyedState(table=table(tmp_path)).start(0, "t") == 13


def test_state_of_another_changelog_incarnation_is_discarded(tmp_path: Path) -> None:
    state = KeyedState(table=table(tmp_path))
    state.start(1, "old-topic-id")
    state.restore(1, [("a", encode_seen(1))], through=500)
    state.drop([1])

    again = KeyedState(table=table(tmp_path))
    assert again.start(1, "new-topic-id") is None
    assert (1, "a") not in again


def test_pending_writes_stay_out_of_the_database_until_commit(tmp_path: Path) -> None:
    state = KeyedState(table=table(tmp_path))
    state.start(0, "t")
    state.put(0, "p", 7)
    assert state.get(0, "p") == 7  # visible to the open transaction
    assert state.table.get(0, "p") is None
    state.abort()
    assert state.get(0, "p") is None


def test_keys_by_prefix_and_expiry(tmp_path: Path) -> None:
    state = KeyedState(table=table(tmp_path))
    state.start(0, "t")
    state.restore(
        0, [("x/1", encode_seen(10)), ("x/2", encode_seen(300)), ("y/1", encode_seen(5))], 1
    )
    state.put(0, "x/3", 400)
    assert state.keys(0, "x/") == ["x/1", "x/2", "x/3"]
    assert state.retain(lambda at_ms: at_ms >= 100) == 2
    assert state.keys(0) == ["x/2", "x/3"]


def test_expiry_beside_commits_from_another_thread(tmp_path: Path) -> None:
    state = KeyedState(table=table(tmp_path))
    for slot in range(3):
        state.start(slot, "t")
    stop = threading.Event()
    failures: list[BaseException] = []

    def expire() -> None:
        try:
            while not stop.is_set():
                state.retain(lambda n: n % 2 == 0)
        except BaseException as exc:
            failures.append(exc)

    expiring = threading.Thread(target=expire)
    expiring.start()
    try:
        for n in range(3000):
            state.put(n % 3, f"k{n}", n)
            if n % 50 == 49:
                state.commit({n % 3: n})
    finally:
        stop.set()
        expiring.join()
    state.commit()
    state.retain(lambda n: n % 2 == 0)
    assert not failures
    assert all(n % 2 == 0 for slot in range(3) for _, n in state.items(slot))
