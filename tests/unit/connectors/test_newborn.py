"""Who counts as a newborn: registered (not a snapshot, not an update) within a year of
birth. Anyone else registering applies for enrolment and a card themselves."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.sinks.newborn import is_newborn

REGISTERED_MS = int(datetime(2026, 12, 2, 1, 0, tzinfo=UTC).timestamp() * 1000)
CHILD = {"resident_id": "110108202612020011", "status": "registered", "birth_date": "2026-12-02"}


def test_a_child_registered_after_birth_is_a_newborn() -> None:
    assert is_newborn("registered", CHILD, REGISTERED_MS)


def test_an_adult_moving_in_a_snapshot_or_an_update_is_not() -> None:
    assert not is_newborn("registered", {**CHILD, "birth_date": "1990-03-07"}, REGISTERED_MS)
    assert not is_newborn("snapshot", CHILD, REGISTERED_MS)
    assert not is_newborn("updated", CHILD, REGISTERED_MS)
    assert not is_newborn("registered", {**CHILD, "status": "deceased"}, REGISTERED_MS)
    assert not is_newborn("registered", {**CHILD, "birth_date": None}, REGISTERED_MS)
