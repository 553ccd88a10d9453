"""Backfilling a new (or reset) subscription with current state: `govsync replay snapshot`.

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

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from pydantic import BaseModel

from streams import admin, clients, headers, topic_reader
from streams.authority import Canonical
from streams.settings import Settings
from streams.stack.process import StackError
from streams.topology import Entity, Topology, changes_topic, delivery_topic

SNAPSHOT = b"snapshot"
ROUTE_GROUP = "govsync-route"
SNAPSHOT_SOURCE = "govsync.replay"


class SnapshotRequest(BaseModel):
    replay_id: str
    subscription: str
    entity: str
    requested_at_ms: int
    requested_by: str

    def event_id(self, partition: int) -> str:
        """The control record's own id: a repeated request record is dropped as a duplicate."""
        return f"replay/{self.replay_id}/{partition}"


class SnapshotDone(BaseModel):
    replay_id: str
    subscription: str
    partitions: int
    records: int  # delivered to the subscription's topic under this replay id
    seconds: float


def snapshot_changes(
    request: SnapshotRequest, entity: Entity, states: Iterator[tuple[str, Canonical]]
) -> Iterator[dict[str, Any]]:
    """One canonical ``snapshot`` change per entity that exists, as the route would route
    any change (its projection and masks then apply as usual)."""
    for key, canonical in states:
        if canonical.state is None:
            continue  # not registered by the key's owner, or deleted
        yield {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"govsync:{request.replay_id}:{key}")),
            "kind": "snapshot",
            "entity": request.entity,
            "key": key,
            "before": None,
            "after": canonical.state,
            "changed_fields": [n for n in entity.fields if canonical.state.get(n) is not None],
            "source": SNAPSHOT_SOURCE,
            "source_ts_ms": request.requested_at_ms,
            "source_position": f"replay={request.replay_id}",
        }


class Pending(BaseModel):
    """A request on its way: where its control records are, and where the subscription's
    topic ended when it was made (its snapshot records come after)."""

    request: SnapshotRequest
    controls: dict[int, int]
    delivery_start: dict[str, int]  # "topic/partition" -> offset


def request_snapshot(
    settings: Settings, topology: Topology, subscription_id: str, requested_by: str
) -> Pending:
    """Put the request on every partition of the entity's change topic."""
    subscription = next((s for s in topology.subscriptions if s.id == subscription_id), None)
    if subscription is None:
        raise StackError(f"no subscription {subscription_id!r} in the applied topology")
    if not subscription.is_active(datetime.now(UTC)):
        raise StackError(
            f"subscription {subscription_id} is not active (approval "
            f"{subscription.approval.state}, expires {subscription.approval.expires}): "
            "it may receive nothing"
        )
    topic = changes_topic(subscription.entity)
    request = SnapshotRequest(
        replay_id=uuid.uuid4().hex[:12],
        subscription=subscription_id,
        entity=subscription.entity,
        requested_at_ms=int(time.time() * 1000),
        requested_by=requested_by,
    )
    partitions = admin.existing_topics(admin.admin_client(settings.bootstrap)).get(topic, 0)
    delivery_start = topic_reader.end_offsets(settings.bootstrap, [delivery_topic(subscription)])
    offsets: dict[int, int] = {}

    def delivered(error, message) -> None:  # type: ignore[no-untyped-def]
        if error is None:
            offsets[message.partition()] = message.offset()

    producer = Producer(clients.config(settings.bootstrap, **{"enable.idempotence": True}))
    for partition in range(partitions):
        producer.produce(
            topic,
            request.model_dump_json().encode(),
            headers.CONTROL.encode(),
            partition=partition,
            headers=[
                (headers.CONTROL, SNAPSHOT),
                ("event_id", request.event_id(partition).encode()),
                (headers.REPLAY, request.replay_id.encode()),
            ],
            on_delivery=delivered,
        )
    if producer.flush(30) != 0 or len(offsets) != partitions:
        raise StackError(f"the snapshot request did not reach every partition of {topic}")
    return Pending(
        request=request,
        controls=offsets,
        delivery_start={f"{t}/{p}": o for (t, p), o in delivery_start.items()},
    )


def wait_done(
    settings: Settings,
    pending: Pending,
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
            raise StackError(
                f"the route stage has not reached the snapshot request on {topic} partitions "
                f"{sorted(set(offsets) - done)} in {timeout:.0f}s: is the worker running?"
            )
        wanted = [TopicPartition(topic, p) for p in offsets]
        future = client.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(ROUTE_GROUP, wanted)]
        )[ROUTE_GROUP]
        for tp in future.result().topic_partitions:
            if tp.offset > offsets[tp.partition]:
                done.add(tp.partition)
        progress(len(done), len(offsets))
        if len(done) < len(offsets):
            time.sleep(0.5)
    start = {
        (key.rpartition("/")[0], int(key.rpartition("/")[2])): offset
        for key, offset in pending.delivery_start.items()
    }
    marker = (headers.REPLAY, request.replay_id.encode())
    records = sum(
        marker in (message.headers() or [])
        for message in topic_reader.messages(settings.bootstrap, start, timeout=120)
    )
    if records == 0:
        raise StackError(
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
