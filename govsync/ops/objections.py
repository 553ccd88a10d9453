"""`govsync objection`: 数据异议. A department objects to a record it was delivered; the
source department answers. The rules and the record are in streams/contract/objections.py;
here is where each step finds what it needs: the delivery (the index's lineage), the
record itself (read as the department, which may read it), the objection to answer (the
index's audit entries).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from govsync.errors import OperationFailed
from govsync.index import queries, store
from streams.config.settings import Settings
from streams.contract.objections import Objection, ObjectionState, Refused, Step, answer
from streams.contract.records import Hop, parse_position
from streams.kafka import lifecycle, topic_reader
from streams.kafka.serde import ValueDeserializer, registry_client
from streams.model.topology import Topology

RECORD_WAIT_S = 15.0
INDEX_WAIT_S = 10.0


def raise_objection(
    settings: Settings,
    topology: Topology,
    event_id: str,
    reason: str,
    subscription: str | None = None,
) -> Objection:
    """Object, as the caller's principal, to the record ``event_id`` delivered to it."""
    department = settings.kafka_principal
    if not reason.strip():
        raise Refused("an objection needs a reason")
    delivered = _deliveries(settings, event_id, department, subscription)
    if not delivered:
        raise Refused(f"{event_id} was not delivered to {department}")
    if len({h.subscription for h in delivered}) > 1:
        names = ", ".join(sorted({str(h.subscription) for h in delivered}))
        raise Refused(f"{event_id} reached {department} as {names}: name one (--subscription)")
    hop = delivered[0]
    message = _at(settings, hop.topic, hop.partition, hop.offset)
    record = ValueDeserializer(registry_client(settings))(hop.topic, message.value())
    if not isinstance(record, dict):
        raise OperationFailed(f"the record at {hop.position} is gone (a tombstone)")
    try:
        source = topology.source(record["source"])
    except KeyError:
        raise Refused(f"the topology has no source {record['source']!r} to answer") from None
    objection = Objection(
        id=str(uuid.uuid4()),
        step=Step.RAISED,
        event_id=event_id,
        subscription=str(hop.subscription),
        department=department,
        source=source.department,
        source_id=source.id,
        entity=hop.entity,
        entity_key=hop.entity_key,
        reason=reason,
        principal=department,
        at=datetime.now(UTC),
        # As JSON keeps it: decimals and dates as text.
        record=json.loads(json.dumps(record, default=str)),
        position=hop.position,
    )
    lifecycle.publish(settings, objection, department)
    return objection


def _deliveries(
    settings: Settings, event_id: str, department: str, subscription: str | None
) -> list[Hop]:
    """The delivered hops of ``event_id`` to ``department``, from the index: asked again
    for a few seconds while there are none, as the index may not have read the newest
    (a department may not read the trail's offsets to wait for it)."""
    deadline = time.monotonic() + INDEX_WAIT_S
    while True:
        with store.reading(settings) as conn:
            found = [
                h
                for h in queries.hops(conn, event_id)
                if h.event_id == event_id
                and h.stage == "delivered"
                and h.department == department
                and subscription in (None, h.subscription)
            ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def answer_objection(settings: Settings, objection_id: str, step: Step, reason: str) -> Objection:
    """Answer objection ``objection_id`` as the caller's principal (its source department)."""
    state = find(settings, objection_id)
    if not state.open:
        raise Refused(f"objection {objection_id} was already answered: {state.answer}")
    raised = Objection(
        id=state.id,
        step=Step.RAISED,
        event_id=state.event_id,
        subscription=state.subscription,
        department=state.department,
        source=state.source,
        source_id=state.source_id,
        entity=state.subscription.partition(".")[2],
        entity_key=state.entity_key,
        reason=state.reason,
        principal=state.department,
        at=datetime.fromtimestamp(state.raised_at_ms / 1000, UTC),
    )
    answered = answer(raised, step, settings.kafka_principal, reason, datetime.now(UTC))
    lifecycle.publish(settings, answered, settings.kafka_principal)
    return answered


def find(settings: Settings, objection_id: str) -> ObjectionState:
    with store.reading(settings) as conn:
        found = queries.objections(conn, objection_id)
    if not found:
        raise Refused(f"no objection {objection_id} is on the trail (yet)")
    return found[0]


def listed(settings: Settings, source: str | None = None) -> list[ObjectionState]:
    with store.reading(settings) as conn:
        found = queries.objections(conn)
    return [o for o in found if source is None or source in (o.source, o.source_id)]


def record(settings: Settings, state: ObjectionState) -> dict[str, Any]:
    """The raised step as its source reads it: the delivered record and the reason."""
    topic, partition, offset = parse_position(state.raised_on)
    message = _at(settings, topic, partition, offset)
    return Objection.model_validate_json(message.value() or b"").model_dump(mode="json")


def _at(settings: Settings, topic: str, partition: int, offset: int) -> Message:
    for message in topic_reader.messages(
        settings.bootstrap,
        {(topic, partition): offset},
        until=lambda seen: bool(seen),
        timeout=RECORD_WAIT_S,
    ):
        if message.offset() == offset:
            return message
    raise OperationFailed(
        f"{topic}[{partition}]@{offset} could not be read as {settings.kafka_principal}"
    )
