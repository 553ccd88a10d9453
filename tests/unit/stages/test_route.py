"""The route stage on in-memory Avro: one change becomes its dedup marker, its canonical
state, the master record and one delivery per active subscription, each shaped by that
subscription alone; an event_id counts once per committed transaction, never for an
aborted one; a snapshot request answers with the partition's current state."""

from __future__ import annotations

import struct
import time
from datetime import UTC, date, datetime
from typing import Any

import pytest
from confluent_kafka import Message

from streams.contract import headers
from streams.contract.replay import SNAPSHOT, ReplayRequest
from streams.contract.schemas import change_event_schema
from streams.contract.topics import (
    CANONICAL_CHANGELOG_TOPIC,
    changes_topic,
    dedup_changelog_topic,
    delivery_topic,
    master_topic,
)
from streams.engine.transactional import Output
from streams.model.topology import Federation, Subscription, Topology
from streams.stages.route import ReloadRefused, RouteStage
from streams.transform.authority import Authority, Canonical
from streams.transform.masking import keyed_hash
from tests.unit.avro import MemoryCodec
from tests.unit.examples import (
    CHANGE,
    ENTERPRISE,
    MASK_KEY,
    PROVINCE,
    SOCIAL,
    STATE,
    TAX,
    TOPOLOGY,
    delivery,
)
from tests.unit.stages import count

CHANGES = changes_topic("enterprise")
DEDUP = dedup_changelog_topic("route")
PARTITION = 3
USCC = STATE["uscc"]
OTHER_USCC = "91350100M000100Y43"


def with_approval(topology: Topology, subscription_id: str, **approval: Any) -> Topology:
    """``topology`` with one subscription's approval changed."""

    def changed(subscription: Subscription) -> Subscription:
        if subscription.id != subscription_id:
            return subscription
        return subscription.model_copy(
            update={"approval": subscription.approval.model_copy(update=approval)}
        )

    return topology.model_copy(update={"subscriptions": list(map(changed, topology.subscriptions))})


def open_ended(topology: Topology) -> Topology:
    """Every approval without expiry: the stage reads the wall clock, these tests must not."""
    for subscription in topology.subscriptions:
        topology = with_approval(topology, subscription.id, expires=date.max)
    return topology


LIVE = open_ended(TOPOLOGY)
# A second enterprise, routed on the same partition.
OTHER = {
    **CHANGE,
    "event_id": "7f1c2a3e-0000-5000-8000-000000000002",
    "key": OTHER_USCC,
    "before": {**STATE, "uscc": OTHER_USCC},
    "after": {**STATE, "uscc": OTHER_USCC, "name": "福建测试科技有限公司"},
    "kind": "updated",
    "changed_fields": ["name"],
}


def route(codec: MemoryCodec, topology: Topology = LIVE) -> RouteStage:
    """A route stage that never touches Kafka: ``assigned`` (the restore) is not called."""
    return RouteStage(topology, codec, "unused:9092", lambda department: MASK_KEY)


def record(
    codec: MemoryCodec, change: dict[str, Any], offset: int = 0, partition: int = PARTITION
) -> Message:
    """``change`` on changes.enterprise, as the normalize stage writes it."""
    value = codec.serializer(CHANGES, change_event_schema(TOPOLOGY, "enterprise"))(change)
    return Message(
        topic=CHANGES,
        partition=partition,
        offset=offset,
        key=change["key"].encode(),
        value=value,
        headers=headers.for_change(change, "normalize"),
    )


def snapshot_request(subscription: str, offset: int = 10, partition: int = PARTITION) -> Message:
    """A replay's control record on one partition, as `govsync replay` writes it."""
    request = ReplayRequest(
        replay_id="replay-1",
        subscription=subscription,
        entity="enterprise",
        requested_at_ms=1_796_000_000_000,
        requested_by="admin",
    )
    return Message(
        topic=CHANGES,
        partition=partition,
        offset=offset,
        key=headers.CONTROL.encode(),
        value=request.model_dump_json().encode(),
        headers=[(headers.CONTROL, SNAPSHOT), (headers.REPLAY, b"replay-1")],
    )


def on(outputs: list[Output], topic: str) -> list[Output]:
    return [out for out in outputs if out.topic == topic]


def test_a_change_yields_marker_canonical_state_master_and_one_delivery_per_subscription(
    codec: MemoryCodec,
) -> None:
    stage = route(codec)
    started_ms = int(time.time() * 1000)
    outputs = stage.process(record(codec, CHANGE))
    finished_ms = int(time.time() * 1000)
    assert sorted(out.topic for out in outputs) == sorted(
        [
            DEDUP,
            CANONICAL_CHANGELOG_TOPIC,
            master_topic("enterprise"),
            delivery_topic(TAX),
            delivery_topic(SOCIAL),
        ]
    )
    merge = Authority(TOPOLOGY, "enterprise").merge(CHANGE, None)  # nothing known of it yet

    (marker,) = on(outputs, DEDUP)
    assert (marker.key, marker.partition) == (CHANGE["event_id"].encode(), PARTITION)
    assert started_ms <= struct.unpack(">q", marker.value or b"")[0] <= finished_ms

    (state,) = on(outputs, CANONICAL_CHANGELOG_TOPIC)
    assert (state.key, state.partition) == (f"enterprise/{USCC}".encode(), PARTITION)
    assert Canonical.from_json(state.value or b"") == merge.canonical

    (master,) = on(outputs, master_topic("enterprise"))
    assert (master.key, master.partition) == (USCC.encode(), PARTITION)
    assert codec.decode(master.topic, master.value) == merge.change["after"]
    assert headers.as_dict(master.headers)["traceparent"] == headers.traceparent(
        CHANGE["event_id"], "master"
    )

    received: dict[str, dict[str, Any]] = {}
    for subscription in (TAX, SOCIAL):
        (out,) = on(outputs, delivery_topic(subscription))
        assert (out.key, out.partition) == (USCC.encode(), None)
        assert headers.as_dict(out.headers) == headers.as_dict(
            headers.for_change(CHANGE, f"deliver/{subscription.id}")
        )
        received[subscription.id] = codec.decode(out.topic, out.value)
        assert received[subscription.id] == delivery(merge.change, subscription)
        assert set(received[subscription.id]["after"]) == set(subscription.fields)
    tax, social = received[TAX.id]["after"], received[SOCIAL.id]["after"]
    assert "legal_rep_id" not in tax  # not tax's to see
    assert social["legal_rep_id"] == "1101**********4514"  # partial, keep 4
    assert social["legal_rep_name"] == keyed_hash("张三", MASK_KEY)
    assert social["name"] == STATE["name"]  # subscribed, unmasked


def test_an_event_id_seen_on_the_partition_yields_nothing(codec: MemoryCodec) -> None:
    stage = route(codec)
    dropped = count("duplicates_dropped", entity="enterprise")
    assert stage.process(record(codec, CHANGE))
    assert stage.process(record(codec, CHANGE, offset=1)) == []  # within the transaction
    stage.committed()
    assert stage.process(record(codec, CHANGE, offset=2)) == []  # re-emitted after it
    stage.committed()
    assert count("duplicates_dropped", entity="enterprise") == dropped + 2


def test_the_canonical_state_is_kept_per_partition_under_entity_and_key(
    codec: MemoryCodec,
) -> None:
    stage = route(codec)
    stage.process(record(codec, CHANGE))
    stage.committed()
    state = stage.canonical.get(PARTITION, f"enterprise/{USCC}")
    assert state is not None and state.state is not None
    assert state.state["uscc"] == USCC
    assert stage.canonical.get(PARTITION + 1, f"enterprise/{USCC}") is None


def test_an_aborted_transaction_leaves_nothing_behind(codec: MemoryCodec) -> None:
    stage = route(codec)
    first = stage.process(record(codec, CHANGE))
    delivered = count("delivered_records", subscription=TAX.id)
    stage.aborted()
    assert stage.canonical.get(PARTITION, f"enterprise/{USCC}") is None
    assert not stage.dedup.seen(PARTITION, CHANGE["event_id"])
    again = stage.process(record(codec, CHANGE))
    # The same outputs: the event is new again and the entity unknown again (a first
    # attempt's canonical state would have made this an update).
    assert [out for out in again if out.topic != DEDUP] == [
        out for out in first if out.topic != DEDUP
    ]
    assert [out.key for out in on(again, DEDUP)] == [CHANGE["event_id"].encode()]
    stage.committed()
    # Counted once: the aborted attempt's metrics were dropped with it.
    assert count("delivered_records", subscription=TAX.id) == delivered + 1


@pytest.mark.parametrize(
    "approval",
    [
        {"state": "suspended"},
        {"state": "revoked"},
        {"at": date(2020, 1, 1), "expires": date(2020, 12, 31)},
        {"at": date(9999, 1, 1)},
    ],
    ids=["suspended", "revoked", "expired", "not yet in force"],
)
def test_a_subscription_not_in_force_gets_nothing(
    codec: MemoryCodec, approval: dict[str, Any]
) -> None:
    stage = route(codec, with_approval(LIVE, TAX.id, **approval))
    filtered = count("filtered_records", subscription=TAX.id)
    outputs = stage.process(record(codec, CHANGE))
    assert on(outputs, delivery_topic(TAX)) == []
    assert len(on(outputs, delivery_topic(SOCIAL))) == 1
    assert len(on(outputs, master_topic("enterprise"))) == 1
    stage.committed()
    assert count("filtered_records", subscription=TAX.id) == filtered + 1


def test_the_active_subscriptions_are_worked_out_again_when_an_approval_day_ends(
    codec: MemoryCodec,
) -> None:
    # tax's approval ends with 2027-12-31 in China Standard Time: 16:00 UTC.
    stage = route(codec, with_approval(LIVE, TAX.id, expires=date(2027, 12, 31)))
    last_second = int(datetime(2027, 12, 31, 15, 59, 59, tzinfo=UTC).timestamp() * 1000)
    assert TAX.id in stage.routing.active("enterprise", last_second)
    assert TAX.id not in stage.routing.active("enterprise", last_second + 1000)
    assert SOCIAL.id in stage.routing.active("enterprise", last_second + 1000)


def test_a_snapshot_request_yields_the_subscriptions_current_state_per_key(
    codec: MemoryCodec,
) -> None:
    stage = route(codec)
    stage.process(record(codec, CHANGE))
    stage.committed()
    stage.process(record(codec, OTHER, offset=1))  # pending: the request comes after it
    outputs = stage.process(snapshot_request(TAX.id))
    (marker,) = on(outputs, DEDUP)
    assert (marker.key, marker.partition) == (f"replay/replay-1/{PARTITION}".encode(), PARTITION)
    deliveries = on(outputs, delivery_topic(TAX))
    assert len(outputs) == 1 + len(deliveries)
    assert [out.key for out in deliveries] == [USCC.encode(), OTHER_USCC.encode()]  # by key
    merged = {USCC: CHANGE["after"], OTHER_USCC: {**OTHER["after"], "contact_phone": None}}
    for out in deliveries:
        decoded = codec.decode(out.topic, out.value)
        assert decoded["kind"] == "snapshot" and decoded["before"] is None
        assert decoded["after"] == {name: merged[out.key.decode()][name] for name in TAX.fields}
        assert headers.as_dict(out.headers)[headers.REPLAY] == "replay-1"
    assert stage.process(snapshot_request(TAX.id, offset=11)) == []  # the same request again


def test_a_snapshot_serves_only_its_partition_and_only_a_subscription_in_force(
    codec: MemoryCodec,
) -> None:
    stage = route(codec, with_approval(LIVE, TAX.id, state="suspended"))
    stage.process(record(codec, CHANGE))
    elsewhere = stage.process(snapshot_request(SOCIAL.id, partition=PARTITION + 1))
    assert [out.topic for out in elsewhere] == [DEDUP]  # nothing routed on that partition
    refused = stage.process(snapshot_request(TAX.id))
    assert [out.topic for out in refused] == [DEDUP]  # marked seen, answered with nothing


def test_reload_serves_new_subscriptions_and_refuses_new_sources(codec: MemoryCodec) -> None:
    stage = route(codec)
    stage.reload(with_approval(LIVE, TAX.id, state="revoked"))
    outputs = stage.process(record(codec, CHANGE))
    assert on(outputs, delivery_topic(TAX)) == []
    assert len(on(outputs, delivery_topic(SOCIAL))) == 1
    routing = stage.routing
    with pytest.raises(ReloadRefused):
        stage.reload(LIVE.model_copy(update={"sources": LIVE.sources[:-1]}))
    with pytest.raises(ReloadRefused):
        stage.reload(LIVE.model_copy(update={"entities": {"enterprise": ENTERPRISE}}))
    assert stage.routing is routing  # still serving what it served


# --- federation: the route serving another node ---------------------------------------------

PROVINCE_SUB = TOPOLOGY.subscription("province.enterprise")
# The city with its province subscription approved (topology.yaml has it requested).
SERVING = with_approval(
    LIVE, PROVINCE_SUB.id, state="approved", by="数据资源局", at=date(2026, 12, 1)
)
CAPTURED = headers.captured("cdc.market_regulation.public.enterprise", 1, 41, 1_795_000_000_200)


def captured_record(codec: MemoryCodec, change: dict[str, Any]) -> Message:
    """``change`` on changes.enterprise naming the cdc record it was made from."""
    plain = record(codec, change)
    return Message(
        topic=plain.topic(),
        partition=plain.partition(),
        offset=plain.offset(),
        key=plain.key(),
        value=plain.value(),
        headers=[*(plain.headers() or []), CAPTURED],
    )


def test_a_delivery_to_a_node_names_where_the_change_was_captured(codec: MemoryCodec) -> None:
    outputs = route(codec, SERVING).process(captured_record(codec, CHANGE))
    (sent,) = on(outputs, delivery_topic(PROVINCE_SUB))
    assert sent.headers == [
        *headers.for_change(CHANGE, f"deliver/{PROVINCE_SUB.id}"),
        CAPTURED,  # the node's trace shows the capture here
    ]
    merge = Authority(TOPOLOGY, "enterprise").merge(CHANGE, None)
    assert codec.decode(sent.topic, sent.value) == delivery(merge.change, PROVINCE_SUB)
    for subscription in (TAX, SOCIAL):
        (out,) = on(outputs, delivery_topic(subscription))
        assert headers.CAPTURED not in headers.as_dict(out.headers)  # a department's does not
    assert on(outputs, master_topic("enterprise"))[0].headers == headers.for_change(
        merge.change, "master"
    )


def test_a_node_whose_subscription_is_not_in_force_gets_nothing(codec: MemoryCodec) -> None:
    outputs = route(codec).process(captured_record(codec, CHANGE))  # requested, not approved
    assert on(outputs, delivery_topic(PROVINCE_SUB)) == []
    (tax,) = on(outputs, delivery_topic(TAX))
    assert headers.CAPTURED not in headers.as_dict(tax.headers)


def test_a_change_without_a_capture_reaches_a_node_without_one(codec: MemoryCodec) -> None:
    outputs = route(codec, SERVING).process(record(codec, CHANGE))
    (sent,) = on(outputs, delivery_topic(PROVINCE_SUB))
    assert sent.headers == headers.for_change(CHANGE, f"deliver/{PROVINCE_SUB.id}")


def test_reload_refuses_new_upstream_nodes(codec: MemoryCodec) -> None:
    stage = route(codec, SERVING)
    upstream = PROVINCE.federation.upstreams[0].model_copy(  # type: ignore[union-attr]
        update={"node": "province", "login": "city"}
    )
    with pytest.raises(ReloadRefused, match="upstream nodes"):
        stage.reload(
            SERVING.model_copy(update={"federation": Federation(node="city", upstreams=[upstream])})
        )
    stage.reload(LIVE)  # withdrawing the province's approval is a reload like any other
    outputs = stage.process(captured_record(codec, CHANGE))
    assert on(outputs, delivery_topic(PROVINCE_SUB)) == []
