"""A department whose database is MariaDB: a row inserted into health.birth_certificate
reaches cdc.health.health.birth_certificate through Debezium's MariaDB connector, with
the envelope and the time types the normalizer reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pymysql
import pytest

from streams.config import mariadb
from streams.kafka import topic_reader
from streams.kafka.serde import RegistryCodec, registry_client
from streams.model.topology import CST
from tests.integration.conftest import Stack

pytestmark = pytest.mark.stack

TOPIC = "cdc.health.health.birth_certificate"
BORN_AT = datetime(2026, 11, 20, 8, 30, 15, 123000)  # a wall clock: DATETIME(3)


def _resident(stack: Stack, *, male: bool) -> str:
    """A registered resident of the public security seed (GB 11643: odd 17th digit, a man)."""
    digits = "13579" if male else "02468"
    rows = stack.sql(
        "public_security",
        "SELECT id_no FROM household_registration WHERE substr(id_no, 17, 1) = ANY(%s) "
        "ORDER BY id_no LIMIT 1",
        (list(digits),),
    )
    return rows[0][0]


def _value_fields(schema: Any) -> dict[str, Any]:
    """The row's fields (name -> Avro type) in Debezium's envelope schema: the row record
    is defined in ``before`` and named again in ``after``."""
    before = next(field for field in schema["fields"] if field["name"] == "before")
    row = next(branch for branch in before["type"] if branch != "null")
    return {field["name"]: field["type"] for field in row["fields"]}


def _logical(avro_type: Any) -> Any:
    """The non-null branch of an optional field."""
    if isinstance(avro_type, list):
        return next(branch for branch in avro_type if branch != "null")
    return avro_type


def test_an_inserted_birth_certificate_is_captured(stack: Stack) -> None:
    assert stack.topology.source("health.birth").cdc_topic == TOPIC
    certificate_no = f"T{uuid.uuid4().int % 10**12:012d}"
    mother, father = _resident(stack, male=False), _resident(stack, male=True)
    start = stack.offsets(TOPIC)
    with (
        pymysql.connect(**mariadb.connection_args(stack.settings, "health")) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(
            "INSERT INTO birth_certificate "
            "(certificate_no, child_name, sex, born_at, mother_id, father_id, hospital) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (certificate_no, "王小明", "1", BORN_AT, mother, father, "北京大学第三医院"),
        )
        conn.commit()
        cursor.execute(
            "SELECT issued_at FROM birth_certificate WHERE certificate_no = %s",
            (certificate_no,),
        )
        (issued_local,) = cursor.fetchone()  # in the server's zone, +08:00

    codec = RegistryCodec(registry_client(stack.settings))

    def ours(message: Any) -> bool:
        value = codec.decode(message.topic(), message.value())
        return bool(value and (value.get("after") or {}).get("certificate_no") == certificate_no)

    found = [
        m
        for m in topic_reader.messages(
            stack.settings.bootstrap, start, until=lambda seen: any(map(ours, seen)), timeout=60
        )
        if ours(m)
    ]
    assert found, f"no change for {certificate_no} on {TOPIC} within 60s"
    message = found[0]
    value = codec.decode(message.topic(), message.value())
    assert value is not None
    assert value["op"] == "c"
    assert value["before"] is None
    source = value["source"]
    assert source["connector"] == "mariadb"
    assert source["name"] == "cdc.health"
    assert (source["db"], source["table"]) == ("health", "birth_certificate")
    assert source["file"].startswith("mariadb-bin.")
    assert source["pos"] > 0
    assert source["server_id"] == 1
    assert source["snapshot"] in (None, "false")

    after = value["after"]
    assert after["mother_id"] == mother
    assert after["father_id"] == father
    assert after["sex"] == "1"
    _, writer = codec.writer(message.topic(), message.value())
    fields = _value_fields(writer)
    born_at_type, issued_at_type = _logical(fields["born_at"]), _logical(fields["issued_at"])
    seen = f"born_at: {born_at_type!r}, issued_at: {issued_at_type!r}"
    # DATETIME(3): milliseconds since the epoch of the wall clock read as if it were UTC.
    assert isinstance(after["born_at"], int), seen
    assert born_at_type["connect.name"] == "io.debezium.time.Timestamp", seen
    assert after["born_at"] == int(BORN_AT.replace(tzinfo=UTC).timestamp() * 1000)
    # TIMESTAMP(6): an instant, as ISO-8601 text in UTC.
    assert isinstance(after["issued_at"], str), seen
    assert issued_at_type["connect.name"] == "io.debezium.time.ZonedTimestamp", seen
    issued_utc = datetime.fromisoformat(after["issued_at"].replace("Z", "+00:00"))
    # The server's zone is China Standard Time (govsync/stack/mariadb.py).
    assert issued_utc == issued_local.replace(tzinfo=CST).astimezone(UTC)
