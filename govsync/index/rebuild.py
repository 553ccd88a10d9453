"""Recreating the index from the topics, which stay the record of truth, and what the
index holds now.

A rebuild empties the tables and reads the topics the index covers from their log start
up to the ends they had when it began. It is resumable: the target is kept in ``rebuild`` and the
progress is the index's own positions, committed with every batch, so a rebuild stopped
half-way goes on from its last batch when started again. Only one process writes the
index at a time (the writer lock): the live indexer is stopped around a rebuild.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from govsync.index import freshness, indexer, store
from streams.config.settings import Settings
from streams.kafka import topic_reader


class Rebuilt(BaseModel):
    resumed: bool  # went on with a rebuild that had stopped
    records: int  # read by this run
    target: int  # records between the log starts and the target ends


class IndexStatus(BaseModel):
    """How far the index is, per topic it covers, and what it holds (row counts are
    PostgreSQL's estimates: exact counts would scan the tables)."""

    database: str
    behind: dict[str, int]
    rows: dict[str, int]
    unindexed: int
    rebuilding: bool


def _offsets_json(offsets: topic_reader.Offsets) -> dict[str, int]:
    return {f"{topic}/{partition}": offset for (topic, partition), offset in offsets.items()}


def _offsets(data: dict[str, int]) -> topic_reader.Offsets:
    return {
        (topic, int(partition)): offset
        for name, offset in data.items()
        for topic, partition in [name.rsplit("/", 1)]
    }


def rebuild(
    settings: Settings,
    progress: Callable[[int, int], None] = lambda done, total: None,
    restart: bool = False,
    index: store.Index = store.LIVE,
) -> Rebuilt:
    """Rebuild the index from the topics, or go on with a rebuild that stopped
    (``restart``: start over even then). ``progress(done, total)`` after every batch."""
    store.ensure(settings, index)
    with indexer.writer_connection(settings, wait=False, index=index) as conn:
        row = conn.execute("SELECT target FROM rebuild WHERE finished_at IS NULL").fetchone()
        resumed = row is not None and not restart
        if resumed:
            assert row is not None
            target = _offsets(row[0])
        else:
            target = topic_reader.end_offsets(settings.bootstrap, index.covers)
            with conn.transaction():
                conn.execute(f"TRUNCATE {', '.join(store.TABLES)}")
                conn.execute("DELETE FROM rebuild")
                conn.execute(
                    "INSERT INTO rebuild (started_at, target) VALUES (now(), %s)",
                    (Jsonb(_offsets_json(target)),),
                )
        starts = topic_reader.log_starts(settings.bootstrap, index.covers)
        total = freshness.behind(target, starts, {})
        done = total - freshness.behind(target, starts, store.positions(conn))
        progress(done, total)

        def step(records: int) -> None:
            nonlocal done
            done += records
            progress(min(done, total), total)

        records = indexer.catch_up(settings, conn, target, step, index)
        conn.execute("UPDATE rebuild SET finished_at = now() WHERE finished_at IS NULL")
        progress(total, total)
    return Rebuilt(resumed=resumed, records=records, target=total)


def status(settings: Settings, index: store.Index = store.LIVE) -> IndexStatus:
    with store.reading(settings, index) as conn:
        held = store.positions(conn)
        ends, starts = freshness.extent(settings, index)
        behind = {
            topic: freshness.behind(
                {tp: e for tp, e in ends.items() if tp[0] == topic}, starts, held
            )
            for topic in sorted({topic for topic, _ in ends})
        }
        return IndexStatus(
            database=index.database,
            behind=behind,
            rows=_estimates(conn),
            unindexed=_count(conn, "SELECT count(*) FROM unindexed"),
            rebuilding=_count(conn, "SELECT count(*) FROM rebuild WHERE finished_at IS NULL") > 0,
        )


def _estimates(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE relname = ANY(%s)",
        (["hop", "audit_entry", "awaited", "dead_letter"],),
    )
    return dict(rows)


def _count(conn: psycopg.Connection, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0
