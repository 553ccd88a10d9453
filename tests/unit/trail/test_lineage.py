"""A change's trace from its lineage hops: order, per-hop latency, what is missing."""

from __future__ import annotations

from typing import Any

from streams.contract.records import Hop
from streams.trail.lineage import build, traces
from tests.unit.examples import TOPOLOGY

COMMIT = 1_700_000_000_000
HOUR_MS = 3_600_000


def hop(stage: str, at: int, event_id: str = "e1", **extra: Any) -> Hop:
    return Hop(
        event_id=event_id,
        stage=stage,  # type: ignore[arg-type]
        kind="deregistered",
        entity="enterprise",
        entity_key="91310000MA1FL8XQ30",
        topic=extra.pop("topic", f"{stage}.topic"),
        partition=0,
        offset=extra.pop("offset", 0),
        at_ms=COMMIT + at,
        source_ts_ms=0 if stage == "receipt" else COMMIT,  # receipts do not carry it
        **extra,
    )


def delivered(department: str, at: int, **extra: Any) -> Hop:
    return hop(
        "delivered", at, department=department, subscription=f"{department}.enterprise", **extra
    )


def receipt(department: str, at: int, **extra: Any) -> Hop:
    return hop(
        "receipt",
        at,
        department=department,
        subscription=f"{department}.enterprise",
        outcome=extra.pop("outcome", "applied"),
        **extra,
    )


FULL = [
    receipt("tax", 400),
    hop("normalized", 120),
    delivered("social_security", 150),
    hop("captured", 90),
    delivered("tax", 150),
    receipt("social_security", 300),
]


def test_a_complete_path_is_in_order_with_the_latency_of_each_hop() -> None:
    trace = build("e1", FULL, TOPOLOGY, COMMIT + 1000)
    assert trace.complete
    assert [(s.stage, s.department) for s in trace.steps] == [
        ("committed", None),
        ("captured", None),
        ("normalized", None),
        ("delivered", "social_security"),
        ("receipt", "social_security"),
        ("delivered", "tax"),
        ("receipt", "tax"),
    ]
    hops = {(s.stage, s.department): s.hop_ms for s in trace.steps}
    assert hops[("captured", None)] == 90
    assert hops[("normalized", None)] == 30
    assert hops[("delivered", "tax")] == 30  # from normalized, not from another department
    assert hops[("receipt", "tax")] == 250  # from its own delivery
    assert [s.since_commit_ms for s in trace.steps if s.stage == "receipt"] == [300, 400]
    assert trace.source_ts_ms == COMMIT


def test_a_delivery_without_a_receipt_is_awaited_then_overdue_after_receipt_within() -> None:
    hops = [h for h in FULL if not (h.stage == "receipt" and h.department == "tax")]
    (awaited,) = build("e1", hops, TOPOLOGY, COMMIT + 150 + HOUR_MS - 1).missing
    assert "no receipt from tax" in awaited and "awaited" in awaited and "1h" in awaited
    (overdue,) = build("e1", hops, TOPOLOGY, COMMIT + 150 + HOUR_MS + 1).missing
    assert "overdue" in overdue


def test_a_change_never_normalized_says_so() -> None:
    trace = build("e1", [hop("captured", 90)], TOPOLOGY, COMMIT + 1000)
    assert trace.missing == ["not normalized (see `govsync dlq list`)"]


def test_a_re_emitted_change_and_a_repeated_receipt_count_from_their_first_sighting() -> None:
    hops = [*FULL, hop("normalized", 5000, offset=99), receipt("tax", 9000, offset=7)]
    steps = {(s.stage, s.department): s for s in build("e1", hops, TOPOLOGY, COMMIT).steps}
    assert steps[("normalized", None)].at_ms == COMMIT + 120
    assert steps[("receipt", "tax")].at_ms == COMMIT + 400


def test_a_rejected_receipt_shows_the_reason() -> None:
    hops = [*FULL[1:], receipt("tax", 400, reason="taxpayer row is locked", outcome="rejected")]
    steps = {(s.stage, s.department): s for s in build("e1", hops, TOPOLOGY, COMMIT).steps}
    assert steps[("receipt", "tax")].detail == "rejected: taxpayer row is locked"


def test_an_entity_key_lists_its_changes_newest_first() -> None:
    older = [h.model_copy(update={"event_id": "e0", "source_ts_ms": COMMIT - 10}) for h in FULL]
    found = traces([*older, *FULL], "91310000MA1FL8XQ30", TOPOLOGY, COMMIT + 1000)
    assert [t.event_id for t in found] == ["e1", "e0"]
    assert [t.event_id for t in traces([*older, *FULL], "e0", TOPOLOGY, COMMIT)] == ["e0"]
    assert traces(FULL, "nothing-like-it", TOPOLOGY, COMMIT) == []


def test_a_change_from_an_upstream_node_shows_its_sending_between_capture_and_normalize() -> None:
    """At the province: the city captured it at +90, delivered it at +110 (the mirrored
    record's time), and the province normalized it at +120."""
    sent = hop("sent", 110, department="city", topic="city.deliver.province.enterprise")
    trace = build("e1", [*FULL, sent], TOPOLOGY, COMMIT + 1000)
    assert trace.complete
    assert [(s.stage, s.department) for s in trace.steps][:4] == [
        ("committed", None),
        ("captured", None),
        ("sent", "city"),
        ("normalized", None),
    ]
    steps = {(s.stage, s.department): s for s in trace.steps}
    assert steps[("sent", "city")].detail == "by node city"
    assert steps[("sent", "city")].hop_ms == 20  # from the capture
    assert steps[("sent", "city")].position == "city.deliver.province.enterprise[0]@0"
    assert steps[("normalized", None)].hop_ms == 10  # from the sending, not the capture


def test_a_change_passed_on_by_two_nodes_shows_each_sending_in_time_order() -> None:
    hops = [
        *FULL,
        hop("sent", 115, department="region"),
        hop("sent", 100, department="city"),
        hop("sent", 117, department="region", offset=3),  # mirrored twice: the first counts
    ]
    steps = build("e1", hops, TOPOLOGY, COMMIT + 1000).steps
    assert [(s.stage, s.department, s.detail) for s in steps if s.stage == "sent"] == [
        ("sent", "city", "by node city"),
        ("sent", "region", "by node region"),
    ]
    assert [s.hop_ms for s in steps if s.stage in ("sent", "normalized")] == [10, 15, 5]


def test_a_change_of_this_node_has_no_sending() -> None:
    trace = build("e1", FULL, TOPOLOGY, COMMIT + 1000)
    assert "sent" not in [s.stage for s in trace.steps]
    assert trace.complete
