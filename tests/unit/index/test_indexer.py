"""What the indexer makes of records, before any database: rows in column order, awaited
receipts from delivered and receipt hops, held records and their closures, change events
counted per cdc partition, and how far behind the topics it is."""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka import Message

from govsync.index.freshness import behind
from govsync.index.indexer import Batch, _closure, _counted, _dead_letter, _entry, _hop
from govsync.index.rebuild import _offsets, _offsets_json
from govsync.index.store import AUDIT_COLUMNS, DEAD_LETTER_COLUMNS, HOP_COLUMNS
from streams.contract import headers

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


def change_event(*pairs: tuple[str, bytes]) -> Message:
    return Message(topic="changes.enterprise", partition=0, offset=9, headers=list(pairs))


def test_change_events_count_for_the_cdc_partition_they_were_captured_from() -> None:
    batch = Batch()
    cdc = "cdc.market_regulation.public.enterprise"
    for offset in (12, 10, 11):
        _counted(batch, change_event(headers.captured(cdc, 1, offset, 1_000)))
    _counted(batch, change_event(headers.captured(cdc, 2, 4, 1_000)))
    assert batch.normalized == {(cdc, 1): [3, 10], (cdc, 2): [1, 4]}


def test_control_records_and_reprocessed_held_records_are_not_counted() -> None:
    batch = Batch()
    _counted(batch, change_event((headers.CONTROL, b"replay")))
    _counted(batch, change_event((headers.REPROCESSED, b"r1")))
    assert batch.normalized == {}
    with pytest.raises(ValueError, match="captured"):
        _counted(batch, change_event(("event_id", b"e1")))


def test_a_held_record_is_indexed_even_with_damaged_headers() -> None:
    batch = Batch()
    good = [
        ("error_code", b"invalid_uscc"),
        ("error_message", b"check character"),
        ("source_topic", b"cdc.x"),
        ("source_partition", b"1"),
        ("source_offset", b"7"),
        ("dead_lettered_at", b"1700000000000"),
    ]
    _dead_letter(batch, Message(topic="govsync.dlq", partition=0, offset=3, headers=good))
    damaged = [("source_offset", b"seven")]
    _dead_letter(batch, Message(topic="govsync.dlq", partition=0, offset=4, headers=damaged))
    rows = [dict(zip(DEAD_LETTER_COLUMNS, row, strict=True)) for row in batch.dead_letters]
    assert rows[0] == {
        "partition": 0,
        "offset": 3,
        "error_code": "invalid_uscc",
        "error_message": "check character",
        "source_topic": "cdc.x",
        "source_partition": 1,
        "source_offset": 7,
        "dead_lettered_at_ms": 1_700_000_000_000,
    }
    assert (rows[1]["error_code"], rows[1]["source_offset"], rows[1]["dead_lettered_at_ms"]) == (
        "unknown",
        -1,
        None,
    )


def test_the_latest_closure_of_a_position_wins() -> None:
    batch = Batch()

    def closure(outcome: str) -> Message:
        value = json.dumps({"outcome": outcome, "closed_at": "t", "reprocess_id": "r"}).encode()
        return Message(topic="govsync.dlq.closed", partition=0, offset=1, key=b"2:40", value=value)

    _closure(batch, closure("superseded"))
    _closure(batch, closure("reprocessed"))
    assert batch.closures == {(2, 40): (2, 40, "reprocessed", "t", "r", None)}
    with pytest.raises(ValueError):
        _closure(batch, Message(topic="govsync.dlq.closed", key=b"2:40", value=b"{}"))
    with pytest.raises(ValueError):
        _closure(batch, Message(topic="govsync.dlq.closed", key=b"forty", value=b"{}"))
