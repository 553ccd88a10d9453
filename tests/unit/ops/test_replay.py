"""A snapshot request turned into canonical changes: one per existing entity, stable ids,
through the subscription's projection like any change."""

from __future__ import annotations

from streams.contract.replay import ReplayRequest
from streams.transform.authority import Canonical
from streams.transform.projection import project
from streams.transform.snapshot import snapshot_changes
from tests.unit.examples import ENTERPRISE, STATE, TAX

REQUEST = ReplayRequest(
    replay_id="abc123",
    subscription="tax.enterprise",
    entity="enterprise",
    requested_at_ms=1_700_000_000_000,
    requested_by="admin",
)


def test_one_snapshot_change_per_entity_that_exists() -> None:
    states = [
        ("91310000MA1FL8XQ30", Canonical(state=STATE)),
        ("91310000MA1FL8XQ31", Canonical(state=None)),  # held, or deleted: nothing to send
    ]
    (change,) = snapshot_changes(REQUEST, ENTERPRISE, iter(states))
    assert change["kind"] == "snapshot" and change["before"] is None
    assert change["after"] == STATE and change["key"] == "91310000MA1FL8XQ30"
    assert change["changed_fields"] == [n for n in ENTERPRISE.fields if STATE.get(n) is not None]
    assert change["source_position"] == "replay=abc123"


def test_ids_are_stable_per_request_and_key_and_differ_between_requests() -> None:
    states = [("91310000MA1FL8XQ30", Canonical(state=STATE))]
    (first,) = snapshot_changes(REQUEST, ENTERPRISE, iter(states))
    (again,) = snapshot_changes(REQUEST, ENTERPRISE, iter(states))
    other = REQUEST.model_copy(update={"replay_id": "def456"})
    (later,) = snapshot_changes(other, ENTERPRISE, iter(states))
    assert first["event_id"] == again["event_id"] != later["event_id"]


def test_a_snapshot_is_projected_like_any_change() -> None:
    (change,) = snapshot_changes(REQUEST, ENTERPRISE, iter([("k", Canonical(state=STATE))]))
    delivery = project(change, TAX, ENTERPRISE)
    assert delivery is not None
    assert set(delivery["after"]) == set(TAX.fields)
    assert "legal_rep_id" not in delivery["after"]  # not tax's to see
