"""The dedup store's expiry, whichever table holds the ids."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from streams.stages.dedup import DedupStore, encode_seen

DAY_MS = 24 * 3600 * 1000


@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "disk"])
def test_expiry_forgets_ids_older_than_the_window_restored_or_written(
    on_disk: bool, tmp_path: Path
) -> None:
    store = DedupStore(timedelta(days=7), tmp_path if on_disk else None)
    now_ms = 100 * DAY_MS
    store.state.start(0)
    # As a restore leaves them: changelog bytes, not yet read.
    store.state.restore(0, [("old", encode_seen(now_ms - 8 * DAY_MS))], through=0)
    store.state.restore(0, [("recent", encode_seen(now_ms - DAY_MS))], through=1)
    store.add(0, "written", now_ms - 9 * DAY_MS)
    store.state.commit()

    assert store.expire(now_ms) == 2
    assert store.seen(0, "recent")
    assert not store.seen(0, "old") and not store.seen(0, "written")
    store.state.drop([0])
