"""The dead-letter queue: what could not be normalized, why, and proof nothing was lost.

``govsync.dlq`` holds each refused cdc record's original bytes with its position and
reason. Closing a held record is recorded on ``govsync.dlq.closed`` (compacted, keyed
by the record's DLQ position), never by deleting it, so the queue stays an audit of
what went wrong. Reprocessing runs held records through the live normalize code again;
only those that now succeed are closed, in the same transaction as the change events
they become.

Listing and accounting read the index (govsync.index), which counts every topic involved
as it grows: their cost does not depend on how long the queue or the change topics are.
Only the bytes of the records shown or reprocessed are read from the topic, from their
own offsets.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.serialization import SerializationError
from pydantic import BaseModel

from govsync.index import freshness, queries, store
from streams.config.settings import Settings
from streams.contract import headers
from streams.contract.records import Closure, DeadLetterOutcome, HeldRecord
from streams.contract.topics import (
    DLQ_CLOSED_TOPIC,
    DLQ_REPROCESS_ID,
    DLQ_TOPIC,
    NORMALIZE,
    changes_topic,
    stage_group,
)
from streams.engine.transactional import Output
from streams.kafka import clients, topic_reader
from streams.kafka.serde import (
    RegistryCodec,
    ValueDeserializer,
    registry_client,
    upstream_codecs,
)
from streams.model.topology import Topology
from streams.stages.normalize import NormalizeStage
from streams.transform.normalize import NormalizeError

# How long a listing or reprocessing waits for the index to have read the queue and the
# change topics as they are when asked.
CURRENT_WITHIN_S = 10.0


class SourceAccount(BaseModel):
    """For one source, counted from where its counts begin (each cdc partition's first
    record that became a change event): every record normalize has processed became
    exactly one change event or one dead letter (processed = normalized + dead-lettered)."""

    source: str
    captured: int
    processed: int
    in_flight: int
    normalized: int
    dead_lettered: int
    dead_letters_held: int  # every held record of the source, counted or before the count
    dead_letters_open: int
    reprocessed: int
    # The worker keeps running while we count: processed is read before and after.
    processed_after: int
    # Records on the queue and change topics the index had not read when counted: the
    # counts are short by up to that many, so balance is not judged (None) until it is 0.
    index_behind: int = 0

    @property
    def balanced(self) -> bool | None:
        if self.index_behind:
            return None
        return self.processed <= self.normalized + self.dead_lettered <= self.processed_after


class ReprocessReport(BaseModel):
    reprocess_id: str
    examined: int
    reprocessed: int
    superseded: int
    still_failing: dict[str, int]
    dry_run: bool


def held(
    settings: Settings,
    *,
    closed_too: bool = False,
    limit: int | None = None,
    wait: float = CURRENT_WITHIN_S,
) -> tuple[list[HeldRecord], int]:
    """Held records (open only unless ``closed_too``), in queue order, at most ``limit``;
    and how many records on the queue the index had still to read (0: none)."""
    with store.reading(settings) as conn:
        behind = freshness.wait_for(settings, conn, wait, topics=store.LIVE.dead_letters)
        return queries.held(conn, closed_too=closed_too, limit=limit), behind


def accounting(
    settings: Settings, topology: Topology, wait: float = CURRENT_WITHIN_S
) -> list[SourceAccount]:
    """Counts every source's records through normalize, from the index's counters.

    Connect writes cdc topics without transactions, so offsets count records there. The
    worker commits its input offsets in the same transaction as its outputs, so the
    normalize group's committed offsets say exactly how many inputs have outputs: read
    before the index is brought up to the topics' ends and again after it is read.
    """
    cdc = [s.cdc_topic for s in topology.sources]
    marks = topic_reader.watermarks(settings.bootstrap, cdc)
    before = _committed(settings, list(marks))
    index = store.LIVE
    with store.reading(settings) as conn:
        changes = tuple(changes_topic(entity) for entity in topology.changed_entities)
        behind = freshness.wait_for(settings, conn, wait, topics=(*index.dead_letters, *changes))
        counted = queries.outcomes(conn, cdc)
    after = _committed(settings, list(marks))
    accounts = []
    for source in topology.sources:
        parts = [tp for tp in marks if tp[0] == source.cdc_topic]
        sums: Counter[str] = Counter()
        for tp in parts:
            start, end = marks[tp]
            o = counted.get(tp, queries.Outcomes(0, None, 0, None, 0, 0, 0))
            # Where this partition's count begins: its first normalized record, else its
            # first held one, else (nothing counted yet) the log start.
            floor = next(x for x in (o.first_offset, o.first_dead_letter, start) if x is not None)
            sums["captured"] += max(0, end - floor)
            sums["processed"] += max(0, max(before[tp], start) - floor)
            sums["processed_after"] += max(0, max(after[tp], start) - floor)
            for name in ("normalized", "dead_lettered", "held", "held_open", "reprocessed"):
                sums[name] += getattr(o, name)
        accounts.append(
            SourceAccount(
                source=source.id,
                captured=sums["captured"],
                processed=sums["processed"],
                in_flight=sums["captured"] - sums["processed"],
                normalized=sums["normalized"],
                dead_lettered=sums["dead_lettered"],
                dead_letters_held=sums["held"],
                dead_letters_open=sums["held_open"],
                reprocessed=sums["reprocessed"],
                processed_after=sums["processed_after"],
                index_behind=behind,
            )
        )
    return accounts


def _committed(settings: Settings, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The normalize group's committed offsets (-1 where it has none)."""
    consumer = Consumer(clients.config(settings.bootstrap, **{"group.id": stage_group(NORMALIZE)}))
    try:
        committed = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
        return {(tp.topic, tp.partition): tp.offset for tp in committed}
    finally:
        consumer.close()


def _originals(settings: Settings, records: list[HeldRecord]) -> dict[str, Message]:
    """The held records' bytes, read from the queue from the first of them on."""
    wanted = {r.position for r in records}
    start: dict[tuple[str, int], int] = {}
    for r in records:
        partition, offset = (int(n) for n in r.position.split(":"))
        start[(DLQ_TOPIC, partition)] = min(offset, start.get((DLQ_TOPIC, partition), offset))
    found = {}
    for message in topic_reader.messages(settings.bootstrap, start, timeout=300):
        position = f"{message.partition()}:{message.offset()}"
        if position in wanted:
            found[position] = message
    return found


class NotAPosition(ValueError):
    """A DLQ position that is not ``<partition>:<offset>``."""


def parse_position(position: str) -> tuple[int, int]:
    try:
        partition, offset = (int(n) for n in position.split(":"))
    except ValueError:
        raise NotAPosition(
            f"{position!r} is not a position on {DLQ_TOPIC} (<partition>:<offset>, "
            "as `govsync dlq list` shows)"
        ) from None
    return partition, offset


def reprocess(
    settings: Settings,
    topology: Topology,
    *,
    positions: set[str] | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> ReprocessReport:
    """Normalize held records again; close those that now succeed (or were superseded).

    A held change older than what master already holds for its entity is closed as
    ``superseded`` instead of re-delivered: delivering it now would overwrite newer state
    and break per-entity commit order.
    """
    wanted = None if positions is None else [parse_position(p) for p in sorted(positions)]
    with store.reading(settings) as conn:
        freshness.wait_for(settings, conn, CURRENT_WITHIN_S, topics=store.LIVE.dead_letters)
        todo = queries.held(conn, positions=wanted)
        raw = _originals(settings, todo)
        stage = NormalizeStage(
            topology,
            RegistryCodec(registry_client(settings)),
            upstream_codecs(settings, topology),
        )
        converted: list[tuple[HeldRecord, dict, Output] | tuple[HeldRecord, str]] = []
        for record in todo:
            message = raw[record.position]
            try:
                converted.append(
                    (record, *stage.convert(record.source_topic, message.key(), message.value()))
                )
            except (NormalizeError, SerializationError, KeyError) as exc:
                converted.append((record, getattr(exc, "code", "undecodable")))
        # What master holds per key, from the lineage (the index's, once it is current).
        freshness.wait_for(settings, conn, CURRENT_WITHIN_S)
        keys: dict[str, list[str]] = {}
        for item in converted:
            if len(item) == 3:
                keys.setdefault(item[1]["entity"], []).append(item[1]["key"])
        newest = {
            (entity, key): ts
            for entity, wanted in keys.items()
            for key, ts in queries.newest_source_ts(conn, entity, wanted).items()
        }
    reprocess_id = str(uuid.uuid4())
    now = datetime.now(UTC).isoformat()
    producer = None if dry_run else _transactional_producer(settings)
    done = superseded = 0
    failing: Counter[str] = Counter()
    if producer is not None:
        producer.begin_transaction()
    for n, item in enumerate(converted, 1):
        progress(n, len(converted))
        if len(item) == 2:
            failing[item[1]] += 1
            continue
        record, change, out = item
        outcome: DeadLetterOutcome = (
            "superseded"
            if newest.get((change["entity"], change["key"]), 0) > change["source_ts_ms"]
            else "reprocessed"
        )
        if outcome == "superseded":
            superseded += 1
        else:
            done += 1
        if producer is None:
            continue
        if outcome == "reprocessed":
            producer.produce(
                out.topic,
                out.value,
                out.key,
                headers=[*out.headers, (headers.REPROCESSED, reprocess_id.encode())],
            )
        closure = Closure(
            outcome=outcome, closed_at=now, reprocess_id=reprocess_id, event_id=change["event_id"]
        )
        producer.produce(
            DLQ_CLOSED_TOPIC, closure.model_dump_json().encode(), record.position.encode()
        )
    if producer is not None:
        producer.commit_transaction(60)
    return ReprocessReport(
        reprocess_id=reprocess_id,
        examined=len(todo),
        reprocessed=done,
        superseded=superseded,
        still_failing=dict(failing),
        dry_run=dry_run,
    )


def _transactional_producer(settings: Settings) -> Producer:
    producer = Producer(
        clients.config(
            settings.bootstrap,
            **{"transactional.id": DLQ_REPROCESS_ID, "linger.ms": 5},
        )
    )
    producer.init_transactions(60)
    return producer


def show(settings: Settings, position: str) -> dict:
    """One held record in full: its reason, position and the decoded original when possible."""
    with store.reading(settings) as conn:
        freshness.wait_for(settings, conn, CURRENT_WITHIN_S, topics=store.LIVE.dead_letters)
        found = queries.held(conn, closed_too=True, positions=[parse_position(position)])
    if not found:
        raise KeyError(position)
    [record] = found
    message = _originals(settings, [record]).get(position)
    if message is None:
        original: object = {"unavailable": f"no longer on {DLQ_TOPIC} (retention)"}
    else:
        try:
            original = ValueDeserializer(registry_client(settings))(
                record.source_topic, message.value()
            )
        except SerializationError as exc:
            original = {"undecodable": str(exc), "hex": (message.value() or b"").hex()[:512]}
    return {
        **record.model_dump(),
        "original": json.loads(json.dumps(original, default=str)),
    }
