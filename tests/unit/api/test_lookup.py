"""What a look-up may show: the department's active subscription or why there is none,
keys in their standard form, and the state projected and masked exactly as a push of the
same change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from govsync.api.lookup import Refusal, StoredState, standard_key, subscription_for, view
from streams.model.standards import StandardViolation
from streams.model.topology import Topology
from tests.unit.examples import CHANGE, ENTERPRISE, MASK_KEY, SOCIAL, TAX, TOPOLOGY, delivery

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # within every example approval


def with_tax_approval(**approval: object) -> Topology:
    tax = TAX.model_copy(update={"approval": TAX.approval.model_copy(update=approval)})
    return TOPOLOGY.model_copy(
        update={"subscriptions": [tax if s.id == TAX.id else s for s in TOPOLOGY.subscriptions]}
    )


def test_an_active_subscription_is_the_one_a_look_up_uses() -> None:
    assert subscription_for(TOPOLOGY, "tax", "enterprise", NOW) == TAX


@pytest.mark.parametrize(
    ("topology", "department", "reason"),
    [
        (TOPOLOGY, "public_security", "not_subscribed"),
        (with_tax_approval(state="requested", by=None, at=None), "tax", "requested"),
        (with_tax_approval(state="suspended"), "tax", "suspended"),
        (with_tax_approval(state="revoked"), "tax", "revoked"),
        (with_tax_approval(expires=datetime(2026, 11, 19).date()), "tax", "expired"),
        (with_tax_approval(at=datetime(2026, 12, 1).date()), "tax", "pending"),
    ],
)
def test_without_an_active_subscription_the_refusal_names_why(
    topology: Topology, department: str, reason: str
) -> None:
    refused = subscription_for(topology, department, "enterprise", NOW)
    assert isinstance(refused, Refusal)
    assert refused.reason == reason
    assert refused.detail


def test_keys_are_checked_and_brought_to_their_standard_form() -> None:
    assert standard_key(ENTERPRISE, "91350100m000100y43") == "91350100M000100Y43"
    with pytest.raises(StandardViolation) as refused:
        standard_key(ENTERPRISE, "91350100M000100Y44")
    assert refused.value.code == "bad_check_character"
    person = TOPOLOGY.entity("person")
    assert standard_key(person, "110105491231002") == "11010519491231002X"


@pytest.mark.parametrize("subscription", [TAX, SOCIAL])
def test_a_look_up_shows_what_a_push_of_the_same_change_delivers(subscription) -> None:  # type: ignore[no-untyped-def]
    stored = StoredState(
        state=CHANGE["after"], event_id=CHANGE["event_id"], source_ts_ms=CHANGE["source_ts_ms"]
    )
    found = view("enterprise", ENTERPRISE, CHANGE["key"], stored, subscription, MASK_KEY)
    assert found.state == delivery(CHANGE, subscription)["after"]
    assert found.version.event_id == CHANGE["event_id"]
    assert found.version.source_commit == "2026-11-18T11:06:40Z"
