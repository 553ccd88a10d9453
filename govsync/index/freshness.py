"""How current the index is: what the topics hold now that it does not reflect yet.

Kept apart from the indexer so that a question (`govsync trace`, who-received, the
monitor) checks the index's freshness without loading the indexer's decoding stack.
"""

from __future__ import annotations

import time

import psycopg
from confluent_kafka import Consumer

from govsync.index import store
from streams.config.settings import Settings
from streams.kafka import topic_reader


def behind(
    ends: topic_reader.Offsets, starts: topic_reader.Offsets, held: dict[tuple[str, int], int]
) -> int:
    """Records on the topics the index does not reflect yet (from the log start where
    the index never read a partition, or retention removed what it had not)."""
    return sum(max(0, end - max(held.get(tp, 0), starts.get(tp, 0))) for tp, end in ends.items())


def lacking(settings: Settings, conn: psycopg.Connection, index: store.Index = store.LIVE) -> int:
    """Records committed on the covered topics that the index does not reflect yet."""
    ends, starts = extent(settings, index)
    return behind(ends, starts, store.positions(conn))


def extent(
    settings: Settings,
    index: store.Index,
    topics: tuple[str, ...] | None = None,
    consumer: Consumer | None = None,
) -> tuple[topic_reader.Offsets, topic_reader.Offsets]:
    """The ends and log starts now of ``topics`` (default: every covered topic)."""
    marks = topic_reader.watermarks(settings.bootstrap, topics or index.covers, consumer)
    return {tp: end for tp, (_, end) in marks.items()}, {tp: s for tp, (s, _) in marks.items()}


def wait_for(
    settings: Settings,
    conn: psycopg.Connection,
    timeout: float = 10.0,
    index: store.Index = store.LIVE,
    topics: tuple[str, ...] | None = None,
    consumer: Consumer | None = None,
) -> int:
    """Wait, at most ``timeout``, until the index reflects everything committed on
    ``topics`` (default: the trail) when called (a question asked now is answered as of
    now); the records still missing then (0: caught up). ``consumer``: see watermarks."""
    topics = topics or index.trail
    ends, starts = extent(settings, index, topics, consumer)
    deadline = time.monotonic() + timeout
    while (missing := behind(ends, starts, store.positions(conn, topics))) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return missing
