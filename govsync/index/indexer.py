"""The indexer: ``govsync.trace`` and ``govsync.audit`` into the index database, exactly
once.

It assigns itself every partition of both topics (no consumer group: one writer at a
time, under the index's advisory lock), from the positions the index holds, and writes
each batch of records (rows, awaited receipts, new positions) in one PostgreSQL
transaction. A crash leaves the index at the last batch it committed; the next run reads
on from there, so nothing is indexed twice or skipped. Rows go in by COPY: a rebuild of
millions of records is bound by decoding, not by round trips.

A record it cannot decode is not lost and does not stop it: its position and the reason
go to ``unindexed`` and the indexer reads on (`govsync index status` counts them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.serialization import SerializationError
from psycopg.types.json import Jsonb

from govsync.index import store
from streams.config.settings import Settings
from streams.contract.topics import INDEX_GROUP
from streams.kafka import admin, topic_reader
from streams.kafka.serde import RegistryCodec, registry_client

log = logging.getLogger("govsync.index")

BATCH = 5_000
POLL_S = 0.2
TOPICS_CHECK_S = 5.0  # until both trail topics exist

HOP_COLUMNS = (
    "partition",
    "offset",
    "event_id",
    "stage",
    "kind",
    "entity",
    "entity_key",
    "department",
    "subscription",
    "topic",
    "topic_partition",
    "topic_offset",
    "at_ms",
    "source_ts_ms",
    "outcome",
    "reason",
)
_HOP_FIELDS = HOP_COLUMNS[2:9]  # event_id .. subscription, as the hop record names them
AUDIT_COLUMNS = (
    "partition",
    "offset",
    "seq",
    "kind",
    "at_ms",
    "actor",
    "event_id",
    "entity",
    "entity_key",
    "department",
    "subscription",
    "fields",
    "approval",
    "detail",
    "prev_sha256",
    "sha256",
)


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in names)


@dataclass
class Batch:
    """What one transaction writes."""

    hops: list[tuple[Any, ...]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    delivered: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    answered: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, int, int, str]] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)


class Indexer:
    """Reads the trail topics from the index's positions and writes them in."""

    def __init__(
        self, settings: Settings, conn: psycopg.Connection, index: store.Index = store.LIVE
    ) -> None:
        self._settings = settings
        self._conn = conn
        self._index = index
        # Bytes that are not readable Avro, or name a schema the registry does not know,
        # come out as SerializationError (unindexed); a registry that is down does not.
        self._codec = RegistryCodec(registry_client(settings))
        # End-of-partition events tell where a partition's committed records end: past
        # the last record there may be a transaction marker, which no record reports.
        self._consumer: Consumer = topic_reader.reader(
            settings.bootstrap, **{"group.id": INDEX_GROUP, **topic_reader.RESTORE_PREFETCH}
        )
        self._held: dict[tuple[str, int], int] = {}
        self.indexed = 0

    def assign(self) -> set[str]:
        """Every partition of the trail topics, at the index's position (or the log start);
        the topics that exist (`topology apply` creates them)."""
        client = admin.admin_client(self._settings.bootstrap)
        found = client.list_topics(timeout=10).topics
        topics = self._index.topics
        held = self._held = store.positions(self._conn, topics)
        self._consumer.assign(
            [
                TopicPartition(topic, partition, held.get((topic, partition), OFFSET_BEGINNING))
                for topic in topics
                if topic in found
                for partition in sorted(found[topic].partitions)
            ]
        )
        return set(topics) & set(found)

    def step(self, timeout: float = POLL_S) -> int:
        """Index what arrives within ``timeout`` (up to ``BATCH`` records); how many."""
        batch = Batch()
        records = 0
        for message in self._consumer.consume(BATCH, timeout):
            where = (message.topic(), message.partition())
            error = message.error()
            if error is None:
                self._add(batch, message)
                records += 1
            elif error.code() == KafkaError._PARTITION_EOF:
                if message.offset() > self._held.get(where, 0):
                    batch.next_offsets[where] = message.offset()
            elif error.fatal():
                raise KafkaException(error)
            else:
                log.warning("consumer: %s", error.str())
        if batch.next_offsets:
            write(self._conn, batch)
            self._held.update(batch.next_offsets)
        self.indexed += records
        return records

    @property
    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset per partition, as the index holds it after the last batch."""
        return dict(self._held)

    def close(self) -> None:
        self._consumer.close()

    def _add(self, batch: Batch, message: Message) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        batch.next_offsets[(topic, partition)] = offset + 1
        try:
            value = self._codec.decode(topic, message.value())
            if value is None:
                raise SerializationError("a record without a value")
            if topic == self._index.trace:
                _hop(batch, partition, offset, value)
            else:
                _entry(batch, partition, offset, value)
        except (SerializationError, KeyError, TypeError) as exc:
            log.warning("%s[%d]@%d not indexed: %s", topic, partition, offset, exc)
            batch.unreadable.append((topic, partition, offset, str(exc)))


def _hop(batch: Batch, partition: int, offset: int, hop: dict[str, Any]) -> None:
    batch.hops.append(
        (
            partition,
            offset,
            *(hop[name] for name in _HOP_FIELDS),
            hop["topic"],
            hop["partition"],
            hop["offset"],
            hop["at_ms"],
            hop["source_ts_ms"],
            hop["outcome"],
            hop["reason"],
        )
    )
    subscription = hop["subscription"]
    if subscription is None:
        return
    if hop["stage"] == "delivered":
        batch.delivered.append(
            (
                subscription,
                hop["event_id"],
                hop["department"] or "",
                hop["entity_key"],
                hop["at_ms"],
            )
        )
    elif hop["stage"] == "receipt":
        batch.answered.append((subscription, hop["event_id"]))


def _entry(batch: Batch, partition: int, offset: int, record: dict[str, Any]) -> None:
    """Audit links that name an entity; the others (topology changes, replays,
    checkpoints) are verified on the topic and need no lookup by key."""
    if not record.get("entity_key"):
        return
    batch.entries.append(
        (
            partition,
            offset,
            record["seq"],
            record["kind"],
            record["at_ms"],
            record["actor"],
            record["event_id"],
            record["entity"],
            record["entity_key"],
            record["department"],
            record["subscription"],
            list(record["fields"]),
            Jsonb(record["approval"]),
            Jsonb(record["detail"]),
            record["prev_sha256"],
            record["sha256"],
        )
    )


_AWAIT = """
INSERT INTO awaited (subscription, event_id, department, entity_key, delivered_at_ms)
SELECT d.subscription, d.event_id, d.department, d.entity_key, d.delivered_at_ms
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[])
    AS d(subscription, event_id, department, entity_key, delivered_at_ms)
WHERE NOT EXISTS (
    SELECT 1 FROM hop r
    WHERE r.event_id = d.event_id AND r.stage = 'receipt' AND r.subscription = d.subscription
)
ON CONFLICT DO NOTHING
"""
_ANSWER = """
DELETE FROM awaited a
USING unnest(%s::text[], %s::text[]) AS r(subscription, event_id)
WHERE a.subscription = r.subscription AND a.event_id = r.event_id
"""
_POSITION = """
INSERT INTO position (topic, partition, next_offset)
SELECT * FROM unnest(%s::text[], %s::int[], %s::bigint[])
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset
"""


def write(conn: psycopg.Connection, batch: Batch) -> None:
    """One batch and the positions after it, in one transaction. Hops go in before the
    awaited receipts are worked out, so a delivery and its receipt in the same batch
    leave nothing awaited."""
    with conn.transaction(), conn.cursor() as cur:
        if batch.hops:
            with cur.copy(f"COPY hop ({_columns(HOP_COLUMNS)}) FROM STDIN") as copy:
                for row in batch.hops:
                    copy.write_row(row)
        if batch.entries:
            with cur.copy(f"COPY audit_entry ({_columns(AUDIT_COLUMNS)}) FROM STDIN") as copy:
                for row in batch.entries:
                    copy.write_row(row)
        if batch.delivered:
            cur.execute(_AWAIT, [list(column) for column in zip(*batch.delivered, strict=True)])
        if batch.answered:
            cur.execute(_ANSWER, [list(column) for column in zip(*batch.answered, strict=True)])
        if batch.unreadable:
            cur.executemany(
                'INSERT INTO unindexed (topic, partition, "offset", reason) VALUES (%s, %s, %s, %s)'
                " ON CONFLICT DO NOTHING",
                batch.unreadable,
            )
        topics, partitions, offsets = zip(
            *((t, p, o) for (t, p), o in batch.next_offsets.items()), strict=True
        )
        cur.execute(_POSITION, (list(topics), list(partitions), list(offsets)))


def writer_connection(
    settings: Settings, wait: bool = True, index: store.Index = store.LIVE
) -> psycopg.Connection:
    """A connection as the index's owner, holding the one-writer lock (waiting for it, or
    failing with :class:`store.WriterBusy` when ``wait`` is false)."""
    conn = psycopg.connect(store.conninfo(settings, store.WRITER, index), autocommit=True)
    # A batch and its positions commit together, so a commit PostgreSQL loses in a crash
    # only puts the index back a batch, to be read again: durability can be lazy here.
    conn.execute("SET synchronous_commit = off")
    if wait:
        conn.execute("SELECT pg_advisory_lock(%s)", (store.WRITER_LOCK,))
        return conn
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (store.WRITER_LOCK,)).fetchone()
    if row is None or not row[0]:
        conn.close()
        raise store.WriterBusy("another process is writing the index (the indexer?)")
    return conn


def run(settings: Settings, stop: threading.Event) -> None:
    """Index as records arrive until ``stop``; crash-only: any error ends the run."""
    store.ensure(settings)
    with writer_connection(settings) as conn:
        indexer = Indexer(settings, conn)
        try:
            assigned, checked = indexer.assign(), time.monotonic()
            log.info("indexing %s from the index's positions", ", ".join(sorted(assigned)))
            while not stop.is_set():
                if (
                    assigned != set(store.LIVE.topics)
                    and time.monotonic() - checked > TOPICS_CHECK_S
                ):
                    assigned, checked = indexer.assign(), time.monotonic()
                indexer.step()
        finally:
            indexer.close()


def catch_up(
    settings: Settings,
    conn: psycopg.Connection,
    target: topic_reader.Offsets,
    progress: Callable[[int], None] = lambda _: None,
    index: store.Index = store.LIVE,
) -> int:
    """Index until every partition reached ``target`` (a rebuild's end offsets)."""
    indexer = Indexer(settings, conn, index)
    try:
        indexer.assign()
        while behind(target, {}, indexer.positions):
            progress(indexer.step(1.0))
    finally:
        indexer.close()
    return indexer.indexed


def behind(
    ends: topic_reader.Offsets, starts: topic_reader.Offsets, held: dict[tuple[str, int], int]
) -> int:
    """Records on the topics the index does not reflect yet (from the log start where
    the index never read a partition, or retention removed what it had not)."""
    return sum(max(0, end - max(held.get(tp, 0), starts.get(tp, 0))) for tp, end in ends.items())


def lacking(settings: Settings, conn: psycopg.Connection, index: store.Index = store.LIVE) -> int:
    """Records committed on the trail topics that the index does not reflect yet."""
    ends, starts = extent(settings, index)
    return behind(ends, starts, store.positions(conn, index.topics))


def extent(
    settings: Settings, index: store.Index
) -> tuple[topic_reader.Offsets, topic_reader.Offsets]:
    """The trail topics' ends and log starts now."""
    marks = topic_reader.watermarks(settings.bootstrap, index.topics)
    return {tp: end for tp, (_, end) in marks.items()}, {tp: s for tp, (s, _) in marks.items()}


def wait_for(
    settings: Settings,
    conn: psycopg.Connection,
    timeout: float = 10.0,
    index: store.Index = store.LIVE,
) -> int:
    """Wait, at most ``timeout``, until the index reflects everything committed on the
    trail topics when called (a question asked now is answered as of now); the records
    still missing then (0: caught up)."""
    ends, starts = extent(settings, index)
    deadline = time.monotonic() + timeout
    while (missing := behind(ends, starts, store.positions(conn, index.topics))) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    return missing
