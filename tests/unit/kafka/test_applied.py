"""What `topology apply` records as changed: per subscription, with the approver."""

from __future__ import annotations

from typing import Any

from streams.kafka.applied import diff
from streams.model.topology import Topology
from tests.unit.examples import TOPOLOGY


def changed(**subscription_updates: Any) -> Topology:
    data = TOPOLOGY.model_dump(mode="json")
    tax = next(s for s in data["subscriptions"] if s["id"] == "tax.enterprise")
    for name, value in subscription_updates.items():
        if name == "approval":
            tax["approval"].update(value)
        else:
            tax[name] = value
    return Topology.model_validate(data)


def test_first_apply_and_no_change() -> None:
    [first] = diff(None, TOPOLOGY)
    assert first.path == "<topology>"
    assert diff(TOPOLOGY, TOPOLOGY) == []


def test_a_revocation_names_the_state_change_and_the_approver() -> None:
    [change] = diff(TOPOLOGY, changed(approval={"state": "revoked"}))
    assert change.path == "subscriptions[tax.enterprise].approval.state"
    assert (change.before, change.after) == ("approved", "revoked")
    assert change.by == "数据资源局"


def test_fields_and_masks_are_reported_as_before_and_after() -> None:
    narrower = changed(
        fields=["uscc", "name", "status"], mask={"name": {"rule": "partial", "keep": 2}}
    )
    changes = {c.path: c for c in diff(TOPOLOGY, narrower)}
    assert set(changes) == {
        "subscriptions[tax.enterprise].fields",
        "subscriptions[tax.enterprise].mask",
    }
    assert changes["subscriptions[tax.enterprise].fields"].after == ["uscc", "name", "status"]
    assert changes["subscriptions[tax.enterprise].mask"].after == {
        "name": {"rule": "partial", "keep": 2}
    }


def test_a_removed_subscription_and_a_changed_department() -> None:
    data = TOPOLOGY.model_dump(mode="json")
    data["subscriptions"] = [s for s in data["subscriptions"] if s["id"] != "tax.enterprise"]
    data["departments"]["tax"]["name"] = "国家税务总局"
    changes = {c.path: c for c in diff(TOPOLOGY, Topology.model_validate(data))}
    assert changes["subscriptions[tax.enterprise]"].after is None
    assert changes["subscriptions[tax.enterprise]"].before["department"] == "tax"
    assert "departments" in changes
