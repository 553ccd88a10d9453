"""The normalize stage on in-memory Avro: a Debezium record becomes one canonical change
with the contract's headers, anything it cannot normalize becomes one dead letter holding
the original bytes, and its metrics move only when the transaction commits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Message

from streams.config.settings import Settings
from streams.contract import headers
from streams.contract.schemas import delivery_schema
from streams.contract.topics import DLQ_TOPIC, changes_topic, delivery_topic, mirrored_topic
from streams.kafka.serde import upstream_codecs
from streams.model.topology import Federation
from streams.stages.normalize import NormalizeStage
from streams.transform.inbound import inbound_change
from streams.transform.normalize import normalize
from tests.unit.avro import Cdc, MemoryCodec, Schema
from tests.unit.examples import (
    CHANGE,
    ENTERPRISE,
    PROVINCE,
    ROW,
    STATE,
    TOPOLOGY,
    delivery,
    envelope,
    with_row,
)
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


# --- deliveries mirrored from an upstream node (federation) ----------------------------------

(FROM_CITY,) = PROVINCE.inbound
CITY_KEY = STATE["uscc"].encode()
CITY_DELIVERY = delivery(CHANGE, TOPOLOGY.subscription("province.enterprise"))
MIRRORED = mirrored_topic(FROM_CITY)  # city.deliver.province.enterprise
AT_CITY = TOPOLOGY.subscription("province.enterprise")
CITY_CAPTURED = f"{SOURCE.cdc_topic}/3/77/{WRITTEN_MS - 40}"  # where the city captured it
DELIVERED_MS = WRITTEN_MS + 150  # when the city delivered it: MirrorMaker keeps the timestamp


@pytest.fixture()
def city_registry() -> MemoryCodec:
    """The city's registry, whose schema ids the mirrored records carry."""
    return MemoryCodec()


@pytest.fixture()
def province(codec: MemoryCodec, city_registry: MemoryCodec) -> NormalizeStage:
    return NormalizeStage(PROVINCE, codec, {"city": city_registry})


def mirrored(
    city_registry: MemoryCodec,
    value: dict | None = CITY_DELIVERY,
    key: bytes | None = CITY_KEY,
    captured: bool = True,
) -> Message:
    """The city's delivery to the province, as MirrorMaker copied it: value, key, headers
    and timestamp unchanged, under the city's prefix."""
    serialize = city_registry.serializer(
        delivery_topic(AT_CITY), delivery_schema(TOPOLOGY, AT_CITY)
    )
    pairs = headers.for_change(CHANGE, f"deliver/{AT_CITY.id}")
    if captured:
        pairs.append((headers.CAPTURED, CITY_CAPTURED.encode()))
    return Message(
        topic=MIRRORED,
        partition=PARTITION,
        offset=OFFSET,
        key=key,
        value=None if value is None else serialize(value),
        headers=pairs,
        timestamp=(1, DELIVERED_MS),
    )


def test_normalize_reads_the_mirrored_deliveries_of_its_upstreams(
    province: NormalizeStage, stage: NormalizeStage
) -> None:
    assert list(province.topics) == [MIRRORED]
    assert list(stage.topics) == sorted(s.cdc_topic for s in TOPOLOGY.sources)


def test_a_mirrored_delivery_becomes_a_change_of_this_node_naming_where_it_came_from(
    codec: MemoryCodec, city_registry: MemoryCodec, province: NormalizeStage
) -> None:
    (out,) = province.process(mirrored(city_registry))
    assert (out.topic, out.key, out.partition) == (changes_topic("enterprise"), CITY_KEY, None)
    expected = inbound_change(
        city_registry.decode(MIRRORED, mirrored(city_registry).value()),
        CITY_KEY,
        FROM_CITY,
        PROVINCE.entity("enterprise"),
    )
    change = codec.decode(out.topic, out.value)  # in this node's registry and schema
    assert change == expected
    assert (change["event_id"], change["source"]) == (CHANGE["event_id"], "city.enterprise")
    assert headers.as_dict(out.headers) == {
        "event_id": CHANGE["event_id"],
        "traceparent": headers.traceparent(CHANGE["event_id"], "normalize"),
        "source": "city.enterprise",
        "source_ts": str(CHANGE["source_ts_ms"]),
        "captured": f"city:{CITY_CAPTURED}",
        "upstream": f"city/{MIRRORED}/{PARTITION}/{OFFSET}/{DELIVERED_MS}",
    }
    assert headers.parse_upstream(headers.as_dict(out.headers)["upstream"]) == (
        "city",
        MIRRORED,
        PARTITION,
        OFFSET,
        DELIVERED_MS,
    )


def test_without_the_upstreams_captured_header_only_the_upstream_one_is_added(
    city_registry: MemoryCodec, province: NormalizeStage
) -> None:
    (out,) = province.process(mirrored(city_registry, captured=False))
    names = [name for name, _ in out.headers]
    assert "captured" not in names
    assert names[-1] == "upstream"


MIRRORED_BAD: dict[str, tuple[str, Callable[[MemoryCodec], Message]]] = {
    "tombstone": ("tombstone", lambda city: mirrored(city, value=None)),
    "another key": ("key_mismatch", lambda city: mirrored(city, key=b"91350100M000100Y43")),
    "another entity": (
        "wrong_entity",
        lambda city: mirrored(city, value={**CITY_DELIVERY, "entity": "person"}),
    ),
    "not Avro": (
        "undecodable",
        lambda city: message_like(mirrored(city), value=b"not Avro at all"),
    ),
    "a schema id the city never issued": (
        "undecodable",
        lambda city: message_like(mirrored(city), value=b"\0\0\0\x03\xe7\x02"),
    ),
    "not a delivery": (
        "not_a_delivery",
        lambda city: message_like(
            mirrored(city),
            value=city.encode(
                city.register(
                    {
                        "type": "record",
                        "name": "Other",
                        "fields": [{"name": "event_id", "type": "string"}],
                    }
                ),
                {"event_id": "x"},
            ),
        ),
    ),
}


def message_like(message: Message, value: bytes) -> Message:
    """``message`` with another value."""
    return Message(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        value=value,
        headers=message.headers(),
        timestamp=message.timestamp(),
    )


@pytest.mark.parametrize("case", MIRRORED_BAD)
def test_a_mirrored_record_that_is_no_delivery_of_the_feed_is_dead_lettered(
    case: str, city_registry: MemoryCodec, province: NormalizeStage
) -> None:
    code, bad = MIRRORED_BAD[case]
    message = bad(city_registry)
    before = count("dead_lettered_records", source="city.enterprise", error_code=code)
    (out,) = province.process(message)
    assert (out.topic, out.key, out.value) == (DLQ_TOPIC, message.key(), message.value())
    held = headers.as_dict(out.headers)
    assert (held["error_code"], held["source_topic"], held["source_offset"]) == (
        code,
        MIRRORED,
        str(OFFSET),
    )
    province.committed()
    after = count("dead_lettered_records", source="city.enterprise", error_code=code)
    assert after - before == 1.0


def test_a_node_with_sources_and_an_upstream_reads_both(
    codec: MemoryCodec, cdc: Cdc, city_registry: MemoryCodec
) -> None:
    """The city receiving from the province as well: its cdc topics still normalize."""
    upstream = PROVINCE.federation.upstreams[0].model_copy(  # type: ignore[union-attr]
        update={"node": "province", "login": "city"}
    )
    both = TOPOLOGY.model_copy(update={"federation": Federation(node="city", upstreams=[upstream])})
    stage = NormalizeStage(both, codec, {"province": city_registry})
    assert "province.deliver.city.enterprise" in stage.topics
    assert SOURCE.cdc_topic in stage.topics
    (out,) = stage.process(record(cdc.key({"id": 7}), cdc.value(envelope("c", None, ROW))))
    assert out.topic == changes_topic("enterprise")
    assert headers.as_dict(out.headers)["captured"].startswith(f"{SOURCE.cdc_topic}/")
    assert "upstream" not in headers.as_dict(out.headers)


def test_avro_on_a_mirrored_topic_that_is_no_record_is_dead_lettered(
    city_registry: MemoryCodec, province: NormalizeStage
) -> None:
    value = city_registry.encode(city_registry.register({"type": "string"}), "x")
    (out,) = province.process(message_like(mirrored(city_registry), value=value))
    assert headers.as_dict(out.headers)["error_code"] == "not_a_delivery"


def test_an_upstream_without_a_codec_is_not_read(codec: MemoryCodec) -> None:
    """Its login not handed over yet: its mirrored deliveries wait on their topic rather
    than being dead-lettered for a configuration the records cannot help."""
    stage = NormalizeStage(PROVINCE, codec, {})
    assert mirrored_topic(FROM_CITY) not in stage.topics


def test_upstream_codecs_skip_a_node_whose_login_is_missing(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    assert upstream_codecs(settings, PROVINCE) == {}
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "peer-city-registry.password").write_text("issued-by-the-city\n")
    assert list(upstream_codecs(settings, PROVINCE)) == ["city"]
