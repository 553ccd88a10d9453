"""The indexer: the trail (``govsync.trace``, ``govsync.audit``), the dead-letter queue
(``govsync.dlq``, ``govsync.dlq.closed``), counts of ``changes.<entity>`` and the current
state on ``master.<entity>`` into the index database, exactly once.

It assigns itself every partition of those topics (no consumer group: one writer at a
time, under the index's advisory lock), from the positions the index holds, and writes
each batch of records (rows, counters, awaited receipts, new positions) in one
PostgreSQL transaction. A crash leaves the index at the last batch it committed; the next run reads
on from there, so nothing is indexed twice or skipped. Rows go in by COPY: a rebuild of
millions of records is bound by decoding, not by round trips. Change events are counted
from their headers alone, never decoded.

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

from govsync.index import freshness, store, witness
from streams.config.settings import Settings
from streams.contract import headers
from streams.contract.records import Closure
from streams.contract.topics import INDEX_GROUP
from streams.kafka import topic_reader
from streams.kafka.serde import RegistryCodec, registry_client

log = logging.getLogger("govsync.index")

BATCH = 5_000
POLL_S = 0.2
TOPICS_CHECK_S = 5.0  # how often it looks for new topics (an entity's, once applied)
# How often it drops the lineage rows of trace records retention removed, and over how
# many offsets of each partition per step between batches, so indexing never waits long.
PRUNE_EVERY_S = 600.0
PRUNE_STEP = 2_000

_HOP_FIELDS = store.HOP_COLUMNS[2:9]  # event_id .. subscription, as the hop record names them


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in names)


@dataclass
class Batch:
    """What one transaction writes."""

    hops: list[tuple[Any, ...]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    delivered: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    answered: list[tuple[str, str]] = field(default_factory=list)
    dead_letters: list[tuple[Any, ...]] = field(default_factory=list)
    # (partition, offset) of the held record -> its closure (None: the closure was deleted)
    closures: dict[tuple[int, int], tuple[Any, ...] | None] = field(default_factory=dict)
    # cdc (topic, partition) -> [change events made from it, lowest cdc offset among them]
    normalized: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    # (entity, key) -> its latest state row in this batch (None: deleted)
    states: dict[tuple[str, str], tuple[Any, ...] | None] = field(default_factory=dict)
    unreadable: list[tuple[str, int, int, str]] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    # audit checkpoints, for the witness (govsync/index/witness.py)
    checkpoints: list[witness.Checkpoint] = field(default_factory=list)


class Indexer:
    """Reads the topics the index covers from its positions and writes them in."""

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
        self._assigned: set[tuple[str, int]] = set()
        self._witness = witness.connect(settings)
        self._prune_at, self._pruned = time.monotonic(), 0
        self.indexed = 0

    def assign(self) -> set[str]:
        """Every partition of the covered topics that exist (`topology apply` creates
        them), at the index's position or the log start; the topics assigned. Assigns
        again only when the partitions changed (a new entity's change topic)."""
        found = self._consumer.list_topics(timeout=10).topics
        wanted = {
            (topic, partition)
            for topic in self._index.topics(found)
            for partition in found[topic].partitions
        }
        if wanted != self._assigned:
            held = self._held = store.positions(self._conn)
            self._consumer.assign(
                [
                    TopicPartition(t, p, held.get((t, p), OFFSET_BEGINNING))
                    for t, p in sorted(wanted)
                ]
            )
            self._assigned = wanted
        return {topic for topic, _ in wanted}

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
        if batch.checkpoints:
            # Before the batch's position moves on: a crash between the two repeats the
            # testimony, which changes nothing (the first sighting stands).
            witness.testify(self._witness, self._index.audit, batch.checkpoints)
        if batch.next_offsets:
            write(self._conn, batch)
            self._held.update(batch.next_offsets)
        self.indexed += records
        return records

    def prune_when_due(self) -> None:
        """Every ``PRUNE_EVERY_S``, a round of ``prune`` steps, one per call (between
        batches) until a step finds nothing left below the log starts."""
        if time.monotonic() < self._prune_at:
            return
        dropped = self.prune()
        self._pruned += dropped
        if not dropped:
            if self._pruned:
                log.info("dropped %d lineage rows the trace topic no longer holds", self._pruned)
            self._prune_at, self._pruned = time.monotonic() + PRUNE_EVERY_S, 0

    def prune(self, limit: int = PRUNE_STEP) -> int:
        """Drop the lineage rows below the trace topic's log starts, from at most ``limit``
        offsets of each partition; how many."""
        starts = {
            partition: self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10
            )[0]
            for topic, partition in self._assigned
            if topic == self._index.trace
        }
        return store.prune_hops(self._conn, starts, limit)

    @property
    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset per partition, as the index holds it after the last batch."""
        return dict(self._held)

    def close(self) -> None:
        self._consumer.close()
        self._witness.close()

    def _add(self, batch: Batch, message: Message) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        batch.next_offsets[(topic, partition)] = offset + 1
        index = self._index
        try:
            if topic == index.dlq:
                _dead_letter(batch, message)
            elif topic == index.dlq_closed:
                _closure(batch, message)
            elif topic.startswith(index.master_prefix):
                entity = topic.removeprefix(index.master_prefix)
                _state(batch, entity, message, self._codec.decode(topic, message.value()))
            elif topic in index.trail:
                value = self._codec.decode(topic, message.value())
                if value is None:
                    raise SerializationError("a record without a value")
                if topic == index.trace:
                    _hop(batch, partition, offset, value)
                else:
                    _entry(batch, partition, offset, value)
            else:
                _counted(batch, message)
        # ValueError includes pydantic's ValidationError (a closure that is not one)
        except (SerializationError, KeyError, TypeError, ValueError) as exc:
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
    checkpoints) are verified on the topic and need no lookup by key. Checkpoints go to
    the witness."""
    if record["kind"] == "checkpoint":
        batch.checkpoints.append((partition, record["seq"], offset, record["sha256"]))
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


def _state(batch: Batch, entity: str, message: Message, value: dict[str, Any] | None) -> None:
    """The entity's state as master holds it (None: deleted), and the change it reflects
    (headers); the last one of a batch stands."""
    key = message.key()
    if key is None:
        raise ValueError("a master record without its entity key")
    h = headers.as_dict(message.headers())
    batch.states[(entity, key.decode())] = (
        None
        if value is None
        else (entity, key.decode(), Jsonb(value), h["event_id"], int(h["source_ts"]))
    )


def _dead_letter(batch: Batch, message: Message) -> None:
    """A held record's reason and origin, from its headers; a record whose headers are
    damaged is still held, with what could be read."""
    h = headers.as_dict(message.headers())
    batch.dead_letters.append(
        (
            message.partition(),
            message.offset(),
            h.get("error_code", "unknown"),
            h.get("error_message", ""),
            h.get("source_topic", ""),
            _int(h.get("source_partition")),
            _int(h.get("source_offset")),
            _int(h.get("dead_lettered_at")) if h.get("dead_lettered_at") else None,
        )
    )


def _int(text: str | None) -> int:
    try:
        return int(text or "")
    except ValueError:
        return -1


def _closure(batch: Batch, message: Message) -> None:
    key = message.key()
    if key is None:
        raise ValueError("a closure without the held record's position as its key")
    partition, offset = (int(n) for n in key.decode().split(":"))
    value = message.value()
    if value is None:
        batch.closures[(partition, offset)] = None
        return
    closure = Closure.model_validate_json(value)
    batch.closures[(partition, offset)] = (
        partition,
        offset,
        closure.outcome,
        closure.closed_at,
        closure.reprocess_id,
        closure.event_id,
    )


def _counted(batch: Batch, message: Message) -> None:
    """A change event counts for the record normalize made it from: the cdc record its
    ``captured`` header names, or for a change from an upstream node the mirrored record
    its ``upstream`` header names (``captured`` there is the upstream's own). Control
    records and reprocessed held records are not counted: the latter are closures of dead
    letters, counted there."""
    captured = upstream = None
    for name, value in message.headers() or []:
        if name in (headers.CONTROL, headers.REPROCESSED):
            return
        if name == headers.CAPTURED:
            captured = headers.parse_captured(value.decode() if value else None)
        elif name == headers.UPSTREAM:
            upstream = headers.parse_upstream(value.decode() if value else None)
    if upstream is not None:
        _, topic, partition, offset, _ = upstream
    elif captured is not None:
        topic, partition, offset, _ = captured
    else:
        raise ValueError("a change event without the captured header naming its cdc record")
    counted = batch.normalized.setdefault((topic, partition), [0, offset])
    counted[0] += 1
    counted[1] = min(counted[1], offset)


# Arrays go as binary parameters (%b): psycopg escapes text arrays element by element in
# Python, five times slower for the JSON of a state.
_AWAIT = """
INSERT INTO awaited (subscription, event_id, department, entity_key, delivered_at_ms)
SELECT d.subscription, d.event_id, d.department, d.entity_key, d.delivered_at_ms
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[])
    AS d(subscription, event_id, department, entity_key, delivered_at_ms)
WHERE NOT EXISTS (
    SELECT 1 FROM hop r
    WHERE r.event_id = d.event_id AND r.stage = 'receipt' AND r.subscription = d.subscription
)
ON CONFLICT DO NOTHING
"""
_ANSWER = """
DELETE FROM awaited a
USING unnest(%b::text[], %b::text[]) AS r(subscription, event_id)
WHERE a.subscription = r.subscription AND a.event_id = r.event_id
"""
_CLOSE = """
INSERT INTO closure (partition, "offset", outcome, closed_at, reprocess_id, event_id)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (partition, "offset") DO UPDATE SET outcome = excluded.outcome,
    closed_at = excluded.closed_at, reprocess_id = excluded.reprocess_id,
    event_id = excluded.event_id
"""
_COUNT = """
INSERT INTO normalized (source_topic, source_partition, records, first_offset)
SELECT * FROM unnest(%b::text[], %b::int[], %b::bigint[], %b::bigint[])
ON CONFLICT (source_topic, source_partition) DO UPDATE SET
    records = normalized.records + excluded.records,
    first_offset = least(normalized.first_offset, excluded.first_offset)
"""
_STATE = """
INSERT INTO entity_state (entity, entity_key, state, event_id, source_ts_ms)
SELECT * FROM unnest(%b::text[], %b::text[], %b::jsonb[], %b::text[], %b::bigint[])
ON CONFLICT (entity, entity_key) DO UPDATE SET state = excluded.state,
    event_id = excluded.event_id, source_ts_ms = excluded.source_ts_ms
"""
_STATELESS = """
DELETE FROM entity_state s USING unnest(%b::text[], %b::text[]) AS d(entity, entity_key)
WHERE s.entity = d.entity AND s.entity_key = d.entity_key
"""
_POSITION = """
INSERT INTO position (topic, partition, next_offset)
SELECT * FROM unnest(%b::text[], %b::int[], %b::bigint[])
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset
"""


def write(conn: psycopg.Connection, batch: Batch) -> None:
    """One batch and the positions after it, in one transaction. Hops go in before the
    awaited receipts are worked out, so a delivery and its receipt in the same batch
    leave nothing awaited."""
    with conn.transaction(), conn.cursor() as cur:
        if batch.hops:
            with cur.copy(f"COPY hop ({_columns(store.HOP_COLUMNS)}) FROM STDIN") as copy:
                for row in batch.hops:
                    copy.write_row(row)
        if batch.entries:
            with cur.copy(f"COPY audit_entry ({_columns(store.AUDIT_COLUMNS)}) FROM STDIN") as copy:
                for row in batch.entries:
                    copy.write_row(row)
        if batch.dead_letters:
            with cur.copy(
                f"COPY dead_letter ({_columns(store.DEAD_LETTER_COLUMNS)}) FROM STDIN"
            ) as copy:
                for row in batch.dead_letters:
                    copy.write_row(row)
        closed = [row for row in batch.closures.values() if row is not None]
        if closed:
            cur.executemany(_CLOSE, closed)
        reopened = [where for where, row in batch.closures.items() if row is None]
        if reopened:
            cur.executemany('DELETE FROM closure WHERE partition = %s AND "offset" = %s', reopened)
        if batch.normalized:
            cur.execute(
                _COUNT,
                [
                    [topic for topic, _ in batch.normalized],
                    [partition for _, partition in batch.normalized],
                    [records for records, _ in batch.normalized.values()],
                    [first for _, first in batch.normalized.values()],
                ],
            )
        states = [row for row in batch.states.values() if row is not None]
        if states:
            cur.execute(_STATE, [list(column) for column in zip(*states, strict=True)])
        gone = [where for where, row in batch.states.items() if row is None]
        if gone:
            cur.execute(_STATELESS, [list(column) for column in zip(*gone, strict=True)])
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
                if time.monotonic() - checked > TOPICS_CHECK_S:
                    found, checked = indexer.assign(), time.monotonic()
                    if found != assigned:
                        log.info("now indexing %s as well", ", ".join(sorted(found - assigned)))
                        assigned = found
                indexer.prune_when_due()
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
        while freshness.behind(target, {}, indexer.positions):
            progress(indexer.step(1.0))
    finally:
        indexer.close()
    return indexer.indexed
