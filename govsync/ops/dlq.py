"""The dead-letter queue: what could not be normalized, why, and proof nothing was lost.

``govsync.dlq`` holds each refused cdc record's original bytes with its position and
reason. Closing a held record is recorded on ``govsync.dlq.closed`` (compacted, keyed
by the record's DLQ position), never by deleting it, so the queue stays an audit of
what went wrong. Reprocessing runs held records through the live normalize code again;
only those that now succeed are closed, in the same transaction as the change events
they become.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Literal

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.serialization import SerializationError
from pydantic import BaseModel

from streams.config.settings import Settings
from streams.contract.headers import as_dict
from streams.contract.topics import DLQ_CLOSED_TOPIC, DLQ_TOPIC, changes_topic, master_topic
from streams.kafka import clients, topic_reader
from streams.kafka.serde import RegistryCodec, ValueDeserializer, registry_client
from streams.model.topology import Topology
from streams.stages.normalize import NormalizeStage
from streams.transform.normalize import NormalizeError

NORMALIZE_GROUP = "govsync-normalize"  # the transactional engine's group for that stage

Outcome = Literal["reprocessed", "superseded"]


class Closure(BaseModel):
    outcome: Outcome
    closed_at: str
    reprocess_id: str
    event_id: str | None = None


class HeldRecord(BaseModel):
    """One record on the dead-letter queue (``position`` = ``<partition>:<offset>``)."""

    position: str
    error_code: str
    error_message: str
    source_topic: str
    source_partition: int
    source_offset: int
    dead_lettered_at: str | None
    closure: Closure | None = None

    @property
    def open(self) -> bool:
        return self.closure is None


class SourceAccount(BaseModel):
    """For one source, counted on the topics: every record normalize has processed became
    exactly one change event or one dead letter (processed = normalized + dead-lettered)."""

    source: str
    captured: int
    processed: int
    in_flight: int
    normalized: int
    dead_lettered: int
    dead_letters_open: int
    reprocessed: int
    # The worker keeps running while we count: processed is read before and after.
    processed_after: int

    @property
    def balanced(self) -> bool:
        return self.processed <= self.normalized + self.dead_lettered <= self.processed_after


class ReprocessReport(BaseModel):
    reprocess_id: str
    examined: int
    reprocessed: int
    superseded: int
    still_failing: dict[str, int]
    dry_run: bool


def _position(message: Message) -> str:
    return f"{message.partition()}:{message.offset()}"


def _held(message: Message) -> HeldRecord:
    h = as_dict(message.headers())
    at = h.get("dead_lettered_at")
    return HeldRecord(
        position=_position(message),
        error_code=h.get("error_code", "unknown"),
        error_message=h.get("error_message", ""),
        source_topic=h.get("source_topic", ""),
        source_partition=int(h.get("source_partition", -1)),
        source_offset=int(h.get("source_offset", -1)),
        dead_lettered_at=datetime.fromtimestamp(int(at) / 1000, UTC).isoformat() if at else None,
    )


def _raw(settings: Settings, topic: str) -> list[Message]:
    start = topic_reader.beginning(settings.bootstrap, [topic])
    return list(topic_reader.messages(settings.bootstrap, start, timeout=120))


def closures(settings: Settings) -> dict[str, Closure]:
    latest: dict[str, Closure] = {}
    for message in _raw(settings, DLQ_CLOSED_TOPIC):
        if message.key() is not None and message.value() is not None:
            latest[message.key().decode()] = Closure.model_validate_json(message.value())
    return latest


def held(settings: Settings) -> tuple[list[HeldRecord], dict[str, Message]]:
    """Every dead-lettered record with its closure (if any), and the raw messages by position."""
    closed = closures(settings)
    records, raw = [], {}
    for message in _raw(settings, DLQ_TOPIC):
        record = _held(message)
        record.closure = closed.get(record.position)
        records.append(record)
        raw[record.position] = message
    return records, raw


def accounting(
    settings: Settings, topology: Topology, records: list[HeldRecord]
) -> list[SourceAccount]:
    """Counts every source's records through normalize from the topics themselves.

    Connect writes cdc topics without transactions, so offsets count records there. The
    worker commits its input offsets in the same transaction as its outputs, so the
    normalize group's committed offsets say exactly how many inputs have outputs.
    """
    cdc = [s.cdc_topic for s in topology.sources]
    ends = topic_reader.end_offsets(settings.bootstrap, cdc)
    starts, before = _log_starts_and_committed(settings, list(ends))
    normalized: Counter[str] = Counter()
    reprocessed: Counter[str] = Counter()
    entities = sorted({s.entity for s in topology.sources})
    start = topic_reader.beginning(settings.bootstrap, [changes_topic(e) for e in entities])
    for message in topic_reader.messages(settings.bootstrap, start, timeout=300):
        h = as_dict(message.headers())
        (reprocessed if "reprocess_id" in h else normalized)[h.get("source", "")] += 1
    _, after = _log_starts_and_committed(settings, list(ends))
    accounts = []
    for source in topology.sources:
        mine = [r for r in records if r.source_topic == source.cdc_topic]
        parts = [tp for tp in ends if tp[0] == source.cdc_topic]
        processed = sum(before[tp] - starts[tp] for tp in parts)
        captured = sum(ends[tp] - starts[tp] for tp in parts)
        accounts.append(
            SourceAccount(
                source=source.id,
                captured=captured,
                processed=processed,
                in_flight=captured - processed,
                normalized=normalized[source.id],
                dead_lettered=len(mine),
                dead_letters_open=sum(r.open for r in mine),
                reprocessed=reprocessed[source.id],
                processed_after=sum(after[tp] - starts[tp] for tp in parts),
            )
        )
    return accounts


def _log_starts_and_committed(
    settings: Settings, partitions: list[tuple[str, int]]
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """Log start offsets, and the normalize group's committed offsets (log start if none)."""
    consumer = Consumer(clients.config(settings.bootstrap, **{"group.id": NORMALIZE_GROUP}))
    try:
        starts = {
            (t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[0]
            for t, p in partitions
        }
        committed = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
        return starts, {
            (tp.topic, tp.partition): max(tp.offset, starts[(tp.topic, tp.partition)])
            for tp in committed
        }
    finally:
        consumer.close()


def _latest_source_ts(settings: Settings, entities: Iterable[str]) -> dict[str, int]:
    """Entity key -> commit time of the newest change master holds for it."""
    start = topic_reader.beginning(settings.bootstrap, [master_topic(e) for e in entities])
    latest: dict[str, int] = {}
    for message in topic_reader.messages(settings.bootstrap, start, timeout=300):
        key, ts = message.key(), as_dict(message.headers()).get("source_ts")
        if key is not None and ts:
            latest[key.decode()] = max(latest.get(key.decode(), 0), int(ts))
    return latest


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
    records, raw = held(settings)
    todo = [r for r in records if r.open and (positions is None or r.position in positions)]
    stage = NormalizeStage(topology, RegistryCodec(registry_client(settings)))
    newest = _latest_source_ts(settings, {s.entity for s in topology.sources})
    reprocess_id = str(uuid.uuid4())
    now = datetime.now(UTC).isoformat()
    producer = None if dry_run else _transactional_producer(settings)
    done = superseded = 0
    failing: Counter[str] = Counter()
    if producer is not None:
        producer.begin_transaction()
    for n, record in enumerate(todo, 1):
        message = raw[record.position]
        try:
            change, out = stage.convert(record.source_topic, message.key(), message.value())
        except (NormalizeError, SerializationError, KeyError) as exc:
            failing[getattr(exc, "code", "undecodable")] += 1
            progress(n, len(todo))
            continue
        outcome: Outcome = (
            "superseded" if newest.get(change["key"], 0) > change["source_ts_ms"] else "reprocessed"
        )
        if outcome == "superseded":
            superseded += 1
        else:
            done += 1
        if producer is not None:
            if outcome == "reprocessed":
                producer.produce(
                    out.topic,
                    out.value,
                    out.key,
                    headers=[*out.headers, ("reprocess_id", reprocess_id.encode())],
                )
            closure = Closure(
                outcome=outcome,
                closed_at=now,
                reprocess_id=reprocess_id,
                event_id=change["event_id"],
            )
            producer.produce(
                DLQ_CLOSED_TOPIC, closure.model_dump_json().encode(), record.position.encode()
            )
        progress(n, len(todo))
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
            **{"transactional.id": "govsync-dlq-reprocess", "linger.ms": 5},
        )
    )
    producer.init_transactions(60)
    return producer


def show(settings: Settings, position: str) -> dict:
    """One held record in full: its reason, position and the decoded original when possible."""
    records, raw = held(settings)
    record = next((r for r in records if r.position == position), None)
    if record is None:
        raise KeyError(position)
    message = raw[position]
    deserialize = ValueDeserializer(registry_client(settings))
    try:
        original: object = deserialize(record.source_topic, message.value())
    except SerializationError as exc:
        original = {"undecodable": str(exc), "hex": (message.value() or b"").hex()[:512]}
    return {
        **record.model_dump(),
        "original": json.loads(json.dumps(original, default=str)),
    }
