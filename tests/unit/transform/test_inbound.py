"""A delivery from an upstream node -> a change event of this node: the upstream's
event_id, kind, commit time and position kept, states holding only what it sends, and
anything that is not such a delivery refused with a code for the dead-letter queue."""

from __future__ import annotations

from typing import Any

import pytest

from streams.model.topology import Feed, Inbound
from streams.transform.inbound import inbound_change
from streams.transform.normalize import NormalizeError
from tests.unit.examples import CHANGE, PROVINCE, STATE, TOPOLOGY, delivery

(CITY,) = PROVINCE.inbound
ENTERPRISE = PROVINCE.entity("enterprise")
# What the city delivers to the department that stands for the province there.
SENT = delivery(CHANGE, TOPOLOGY.subscription("province.enterprise"))
KEY = STATE["uscc"].encode()


def test_a_delivery_becomes_a_change_of_the_source_node_entity() -> None:
    change = inbound_change(SENT, KEY, CITY, ENTERPRISE)
    assert change == {
        "event_id": CHANGE["event_id"],  # the same change, in both nodes' traces
        "kind": "deregistered",
        "entity": "enterprise",
        "key": STATE["uscc"],
        "before": {name: STATE[name] for name in ENTERPRISE.fields},
        "after": {**{name: STATE[name] for name in ENTERPRISE.fields}, "status": "deregistered"},
        "changed_fields": ["status"],
        "source": "city.enterprise",
        "source_ts_ms": CHANGE["source_ts_ms"],
        "source_position": CHANGE["source_position"],
    }
    assert "subscription" not in change  # the upstream's subscription id is not a field here


def test_fields_not_sent_are_unknown_and_not_changed() -> None:
    sends_less = Inbound(CITY.upstream, "enterprise", Feed(fields=["uscc", "name", "status"]))
    renamed: dict[str, Any] = {
        **SENT,
        "kind": "updated",
        "after": {**SENT["after"], "name": "上海示例商贸有限公司", "address": "浦东新区2号"},
        "changed_fields": ["name", "address"],
    }
    change = inbound_change(renamed, KEY, sends_less, ENTERPRISE)
    assert list(change["after"]) == list(ENTERPRISE.fields)  # every field, in the entity's order
    assert change["after"] == dict.fromkeys(ENTERPRISE.fields) | {
        "uscc": STATE["uscc"],
        "name": "上海示例商贸有限公司",
        "status": "deregistered",
    }
    assert change["before"] is not None and change["before"]["address"] is None
    assert change["changed_fields"] == ["name"]
    assert (change["kind"], change["source"]) == ("updated", "city.enterprise")


def test_a_registration_and_a_deletion_keep_their_missing_state() -> None:
    registered = inbound_change(
        {**SENT, "kind": "registered", "before": None}, KEY, CITY, ENTERPRISE
    )
    assert registered["before"] is None and registered["after"] is not None
    deleted = inbound_change({**SENT, "kind": "deleted", "after": None}, KEY, CITY, ENTERPRISE)
    assert deleted["after"] is None and deleted["before"] is not None


def without(*names: str) -> dict[str, Any]:
    return {name: value for name, value in SENT.items() if name not in names}


REFUSED: dict[str, tuple[str, Any, bytes | None]] = {
    "tombstone": ("tombstone", None, KEY),
    "no event_id": ("not_a_delivery", {**SENT, "event_id": None}, KEY),
    "no commit time": ("not_a_delivery", without("source_ts_ms"), KEY),
    "another entity": ("wrong_entity", {**SENT, "entity": "person"}, KEY),
    "another key": ("key_mismatch", SENT, b"91350100M000100Y43"),
    "no record key": ("key_mismatch", SENT, None),
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_is_not_a_delivery_of_the_feed_is_refused_with_its_code(case: str) -> None:
    code, value, key = REFUSED[case]
    with pytest.raises(NormalizeError) as refused:
        inbound_change(value, key, CITY, ENTERPRISE)
    assert refused.value.code == code
    assert str(refused.value)  # the reason, for whoever reads the dead letter


def test_the_refusal_names_what_is_wrong() -> None:
    with pytest.raises(NormalizeError, match="source_ts_ms, source_position"):
        inbound_change(without("source_ts_ms", "source_position"), KEY, CITY, ENTERPRISE)
    with pytest.raises(NormalizeError, match=r"a person change on city\.enterprise"):
        inbound_change({**SENT, "entity": "person"}, KEY, CITY, ENTERPRISE)
    with pytest.raises(NormalizeError, match="record key none"):
        inbound_change(SENT, None, CITY, ENTERPRISE)


def test_avro_that_is_not_a_record_is_not_a_delivery() -> None:
    with pytest.raises(NormalizeError) as refused:
        inbound_change("just a string", KEY, CITY, ENTERPRISE)  # type: ignore[arg-type]
    assert refused.value.code == "not_a_delivery"
