"""Time columns from both databases become UTC ISO 8601: the unit of a zone-less reading
comes from the writer schema, and the reading is China Standard Time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Message

from streams.model.topology import Entity, Source
from streams.stages.normalize import NormalizeStage
from streams.transform.normalize import Normalizer, event_id
from streams.transform.temporal import wall_clock_columns
from tests.debezium import envelope_schema
from tests.unit.avro import MemoryCodec, Schema
from tests.unit.examples import TOPOLOGY

ENTITY = Entity.model_validate(
    {
        "key": "code",
        "fields": {
            "code": {"type": "string", "classification": "public"},
            "at": {"type": "timestamp", "classification": "public"},
            "issued": {"type": "timestamp", "classification": "public"},
        },
    }
)


def source(table: str) -> Source:
    return Source.model_validate(
        {
            "id": "health.visit",
            "department": "tax",
            "database": {"kind": "postgres", "name": table.split(".")[0]},
            "table": table,
            "entity": "visit",
            "primary_key": ["id"],
            "authoritative": ["code", "at", "issued"],
            "columns": {"code": "code", "at": "at", "issued": "issued"},
        }
    )


def columns(at_type: Schema) -> list[Schema]:
    return [
        {"name": "id", "type": "long"},
        {"name": "code", "type": "string"},
        {"name": "at", "type": ["null", at_type], "default": None},
        {
            "name": "issued",
            "type": ["null", {"type": "string", "connect.name": "io.debezium.time.ZonedTimestamp"}],
            "default": None,
        },
    ]


# 2026-12-01 10:30:00.250 on a clock in Beijing is 02:30:00.250 UTC.
READING = datetime(2026, 12, 1, 10, 30, 0, 250000, tzinfo=UTC)
MS = int(READING.timestamp() * 1000)


@pytest.mark.parametrize(
    ("connect_name", "avro_type", "value"),
    [
        ("io.debezium.time.Timestamp", "long", MS),  # PG timestamp(3), MariaDB DATETIME(3)
        ("io.debezium.time.MicroTimestamp", "long", MS * 1000),  # timestamp, DATETIME(6)
        ("io.debezium.time.NanoTimestamp", "long", MS * 1_000_000),
    ],
)
def test_zone_less_readings_are_china_standard_time_in_the_writer_schemas_unit(
    connect_name: str, avro_type: str, value: int
) -> None:
    at_type = {"type": avro_type, "connect.name": connect_name}
    codec = MemoryCodec()
    writer = codec.schemas[codec.register(envelope_schema(columns(at_type)))]
    row = {"id": 1, "code": "A1", "at": value, "issued": "2026-12-01T02:30:00.250000Z"}
    envelope = {
        "op": "c",
        "before": None,
        "after": row,
        "source": {"name": "cdc.x", "schema": "public", "table": "visit", "ts_ms": 1},
    }
    event = Normalizer(source("public.visit"), ENTITY)(
        envelope, {"id": 1}, wall_clock_columns(writer)
    )
    assert event["after"]["at"] == "2026-12-01T02:30:00.250000Z"
    assert event["after"]["issued"] == "2026-12-01T02:30:00.250000Z"


def test_connects_own_timestamp_is_a_reading_too() -> None:
    at_type = {
        "type": "long",
        "logicalType": "timestamp-millis",
        "connect.name": "org.apache.kafka.connect.data.Timestamp",
    }
    codec = MemoryCodec()
    writer = codec.schemas[codec.register(envelope_schema(columns(at_type)))]
    readings = wall_clock_columns(writer)
    assert set(readings) == {"at"}
    assert readings["at"](READING) == datetime(2026, 12, 1, 10, 30, 0, 250000)


def test_a_number_without_a_known_unit_is_refused_by_name() -> None:
    envelope = {
        "op": "c",
        "before": None,
        "after": {"id": 1, "code": "A1", "at": MS, "issued": None},
        "source": {"name": "cdc.x", "schema": "public", "table": "visit", "ts_ms": 1},
    }
    with pytest.raises(ValueError, match=r"field at: .*not a datetime or string"):
        Normalizer(source("public.visit"), ENTITY)(envelope, {"id": 1})


def mariadb_envelope(row: dict[str, Any], pos: int, row_in_event: int = 0) -> dict[str, Any]:
    return {
        "op": "c",
        "before": None,
        "after": row,
        "source": {
            "name": "cdc.health",
            "db": "health",
            "table": "visit",
            "file": "mariadb-bin.000002",
            "pos": pos,
            "row": row_in_event,
            "ts_ms": 1,
        },
    }


def test_a_binlog_position_names_the_change() -> None:
    normalizer = Normalizer(source("health.visit"), ENTITY)
    row = {"id": 1, "code": "A1", "at": None, "issued": None}
    event = normalizer(mariadb_envelope(row, 4242, 1), {"id": 1})
    assert event["source_position"] == "binlog=mariadb-bin.000002:4242;row=1"
    again = event_id(mariadb_envelope(dict(row), 4242, 1), {"id": 1})
    assert event["event_id"] == again
    assert event_id(mariadb_envelope(row, 4242, 2), {"id": 1}) != again
    assert event_id(mariadb_envelope(row, 4300, 1), {"id": 1}) != again


def test_the_stage_reads_the_unit_from_each_records_writer_schema() -> None:
    """Two writer schemas on one topic (a column's precision changed): each record is read
    in its own schema's unit."""
    codec = MemoryCodec()
    entity = TOPOLOGY.entities  # the real topology, with one more entity and source
    topology = TOPOLOGY.model_copy(
        update={
            "entities": {**entity, "visit": ENTITY},
            "sources": [*TOPOLOGY.sources, source("public.visit")],
        }
    )
    stage = NormalizeStage(topology, codec)
    topic = source("public.visit").cdc_topic
    outputs = []
    for connect_name, value in (
        ("io.debezium.time.Timestamp", MS),
        ("io.debezium.time.MicroTimestamp", MS * 1000),
    ):
        schema_id = codec.register(
            envelope_schema(columns({"type": "long", "connect.name": connect_name}))
        )
        envelope = {
            "op": "c",
            "before": None,
            "after": {"id": 1, "code": "A1", "at": value, "issued": None},
            "source": {"name": "cdc.x", "schema": "public", "table": "visit", "ts_ms": 1},
        }
        value_bytes = codec.encode(schema_id, envelope)
        message = Message(topic=topic, partition=0, offset=len(outputs), value=value_bytes)
        outputs += stage.process(message)
    changes = [codec.decode(out.topic, out.value) for out in outputs]
    assert [out.topic for out in outputs] == ["changes.visit", "changes.visit"]
    assert [c["after"]["at"] for c in changes] == ["2026-12-01T02:30:00.250000Z"] * 2
