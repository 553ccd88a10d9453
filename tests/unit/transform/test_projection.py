"""Projection delivers each department only what its subscription names (最小必要)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.transform.projection import project
from tests.unit.examples import ENTERPRISE, SOCIAL, STATE, TAX


def _event(
    kind: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    changed: list[str],
) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "kind": kind,
        "entity": "enterprise",
        "key": STATE["uscc"],
        "before": before,
        "after": after,
        "changed_fields": changed,
        "source": "market_regulation.enterprise",
        "source_ts_ms": 1795000000000,
        "source_position": "lsn=123;txid=456",
    }


def test_deregistration_reaches_tax_with_only_tax_fields() -> None:
    after = {**STATE, "status": "deregistered"}
    event = _event("deregistered", STATE, after, ["status"])
    delivery = project(event, TAX, ENTERPRISE)
    assert delivery == {
        "event_id": "e-1",
        "kind": "deregistered",
        "entity": "enterprise",
        "key": STATE["uscc"],
        "source": "market_regulation.enterprise",
        "source_ts_ms": 1795000000000,
        "source_position": "lsn=123;txid=456",
        "before": {
            "uscc": STATE["uscc"],
            "name": STATE["name"],
            "status": "active",
            "registered_capital": "1000000.00",
            "address": STATE["address"],
            "contact_phone": None,
            "enterprise_type": "limited_company",
            "industry": "F",
        },
        "after": {
            "uscc": STATE["uscc"],
            "name": STATE["name"],
            "status": "deregistered",
            "registered_capital": "1000000.00",
            "address": STATE["address"],
            "contact_phone": None,
            "enterprise_type": "limited_company",
            "industry": "F",
        },
        "changed_fields": ["status"],
        "subscription": "tax.enterprise",
    }
    assert event["before"] is STATE  # the canonical event is left untouched


def test_changed_fields_are_intersected_with_the_subscription() -> None:
    after = {**STATE, "address": "北京市", "legal_rep_name": "李四"}
    event = _event("updated", STATE, after, ["legal_rep_name", "address"])
    tax = project(event, TAX, ENTERPRISE)
    social = project(event, SOCIAL, ENTERPRISE)
    assert tax is not None and social is not None
    assert tax["changed_fields"] == ["address"]
    assert social["changed_fields"] == ["legal_rep_name"]
    assert set(social["after"]) == {"uscc", "name", "status", "legal_rep_name", "legal_rep_id"}


def test_update_of_unsubscribed_fields_is_not_delivered() -> None:
    after = {**STATE, "legal_rep_id": "110101199003071234"}
    event = _event("updated", STATE, after, ["legal_rep_id"])
    assert project(event, TAX, ENTERPRISE) is None
    assert project(event, SOCIAL, ENTERPRISE) is not None


@pytest.mark.parametrize("kind", ["registered", "deregistered", "snapshot", "deleted"])
def test_lifecycle_events_always_project(kind: str) -> None:
    event = _event(kind, STATE, STATE, ["legal_rep_id"])
    delivery = project(event, TAX, ENTERPRISE)
    assert delivery is not None
    assert delivery["changed_fields"] == []


def test_missing_states_stay_missing() -> None:
    registered = project(_event("registered", None, STATE, list(STATE)), TAX, ENTERPRISE)
    assert registered is not None
    assert registered["before"] is None
    assert registered["changed_fields"] == TAX.fields_in(ENTERPRISE)
    deleted = project(_event("deleted", STATE, None, []), TAX, ENTERPRISE)
    assert deleted is not None
    assert deleted["after"] is None


def test_extra_keys_in_the_event_do_not_leak() -> None:
    event = {**_event("snapshot", None, STATE, []), "debug_row": {"rep_phone": "13800000000"}}
    delivery = project(event, TAX, ENTERPRISE)
    assert delivery is not None
    assert "debug_row" not in delivery


def test_an_event_of_another_entity_is_refused() -> None:
    event = {**_event("updated", STATE, STATE, ["name"]), "entity": "person"}
    with pytest.raises(ValueError, match="cannot be projected"):
        project(event, TAX, ENTERPRISE)
