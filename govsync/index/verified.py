"""Where `audit verify --incremental` starts: per chain, the last checkpoint a walk found
everything intact up to. Kept in the index database; a full walk (the default) ignores it.

Whoever can write the index database could move these marks forward past a tampered
record, so an incremental walk trusts the index; only a full walk trusts nothing.
"""

from __future__ import annotations

import psycopg

from govsync.index import store
from streams.config.settings import Settings
from streams.trail.audit import Resume, VerifyReport


def checkpoints(settings: Settings, topic: str) -> dict[int, Resume]:
    with store.reading(settings) as conn:
        rows = conn.execute(
            'SELECT partition, "offset", seq, prev_sha256 FROM verified WHERE topic = %s',
            (topic,),
        )
        return {
            partition: Resume(offset=offset, seq=seq, prev_sha256=prev)
            for partition, offset, seq, prev in rows
        }


def remember(settings: Settings, topic: str, reports: dict[int, VerifyReport]) -> int:
    """Record each intact chain's last checkpoint; how many chains moved on."""
    marks = [
        (topic, partition, r.checkpoint.offset, r.checkpoint.seq, r.checkpoint.prev_sha256)
        for partition, r in reports.items()
        if r.intact and r.checkpoint is not None
    ]
    if not marks:
        return 0
    with psycopg.connect(store.conninfo(settings, store.WRITER), autocommit=True) as conn:
        conn.cursor().executemany(
            'INSERT INTO verified (topic, partition, "offset", seq, prev_sha256) '
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (topic, partition) DO UPDATE SET "
            '"offset" = excluded."offset", seq = excluded.seq, '
            "prev_sha256 = excluded.prev_sha256, verified_at = now()",
            marks,
        )
    return len(marks)
