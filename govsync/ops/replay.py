"""Backfill and replay for one subscription: `govsync replay snapshot | range`.

The request travels through the pipeline rather than around it. A control record goes
into every partition of ``changes.<entity>``; when the route stage reaches it, every
earlier change of that partition is in its canonical store and no later one is, so the
snapshot it emits there, in the same transaction, is the state at exactly that point,
and every later change follows live, after it. No gap, no duplicate, per-key order kept,
with no coordination between this tool and the running worker. Only the named
subscription's topic receives anything, through the same projection and masks as live
deliveries, each record marked with the ``replay`` header.
"""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema
from pydantic import BaseModel

from govsync.errors import OperationFailed
from streams.config.settings import Settings
from streams.contract import headers, schemas
from streams.contract.replay import RANGE, SNAPSHOT, ReplayRequest, SnapshotDone
from streams.contract.topics import ROUTE, changes_topic, delivery_topic, stage_group
from streams.kafka import admin, clients, topic_reader
from streams.kafka.serde import registry_client, value_subject
from streams.model.topology import Subscription, Topology


class ReplayError(OperationFailed):
    """A replay that cannot be made or finished; nothing was sent, or the message says what."""


BATCH = 500  # range replay: records between saved checkpoints


class InFlight(BaseModel):
    """A request on its way: where its control records are, and where the subscription's
    topic ended when it was made (its snapshot records come after)."""

    request: ReplayRequest
    controls: dict[int, int]  # partition of changes.<entity> → offset of its control record
    topic: str  # the subscription's delivery topic
    start: dict[int, int]  # its partitions' ends when the request was made


def active_subscription(topology: Topology, subscription_id: str) -> Subscription:
    """The subscription to replay to; a replay reaches only what may receive data now."""
    subscription = next((s for s in topology.subscriptions if s.id == subscription_id), None)
    if subscription is None:
        raise ReplayError(f"no subscription {subscription_id!r} in the applied topology")
    if not subscription.is_active(datetime.now(UTC)):
        raise ReplayError(
            f"subscription {subscription_id} is not active (approval "
            f"{subscription.approval.state}, expires {subscription.approval.expires}): "
            "it may receive nothing"
        )
    return subscription


def new_request(subscription: Subscription, requested_by: str, **range_: Any) -> ReplayRequest:
    return ReplayRequest(
        replay_id=uuid.uuid4().hex[:12],
        subscription=subscription.id,
        entity=subscription.entity,
        requested_at_ms=int(time.time() * 1000),
        requested_by=requested_by,
        **range_,
    )


def announce(settings: Settings, request: ReplayRequest, partitions: list[int]) -> dict[int, int]:
    """Put ``request`` on these partitions of the entity's change topic, as a control
    record; returns where each one landed."""
    topic = changes_topic(request.entity)
    verb = SNAPSHOT if request.what == "snapshot" else RANGE
    offsets: dict[int, int] = {}

    def delivered(error, message) -> None:  # type: ignore[no-untyped-def]
        if error is None:
            offsets[message.partition()] = message.offset()

    producer = Producer(clients.config(settings.bootstrap, **{"enable.idempotence": True}))
    for partition in partitions:
        producer.produce(
            topic,
            request.model_dump_json().encode(),
            headers.CONTROL.encode(),
            partition=partition,
            headers=[
                (headers.CONTROL, verb),
                ("event_id", request.event_id(partition).encode()),
                (headers.REPLAY, request.replay_id.encode()),
            ],
            on_delivery=delivered,
        )
    if producer.flush(30) != 0 or len(offsets) != len(partitions):
        raise ReplayError(f"the replay request did not reach every partition of {topic}")
    return offsets


def request_snapshot(
    settings: Settings, topology: Topology, subscription_id: str, requested_by: str
) -> InFlight:
    """Put a snapshot request on every partition of the entity's change topic."""
    subscription = active_subscription(topology, subscription_id)
    request = new_request(subscription, requested_by)
    topic = changes_topic(subscription.entity)
    partitions = admin.existing_topics(admin.admin_client(settings.bootstrap)).get(topic, 0)
    deliveries = delivery_topic(subscription)
    start = topic_reader.end_offsets(settings.bootstrap, [deliveries])
    return InFlight(
        request=request,
        controls=announce(settings, request, list(range(partitions))),
        topic=deliveries,
        start={p: o for (_, p), o in start.items()},
    )


def wait_done(
    settings: Settings,
    pending: InFlight,
    progress: Callable[[int, int], None] = lambda done, total: None,
    timeout: float = 600.0,
) -> SnapshotDone:
    """Until the route stage has committed past every control record (each partition's
    snapshot was written in the same transaction as that commit), then count what reached
    the subscription. Nothing at all means the route refused the request: the worker
    does not serve the subscription (yet), e.g. right after the apply that added it."""
    request, offsets = pending.request, pending.controls
    topic = changes_topic(request.entity)
    client = admin.admin_client(settings.bootstrap)
    started = time.monotonic()
    deadline = started + timeout
    done: set[int] = set()
    while len(done) < len(offsets):
        if time.monotonic() > deadline:
            raise ReplayError(
                f"the route stage has not reached the snapshot request on {topic} partitions "
                f"{sorted(set(offsets) - done)} in {timeout:.0f}s: is the worker running?"
            )
        wanted = [TopicPartition(topic, p) for p in offsets]
        future = client.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(stage_group(ROUTE), wanted)]
        )[stage_group(ROUTE)]
        for tp in future.result().topic_partitions:
            if tp.offset > offsets[tp.partition]:
                done.add(tp.partition)
        progress(len(done), len(offsets))
        if len(done) < len(offsets):
            time.sleep(0.5)
    start = {(pending.topic, p): offset for p, offset in pending.start.items()}
    marker = (headers.REPLAY, request.replay_id.encode())
    records = sum(
        marker in (message.headers() or [])
        for message in topic_reader.messages(settings.bootstrap, start, timeout=120)
    )
    if records == 0:
        raise ReplayError(
            f"the route stage delivered no snapshot for {request.subscription}: it does not "
            "serve that subscription yet (wait a few seconds after `topology apply`) or the "
            "entity has no records; see the worker log"
        )
    return SnapshotDone(
        replay_id=request.replay_id,
        subscription=request.subscription,
        partitions=len(offsets),
        records=records,
        seconds=round(time.monotonic() - started, 3),
    )


# --- re-delivering a time range -----------------------------------------------------------


class RangeProgress(BaseModel):
    """A range replay and how far it got, saved after every batch so it can resume.

    What is re-sent is the subscription's own delivery records of the range, unchanged
    (same event_ids, same content: subscribers recognise what they already applied), and
    only those written under the subscription's current delivery schema, which encodes its
    fields and masks. A record delivered under an earlier, wider approval is skipped and
    counted, never re-sent: a replay gives no department more than it may have today."""

    request: ReplayRequest
    topic: str
    schema_id: int
    end: dict[int, int]  # partition → first offset past the range, fixed when planned
    next: dict[int, int]  # partition → next offset to read
    in_range: int = 0
    replayed: int = 0
    skipped_earlier_approval: int = 0
    done: bool = False


def range_state(settings: Settings, replay_id: str) -> Path:
    return settings.path("replays", f"{replay_id}.json")


def plan_range(
    settings: Settings,
    topology: Topology,
    subscription_id: str,
    from_ms: int,
    to_ms: int | None,
    requested_by: str,
) -> RangeProgress:
    subscription = active_subscription(topology, subscription_id)
    if to_ms is not None and to_ms <= from_ms:
        raise ReplayError("--to must be later than --from")
    topic = delivery_topic(subscription)
    start = topic_reader.since(settings.bootstrap, [topic], from_ms)
    end = (
        topic_reader.since(settings.bootstrap, [topic], to_ms)
        if to_ms is not None
        else topic_reader.end_offsets(settings.bootstrap, [topic])
    )
    # The schema the applied topology implies, looked up by content as the worker does
    # ("latest" is whatever was registered last, e.g. by an apply since reverted).
    current = Schema(json.dumps(schemas.delivery_schema(topology, subscription)), "AVRO")
    schema = registry_client(settings).lookup_schema(value_subject(topic), current)
    return RangeProgress(
        request=new_request(subscription, requested_by, what="range", from_ms=from_ms, to_ms=to_ms),
        topic=topic,
        schema_id=schema.schema_id,
        end={p: o for (_, p), o in end.items()},
        next={p: o for (_, p), o in start.items()},
    )


def save(settings: Settings, state: RangeProgress) -> None:
    path = range_state(settings, state.request.replay_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(state.model_dump_json(indent=2))
    temporary.replace(path)


def load(settings: Settings, replay_id: str) -> RangeProgress:
    path = range_state(settings, replay_id)
    if not path.exists():
        raise ReplayError(f"no range replay {replay_id!r} to resume (looked for {path})")
    return RangeProgress.model_validate_json(path.read_text())


def run_range(
    settings: Settings,
    state: RangeProgress,
    *,
    rate: float | None = None,
    dry_run: bool = False,
    progress: Callable[[RangeProgress], None] = lambda state: None,
    stop: Callable[[], bool] = lambda: False,
) -> RangeProgress:
    """Re-send the range from where ``state`` stands; saves after every batch. A dry run
    only counts (and saves nothing)."""
    remaining = {p for p, offset in state.next.items() if offset < state.end[p]}
    consumer = topic_reader.reader(settings.bootstrap)
    consumer.assign([TopicPartition(state.topic, p, state.next[p]) for p in remaining])
    producer = Producer(clients.config(settings.bootstrap, **{"enable.idempotence": True}))
    marker = (headers.REPLAY, state.request.replay_id.encode())
    started, sent_here, unsaved = time.monotonic(), 0, 0
    try:
        while remaining and not stop():
            message = consumer.poll(1.0)
            if message is None:
                continue
            partition, offset = message.partition(), message.offset()
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise ReplayError(f"reading {state.topic}: {error.str()}")
            if offset >= state.end[partition]:  # the first record past the range, or the end
                remaining.discard(partition)
                consumer.pause([TopicPartition(state.topic, partition)])
                continue
            if error is not None:
                continue  # at the end for now: the rest of the range is still being committed
            state.next[partition] = offset + 1
            original = message.headers() or []
            if headers.control(original) is not None or headers.as_dict(original).get(
                headers.REPLAY
            ):
                continue  # a replay is not replayed again
            state.in_range += 1
            value = message.value() or b""
            if value[:1] != b"\0" or struct.unpack(">I", value[1:5])[0] != state.schema_id:
                state.skipped_earlier_approval += 1
                continue
            if dry_run:
                continue
            producer.produce(
                state.topic, value, message.key(), partition=partition, headers=[*original, marker]
            )
            state.replayed += 1
            sent_here += 1
            unsaved += 1
            if rate:
                ahead = sent_here / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if unsaved >= BATCH:
                _checkpoint(settings, producer, state)
                unsaved = 0
                progress(state)
        state.done = not remaining
        if not dry_run:
            _checkpoint(settings, producer, state)
        progress(state)
    finally:
        consumer.close()
    return state


def _checkpoint(settings: Settings, producer: Producer, state: RangeProgress) -> None:
    """Progress is saved only once Kafka has everything sent so far: a resume re-sends at
    most one batch, which subscribers recognise by event_id."""
    if producer.flush(60) != 0:
        raise ReplayError("Kafka did not acknowledge the replayed records within 60s")
    save(settings, state)
