"""The subscriber SDK's typed side: a Delivery from a decoded Avro record and its Kafka
message (confluent-kafka's own Message class), the change kinds, Rejected. Applying and
consuming need PostgreSQL and Kafka: tests/integration."""

from __future__ import annotations

import io
from typing import Any, get_args

import fastavro
import pytest
from confluent_kafka import Message
from pydantic import ValidationError

from connectors.sinks import SINKS
from connectors.subscriber import Delivery, Rejected
from streams.contract.headers import traceparent
from streams.contract.schemas import ChangeKind, delivery_schema
from streams.contract.topics import delivery_topic
from streams.model.topology import Subscription
from streams.transform.masking import mask_delivery
from streams.transform.projection import project
from tests.unit.examples import CHANGE, STATE, TAX, TOPOLOGY

PROVENANCE = ["topic", "partition", "offset", "traceparent"]
EVENT_ID = CHANGE["event_id"]


def decoded(change: dict[str, Any], subscription: Subscription = TAX) -> dict[str, Any]:
    """The change as the route stage delivers it and the sink's Avro deserializer decodes
    it: projected, masked, written and read back with the delivery schema."""
    projected = project(change, subscription, TOPOLOGY.entity(subscription.entity))
    assert projected is not None
    schema = fastavro.parse_schema(delivery_schema(TOPOLOGY, subscription))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, mask_delivery(projected, subscription, b"k" * 32))
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, schema)  # type: ignore[return-value]


def message(headers: list[tuple[str, bytes]] | None = None, offset: int = 41) -> Message:
    return Message(
        topic=delivery_topic(TAX),
        partition=2,
        offset=offset,
        key=STATE["uscc"].encode(),
        value=b"\x00\x00\x00\x00\x07",  # the Avro bytes; the value passed alongside is decoded
        headers=headers,
    )


def test_a_delivery_is_the_decoded_record_and_where_it_was_read() -> None:
    value = decoded(CHANGE)
    trace = traceparent(EVENT_ID, "route/tax.enterprise")
    delivery = Delivery.from_message(
        value, message([("event_id", EVENT_ID.encode()), ("traceparent", trace.encode())])
    )
    assert delivery.model_dump(exclude=set(PROVENANCE)) == value
    assert (delivery.topic, delivery.partition, delivery.offset) == (
        "deliver.tax.enterprise",
        2,
        41,
    )
    assert delivery.traceparent == trace
    assert delivery.event_id == EVENT_ID
    assert delivery.kind == "deregistered"
    assert delivery.key == STATE["uscc"]
    assert delivery.subscription == "tax.enterprise"
    assert delivery.changed_fields == ["status"]
    assert delivery.source_ts_ms == 1795000000000
    assert delivery.before is not None and delivery.after is not None
    assert (delivery.before["status"], delivery.after["status"]) == ("active", "deregistered")
    assert set(delivery.after) == set(TAX.fields)  # only the subscription's fields


@pytest.mark.parametrize("subscription", TOPOLOGY.subscriptions, ids=lambda s: s.id)
def test_every_delivery_schema_has_exactly_the_delivery_fields(
    subscription: Subscription,
) -> None:
    fields = [field["name"] for field in delivery_schema(TOPOLOGY, subscription)["fields"]]
    assert [*fields, *PROVENANCE] == list(Delivery.model_fields)


def test_a_registration_has_no_before() -> None:
    registered = {**CHANGE, "kind": "registered", "before": None, "changed_fields": list(STATE)}
    delivery = Delivery.from_message(decoded(registered), message())
    assert delivery.kind == "registered"
    assert delivery.before is None
    assert delivery.after is not None and delivery.after["name"] == STATE["name"]
    assert delivery.changed_fields == [name for name in STATE if name in TAX.fields]


def test_kinds_are_the_change_schema_kinds_and_a_new_one_does_not_stop_the_sink() -> None:
    symbols = delivery_schema(TOPOLOGY, TAX)["fields"][1]["type"]["symbols"]
    assert list(get_args(ChangeKind)) == symbols
    for kind in symbols:
        assert Delivery.from_message(decoded({**CHANGE, "kind": kind}), message()).kind == kind
    # A kind added to the schema later reaches the handlers instead of stopping the sink.
    assert Delivery.from_message({**decoded(CHANGE), "kind": "merged"}, message()).kind == "merged"


@pytest.mark.parametrize(
    "headers", [None, [], [("event_id", EVENT_ID.encode())]], ids=["none", "empty", "other"]
)
def test_a_message_without_traceparent_gives_none(headers: list | None) -> None:
    assert Delivery.from_message(decoded(CHANGE), message(headers)).traceparent is None


def test_a_delivery_is_frozen() -> None:
    delivery = Delivery.from_message(decoded(CHANGE), message())
    with pytest.raises(ValidationError, match="frozen"):
        delivery.kind = "updated"  # type: ignore[misc]
    redelivered = delivery.model_copy(update={"offset": 42})
    assert (redelivered.event_id, redelivered.offset, delivery.offset) == (EVENT_ID, 42, 41)


def test_rejected_carries_its_reason() -> None:
    with pytest.raises(Rejected) as raised:
        raise Rejected("纳税人不属本局管辖")
    assert raised.value.reason == "纳税人不属本局管辖"
    assert str(raised.value) == "纳税人不属本局管辖"
    assert isinstance(raised.value, Exception)


def test_reference_sinks_handle_only_their_departments_delivery_topics() -> None:
    for department, handlers in SINKS.items():
        topics = {
            delivery_topic(subscription)
            for subscription in TOPOLOGY.subscriptions
            if subscription.department == department
        }
        assert handlers and set(handlers) <= topics, department
