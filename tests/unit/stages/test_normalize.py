"""The normalize stage on in-memory Avro: a Debezium record becomes one canonical change
with the contract's headers, anything it cannot normalize becomes one dead letter holding
the original bytes, and its metrics move only when the transaction commits."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Message

from streams.contract import headers
from streams.contract.topics import DLQ_TOPIC, changes_topic
from streams.stages.normalize import NormalizeStage
from streams.transform.normalize import normalize
from tests.unit.avro import Cdc, MemoryCodec, Schema
from tests.unit.examples import ENTERPRISE, ROW, TOPOLOGY, envelope, with_row
from tests.unit.stages import count

SOURCE = TOPOLOGY.source("market_regulation.enterprise")
PARTITION, OFFSET = 1, 41
WRITTEN_MS = 1795400000250  # when Connect wrote the cdc record

# market_regulation's public.enterprise as Debezium's Avro converter types its columns.
COLUMNS: list[Schema] = [
    {"name": "id", "type": "long"},
    *(
        {"name": name, "type": ["null", "string"], "default": None}
        for name in ("credit_code", "ent_name", "reg_status", "rep_name", "rep_id_no")
    ),
    {"name": "reg_capital", "type": ["null", "string"], "default": None},
    {"name": "address", "type": ["null", "string"], "default": None},
    {"name": "established_on", "type": ["null", "int"], "default": None},  # io.debezium.time.Date
    {"name": "updated_at", "type": ["null", "string"], "default": None},  # ZonedTimestamp
    {"name": "ent_type", "type": ["null", "string"], "default": None},
    {"name": "industry_code", "type": ["null", "string"], "default": None},
]


@pytest.fixture()
def cdc(codec: MemoryCodec) -> Cdc:
    return codec.cdc(SOURCE, COLUMNS)


@pytest.fixture()
def stage(codec: MemoryCodec) -> NormalizeStage:
    return NormalizeStage(TOPOLOGY, codec)


def record(key: bytes | None, value: bytes | None) -> Message:
    return Message(
        topic=SOURCE.cdc_topic,
        partition=PARTITION,
        offset=OFFSET,
        key=key,
        value=value,
        timestamp=(1, WRITTEN_MS),
    )


def test_a_cdc_record_becomes_one_canonical_change_with_the_contract_headers(
    codec: MemoryCodec, cdc: Cdc, stage: NormalizeStage
) -> None:
    (out,) = stage.process(record(cdc.key({"id": 7}), cdc.value(envelope("c", None, ROW))))
    expected = normalize(envelope("c", None, ROW), {"id": 7}, SOURCE, ENTERPRISE)
    assert (out.topic, out.key, out.partition) == (
        changes_topic("enterprise"),
        b"91350100M000100Y43",
        None,  # partitioned by key: one entity's changes stay in order
    )
    assert codec.decode(out.topic, out.value) == expected
    assert len(out.headers) == 5
    assert headers.as_dict(out.headers) == {
        "event_id": expected["event_id"],
        "traceparent": headers.traceparent(expected["event_id"], "normalize"),
        "source": "market_regulation.enterprise",
        "source_ts": "1795400000000",
        "captured": f"{SOURCE.cdc_topic}/{PARTITION}/{OFFSET}/{WRITTEN_MS}",
    }


Bad = Callable[[MemoryCodec, Cdc], tuple[bytes | None, bytes | None]]
BAD: dict[str, tuple[str, Bad]] = {
    "not Avro": ("undecodable", lambda _, c: (c.key({"id": 7}), b"not Avro at all")),
    "unknown schema id": ("undecodable", lambda _, c: (c.key({"id": 7}), b"\0\0\0\x03\xe7\x02")),
    "truncated body": (
        "undecodable",
        lambda _, c: (c.key({"id": 7}), c.value(envelope("c", None, ROW))[:12]),
    ),
    "undecodable key": ("undecodable", lambda _, c: (b"7", c.value(envelope("c", None, ROW)))),
    "unknown code": (
        "unknown_code",
        lambda _, c: (c.key({"id": 7}), c.value(envelope("c", None, with_row(reg_status="9")))),
    ),
    "tombstone": ("tombstone", lambda _, c: (c.key({"id": 7}), None)),
    "Avro, but no record": (
        "not_an_envelope",
        lambda codec, c: (c.key({"id": 7}), codec.encode(codec.register({"type": "string"}), "x")),
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_what_cannot_be_normalized_is_dead_lettered_with_its_original_bytes(
    case: str, codec: MemoryCodec, cdc: Cdc, stage: NormalizeStage
) -> None:
    code, bad = BAD[case]
    key, value = bad(codec, cdc)
    (out,) = stage.process(record(key, value))
    assert (out.topic, out.key, out.value, out.partition) == (DLQ_TOPIC, key, value, None)
    held = headers.as_dict(out.headers)
    where = ("error_code", "source_topic", "source_partition", "source_offset")
    assert {name: held[name] for name in where} == {
        "error_code": code,
        "source_topic": SOURCE.cdc_topic,
        "source_partition": str(PARTITION),
        "source_offset": str(OFFSET),
    }
    assert held["error_message"]  # the reason, for whoever fixes the source
    assert held["dead_lettered_at"].isdigit()


def test_metrics_count_a_batch_only_once_it_commits(cdc: Cdc, stage: NormalizeStage) -> None:
    source, entity = SOURCE.id, SOURCE.entity
    labels = {
        "captured_records": {"source": source},
        "normalized_records": {"source": source, "entity": entity},
        "dead_lettered_records": {"source": source, "error_code": "unknown_code"},
    }
    before = {name: count(name, **values) for name, values in labels.items()}

    def moved() -> dict[str, float]:
        return {name: count(name, **values) - before[name] for name, values in labels.items()}

    key = cdc.key({"id": 7})
    batch = [
        record(key, cdc.value(envelope("c", None, ROW))),
        record(key, cdc.value(envelope("u", ROW, with_row(reg_status="9")))),
    ]
    for message in batch:
        stage.process(message)
    assert moved() == dict.fromkeys(labels, 0.0)
    stage.aborted()  # the batch is redone: its first attempt must not count
    stage.committed()
    assert moved() == dict.fromkeys(labels, 0.0)
    for message in batch:
        stage.process(message)
    stage.committed()
    assert moved() == {
        "captured_records": 2.0,
        "normalized_records": 1.0,
        "dead_lettered_records": 1.0,
    }
