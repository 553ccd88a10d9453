"""What the indexer makes of trail records, before any database: rows in column order,
awaited receipts from delivered and receipt hops, and how far behind the topics it is."""

from __future__ import annotations

from typing import Any

from govsync.index.indexer import AUDIT_COLUMNS, HOP_COLUMNS, Batch, _entry, _hop, behind
from govsync.index.rebuild import _offsets, _offsets_json

HOP: dict[str, Any] = {
    "event_id": "e1",
    "stage": "delivered",
    "kind": "updated",
    "entity": "enterprise",
    "entity_key": "91350100M000100Y43",
    "department": "tax",
    "subscription": "tax.enterprise",
    "topic": "deliver.tax.enterprise",
    "partition": 2,
    "offset": 41,
    "at_ms": 1_000,
    "source_ts_ms": 900,
    "outcome": None,
    "reason": None,
}


def test_a_hop_becomes_a_row_in_column_order_at_its_trace_position() -> None:
    batch = Batch()
    _hop(batch, 5, 77, HOP)
    (row,) = batch.hops
    assert dict(zip(HOP_COLUMNS, row, strict=True)) == {
        **{name: HOP[name] for name in HOP_COLUMNS[2:9]},
        "partition": 5,
        "offset": 77,
        "topic": "deliver.tax.enterprise",
        "topic_partition": 2,
        "topic_offset": 41,
        "at_ms": 1_000,
        "source_ts_ms": 900,
        "outcome": None,
        "reason": None,
    }


def test_a_delivery_is_awaited_and_a_receipt_answers_it() -> None:
    batch = Batch()
    _hop(batch, 0, 1, HOP)
    _hop(batch, 0, 2, {**HOP, "stage": "receipt", "outcome": "applied"})
    _hop(batch, 0, 3, {**HOP, "stage": "normalized", "department": None, "subscription": None})
    assert batch.delivered == [("tax.enterprise", "e1", "tax", "91350100M000100Y43", 1_000)]
    assert batch.answered == [("tax.enterprise", "e1")]
    assert len(batch.hops) == 3


def test_only_audit_links_that_name_an_entity_are_indexed() -> None:
    link = {
        "seq": 3,
        "kind": "delivery",
        "at_ms": 1_000,
        "actor": "worker",
        "event_id": "e1",
        "entity": "enterprise",
        "entity_key": "91350100M000100Y43",
        "department": "tax",
        "subscription": "tax.enterprise",
        "fields": ["uscc", "name"],
        "approval": {"state": "approved"},
        "detail": {"kind": "updated"},
        "prev_sha256": "0" * 64,
        "sha256": "1" * 64,
    }
    batch = Batch()
    _entry(batch, 1, 10, link)
    _entry(batch, 1, 11, {**link, "kind": "topology_change", "entity_key": None})
    (row,) = batch.entries
    assert dict(zip(AUDIT_COLUMNS, row, strict=True))["entity_key"] == "91350100M000100Y43"
    assert row[:2] == (1, 10)


def test_behind_counts_from_the_log_start_where_the_index_has_nothing() -> None:
    ends = {("govsync.trace", 0): 100, ("govsync.trace", 1): 50, ("govsync.audit", 0): 10}
    starts = {("govsync.trace", 0): 40}
    held = {("govsync.trace", 1): 50, ("govsync.audit", 0): 4}
    assert behind(ends, starts, held) == 60 + 0 + 6
    assert behind(ends, starts, {**held, ("govsync.trace", 0): 100, ("govsync.audit", 0): 11}) == 0


def test_a_rebuilds_target_survives_its_json_form() -> None:
    target = {("govsync.trace", 0): 12, ("govsync.audit", 5): 0}
    assert _offsets(_offsets_json(target)) == target
