"""Nothing lost: every kind of bad input is held on govsync.dlq with its reason and
position, the pipeline goes on, held records can be reprocessed once the topology is
fixed, and the accounting balances.

Bad records are written straight onto the cdc topic, as a misbehaving upstream could:
Avro in the Confluent wire format under a test schema, or plain garbage.
"""

from __future__ import annotations

import io
import json
import struct
import time
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema

from govsync.ops import dlq
from streams.contract.headers import as_dict
from streams.contract.topics import DLQ_TOPIC
from streams.kafka import clients, topic_reader
from streams.kafka.serde import registry_client
from streams.model.topology import load_topology
from tests.debezium import envelope_schema
from tests.integration.companies import insert, new_company, new_uscc
from tests.integration.conftest import Stack
from tests.integration.topologies import edited

CDC = "cdc.market_regulation.public.enterprise"

_ROW_FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "long"},
    {"name": "credit_code", "type": ["null", "string"], "default": None},
    {"name": "ent_name", "type": ["null", "string"], "default": None},
    {"name": "reg_status", "type": ["null", "string"], "default": None},
    {"name": "rep_name", "type": ["null", "string"], "default": None},
    {"name": "rep_id_no", "type": ["null", "string"], "default": None},
    {"name": "reg_capital", "type": ["null", "string", "boolean"], "default": None},
    {"name": "address", "type": ["null", "string"], "default": None},
    {"name": "established_on", "type": ["null", "int", "string"], "default": None},
    {"name": "ent_type", "type": ["null", "string"], "default": None},
    {"name": "industry_code", "type": ["null", "string"], "default": None},
]


SCHEMAS = {
    "envelope": envelope_schema(_ROW_FIELDS),
    "no_address": envelope_schema(
        [f for f in _ROW_FIELDS if f["name"] != "address"], name="EnvelopeWithoutAddress"
    ),
    "other": {
        "type": "record",
        "name": "Other",
        "namespace": "govsync.tests",
        "fields": [{"name": "something", "type": "string"}],
    },
}


def _framed(stack: Stack, kind: str, record: dict[str, Any]) -> bytes:
    """Confluent wire format: magic byte, 4-byte schema id, Avro body."""
    schema = SCHEMAS[kind]
    schema_id = registry_client(stack.settings).register_schema(
        f"govsync-tests-{kind}", Schema(json.dumps(schema), "AVRO")
    )
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record)
    return b"\x00" + struct.pack(">I", schema_id) + body.getvalue()


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 900_000_000 + int(time.time_ns() % 1_000_000),
        "credit_code": new_uscc(),
        "ent_name": "死信测试有限公司",
        "reg_status": "1",
        "rep_name": "赵敏",
        "rep_id_no": "11010519491231002X",
        "reg_capital": "100.00",
        "address": "测试路1号",
        "established_on": 18263,
        "ent_type": "1",
        "industry_code": "F",
    }
    row.update(changes)
    return row


def _envelope(row: dict[str, Any] | None, op: str = "c", table: str = "enterprise") -> dict:
    return {
        "op": op,
        "before": None,
        "after": row,
        "source": {
            "name": "cdc.market_regulation",
            "schema": "public",
            "table": table,
            "lsn": time.time_ns(),
            "txId": 1,
            "ts_ms": int(time.time() * 1000),
        },
    }


def bad_records(stack: Stack) -> dict[str, bytes | None]:
    """case -> a cdc record value that must be refused with the code the case starts with
    (``code/variant`` for several cases of one code)."""
    no_address = _row()
    del no_address["address"]
    return {
        "undecodable": b"this is not Avro in the Confluent wire format",
        # Framed like Avro, but under a schema id the registry never issued.
        "undecodable/unknown_schema_id": b"\x00" + struct.pack(">I", 987654) + b"\x02\x00",
        # A registered schema, but the body breaks off.
        "undecodable/truncated": _framed(stack, "envelope", _envelope(_row()))[:12],
        "not_an_envelope": _framed(stack, "other", {"something": "else"}),
        "tombstone": None,
        "unsupported_operation": _framed(stack, "envelope", _envelope(None, op="t")),
        "unknown_table": _framed(stack, "envelope", _envelope(_row(), table="enterprise_old")),
        "unknown_column": _framed(stack, "no_address", _envelope(no_address)),
        "unknown_code": _framed(stack, "envelope", _envelope(_row(reg_status="7"))),
        "null_key": _framed(stack, "envelope", _envelope(_row(credit_code=None))),
        "wrong_type": _framed(stack, "envelope", _envelope(_row(reg_capital=True))),
        "bad_length": _framed(stack, "envelope", _envelope(_row(credit_code="9135010"))),
        "bad_charset": _framed(
            stack, "envelope", _envelope(_row(credit_code="91350100M000100IO3"))
        ),
        "bad_check_character": _framed(
            stack, "envelope", _envelope(_row(credit_code="91350100M000100Y44"))
        ),
        "bad_check_digit": _framed(
            stack, "envelope", _envelope(_row(rep_id_no="110105194912310021"))
        ),
        "bad_birth_date": _framed(
            stack, "envelope", _envelope(_row(rep_id_no="110105194902300020"))
        ),
        "bad_timestamp": _framed(stack, "envelope", _envelope(_row(established_on="someday"))),
    }


def produce(stack: Stack, values: dict[str, bytes | None]) -> dict[str, tuple[int, int]]:
    """Write each value onto the cdc topic; returns code -> (partition, offset)."""
    producer = Producer(clients.config(stack.settings.bootstrap))
    positions: dict[str, tuple[int, int]] = {}
    for code, value in values.items():

        def delivered(error: Any, message: Any, code: str = code) -> None:
            assert error is None, error
            positions[code] = (message.partition(), message.offset())

        producer.produce(CDC, value, None, on_delivery=delivered)
    assert producer.flush(30) == 0
    return positions


def held_for(stack: Stack, start: topic_reader.Offsets, wanted: int) -> list[dict[str, str]]:
    headers: list[dict[str, str]] = []
    for message in topic_reader.messages(
        stack.settings.bootstrap, start, until=lambda seen: len(seen) >= wanted, timeout=90
    ):
        headers.append(
            {
                **as_dict(message.headers()),
                "dlq_position": f"{message.partition()}:{message.offset()}",
            }
        )
    return headers


def test_every_error_code_is_held_with_its_reason_and_position(stack: Stack) -> None:
    values = bad_records(stack)
    start = stack.offsets(DLQ_TOPIC)
    positions = produce(stack, values)
    marker = new_company()
    deliveries = stack.offsets("deliver.tax.enterprise")
    insert(stack, marker)

    by_position = {
        (int(h["source_partition"]), int(h["source_offset"])): h
        for h in held_for(stack, start, len(values))
        if h.get("source_topic") == CDC
    }
    for code, position in positions.items():
        held = by_position.get(position)
        assert held is not None, f"{code}: nothing on the DLQ for {CDC}{position}"
        assert held["error_code"] == code.partition("/")[0], f"{code}: held as {held['error_code']}"
        assert held["error_message"], f"{code}: no human reason"

    # The pipeline went on: a valid change committed after the bad ones is delivered.
    stack.read_until(deliveries, lambda rs: any(r.key == marker.credit_code for r in rs))


def test_reprocess_closes_only_what_now_succeeds(stack: Stack, tmp_path: Path) -> None:
    stack.sql(
        "market_regulation",
        "INSERT INTO reg_status_code VALUES ('6', '迁出') ON CONFLICT DO NOTHING",
    )
    moved_out = new_company(reg_status="6")
    start = stack.offsets(DLQ_TOPIC)
    insert(stack, moved_out)
    [held] = held_for(stack, start, 1)
    assert held["error_code"] == "unknown_code"
    position = held["dlq_position"]

    # Still failing under the current topology: nothing is closed.
    report = dlq.reprocess(stack.settings, stack.topology, positions={position})
    assert (report.reprocessed, report.still_failing) == (0, {"unknown_code": 1})

    # The code table is fixed: "6" (moved out to another district) is suspended here.
    def fix_code_table(data: dict[str, Any]) -> None:
        data["sources"][0]["columns"]["status"]["codes"]["6"] = "suspended"

    path = edited(tmp_path, fix_code_table)
    deliveries = stack.offsets("deliver.tax.enterprise")
    report = dlq.reprocess(stack.settings, load_topology(path), positions={position})
    assert (report.reprocessed, report.still_failing) == (1, {})

    records = stack.read_until(
        deliveries, lambda rs: any(r.key == moved_out.credit_code for r in rs)
    )
    [delivered] = [r for r in records if r.key == moved_out.credit_code]
    assert delivered.value["after"]["status"] == "suspended"
    closed = {r.position: r for r in dlq.held(stack.settings, closed_too=True)[0]}[position]
    assert closed.closure is not None and closed.closure.outcome == "reprocessed"
    assert closed.closure.event_id == delivered.headers["event_id"]

    # A second run finds nothing open at that position.
    assert dlq.reprocess(stack.settings, stack.topology, positions={position}).examined == 0


def test_accounting_balances(stack: Stack) -> None:
    deadline = time.monotonic() + 120
    while True:
        accounts = dlq.accounting(stack.settings, stack.topology)
        if all(a.balanced and a.in_flight == 0 for a in accounts) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert accounts
    for account in accounts:
        assert account.balanced, account
        assert account.processed == account.normalized + account.dead_lettered, account
