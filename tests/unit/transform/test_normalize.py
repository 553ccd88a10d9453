"""Debezium envelope -> canonical event, without a broker: the rules decide what a change means."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from streams.contract import headers
from streams.model.standards import resident_id_15_to_18
from streams.transform.normalize import NormalizeError, changed_fields, event_id, normalize
from tests.unit.examples import ENTERPRISE, ROW, TOPOLOGY, envelope, with_row

SOURCE = TOPOLOGY.source("market_regulation.enterprise")


def test_insert_is_a_registration_with_every_mapped_field_converted() -> None:
    event = normalize(envelope("c", None, ROW), {"id": 7}, SOURCE, ENTERPRISE)
    assert event["kind"] == "registered"
    assert event["key"] == "91350100M000100Y43"
    assert event["before"] is None
    assert event["after"] == {
        "uscc": "91350100M000100Y43",
        "name": "福建测试科技有限公司",
        "status": "active",
        "legal_rep_name": "王芳",
        "legal_rep_id": "11010519491231002X",
        "legal_rep_phone": None,  # the source has no such column
        "registered_capital": "5000000.00",
        "address": "福州市鼓楼区",
        "established_on": "2020-01-02",
        "contact_phone": None,  # owned by district_services; no column here either
        "enterprise_type": "joint_stock_company",
        "industry": "K",
    }
    assert event["source"] == "market_regulation.enterprise"
    assert event["source_ts_ms"] == 1795400000000
    assert event["source_position"] == "lsn=1000;txid=55"


def test_snapshot_reads_are_marked_as_such() -> None:
    assert normalize(envelope("r", None, ROW), {"id": 7}, SOURCE, ENTERPRISE)["kind"] == "snapshot"


def test_reaching_the_lifecycle_end_is_a_deregistration() -> None:
    event = normalize(envelope("u", ROW, with_row(reg_status="4")), {"id": 7}, SOURCE, ENTERPRISE)
    assert event["kind"] == "deregistered"
    assert event["changed_fields"] == ["status"]
    assert event["after"]["status"] == "deregistered"


def test_an_update_after_deregistration_is_a_plain_update() -> None:
    gone = with_row(reg_status="4")
    event = normalize(
        envelope("u", gone, with_row(reg_status="4", address="新地址")),
        {"id": 7},
        SOURCE,
        ENTERPRISE,
    )
    assert event["kind"] == "updated"
    assert event["changed_fields"] == ["address"]


def test_delete_keeps_the_key_from_the_before_image() -> None:
    event = normalize(envelope("d", ROW, None), {"id": 7}, SOURCE, ENTERPRISE)
    assert event["kind"] == "deleted"
    assert event["key"] == "91350100M000100Y43"
    assert event["changed_fields"] == []


def test_legacy_15_digit_resident_id_is_converted() -> None:
    event = normalize(
        envelope("c", None, with_row(rep_id_no="130503670401001")), {"id": 7}, SOURCE, ENTERPRISE
    )
    assert event["after"]["legal_rep_id"] == resident_id_15_to_18("130503670401001")


def test_event_id_is_deterministic_from_the_source_position() -> None:
    first = normalize(envelope("c", None, ROW), {"id": 7}, SOURCE, ENTERPRISE)
    again = normalize(envelope("c", None, copy.deepcopy(ROW)), {"id": 7}, SOURCE, ENTERPRISE)
    assert first["event_id"] == again["event_id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", first["event_id"])


@pytest.mark.parametrize(
    "field, value",
    [("lsn", 1001), ("txId", 56), ("table", "other"), ("name", "cdc.other")],
)
def test_event_id_changes_with_any_part_of_the_position(field: str, value: Any) -> None:
    base = envelope("c", None, ROW)
    moved = copy.deepcopy(base)
    moved["source"][field] = value
    assert event_id(base, {"id": 7}) != event_id(moved, {"id": 7})
    assert event_id(base, {"id": 7}) != event_id(base, {"id": 8})


@pytest.mark.parametrize(
    "row, code",
    [
        (with_row(credit_code="91350100M000100Y44"), "bad_check_character"),
        (with_row(credit_code=None), "null_key"),
        (with_row(reg_status="9"), "unknown_code"),
        (with_row(rep_id_no="110105194912310021"), "bad_check_digit"),
        (with_row(rep_id_no="110105194902300020"), "bad_birth_date"),
        (with_row(credit_code="91350100M00010"), "bad_length"),
        (with_row(credit_code="91350100M000100IO3"), "bad_charset"),
        (with_row(reg_capital=True), "wrong_type"),
        (with_row(reg_capital="a lot"), "wrong_type"),
        (with_row(established_on=[2020, 1, 2]), "wrong_type"),
        (with_row(established_on="someday"), "bad_timestamp"),
    ],
)
def test_invalid_rows_are_refused_with_a_code(row: dict[str, Any], code: str) -> None:
    with pytest.raises(NormalizeError) as caught:
        normalize(envelope("c", None, row), {"id": 7}, SOURCE, ENTERPRISE)
    assert caught.value.code == code
    assert str(caught.value)


def test_a_table_the_source_does_not_map_is_refused() -> None:
    other = envelope("c", None, ROW)
    other["source"]["table"] = "enterprise_archive"
    with pytest.raises(NormalizeError) as caught:
        normalize(other, {"id": 7}, SOURCE, ENTERPRISE)
    assert caught.value.code == "unknown_table"


def test_unknown_column_and_non_envelopes_are_refused() -> None:
    row = with_row()
    del row["ent_name"]
    with pytest.raises(NormalizeError) as caught:
        normalize(envelope("c", None, row), {"id": 7}, SOURCE, ENTERPRISE)
    assert caught.value.code == "unknown_column"
    with pytest.raises(NormalizeError) as caught:
        normalize({"something": "else"}, None, SOURCE, ENTERPRISE)
    assert caught.value.code == "not_an_envelope"
    with pytest.raises(NormalizeError) as caught:
        normalize(envelope("t", None, None), None, SOURCE, ENTERPRISE)
    assert caught.value.code == "unsupported_operation"


@pytest.mark.parametrize(
    "value",
    [
        "a string",
        [envelope("c", None, ROW)],
        {**envelope("c", None, ROW), "source": "cdc.market_regulation"},
        {**envelope("c", None, ROW), "after": "a row as text"},
        {**envelope("u", ROW, ROW), "before": 7},
    ],
    ids=["string", "array", "source as text", "row as text", "before as number"],
)
def test_decoded_values_of_another_shape_are_refused(value: Any) -> None:
    """Any Avro value decodes; what is not an envelope must be refused, not crash the stage."""
    with pytest.raises(NormalizeError) as caught:
        normalize(value, {"id": 7}, SOURCE, ENTERPRISE)
    assert caught.value.code == "not_an_envelope"


def test_snapshot_ids_follow_row_content_not_the_snapshot_position() -> None:
    first = envelope("r", None, ROW, lsn=1000)
    resnapshot = envelope("r", None, copy.deepcopy(ROW), lsn=9000)
    changed = envelope("r", None, with_row(address="新地址"), lsn=9000)
    assert event_id(first, {"id": 7}) == event_id(resnapshot, {"id": 7})
    assert event_id(first, {"id": 7}) != event_id(changed, {"id": 7})
    assert event_id(first, {"id": 7}) != event_id(envelope("c", None, ROW, lsn=1000), {"id": 7})


def test_changed_fields() -> None:
    assert changed_fields(None, {"a": 1, "b": None}) == ["a"]
    assert changed_fields({"a": 1, "b": 2}, {"a": 1, "b": 3}) == ["b"]
    assert changed_fields({"a": 1}, None) == []


def test_headers_carry_the_contract() -> None:
    event = normalize(envelope("c", None, ROW), {"id": 7}, SOURCE, ENTERPRISE)
    sent = headers.as_dict(headers.for_change(event, "normalize"))
    assert sent["event_id"] == event["event_id"]
    assert sent["source"] == "market_regulation.enterprise"
    assert sent["source_ts"] == "1795400000000"
    version, trace, span, flags = sent["traceparent"].split("-")
    assert (version, flags) == ("00", "01")
    assert trace == headers.trace_id(event["event_id"]) and len(trace) == 32
    assert len(span) == 16
    other_stage = headers.as_dict(headers.for_change(event, "route"))["traceparent"]
    assert other_stage.split("-")[1] == trace and other_stage != sent["traceparent"]
