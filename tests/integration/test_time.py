"""Time columns from both databases become UTC ISO 8601 in canonical events. A column
without a zone is a China Standard Time wall clock: PostgreSQL's ``timestamp`` (Debezium's
MicroTimestamp, µs) and MariaDB's ``DATETIME(3)`` (Timestamp, ms); a column with one,
MariaDB's ``TIMESTAMP``, arrives as an instant (ZonedTimestamp)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pymysql
import pytest

from streams.config import mariadb
from streams.contract.topics import changes_topic
from streams.model.topology import CST
from tests.integration.companies import WAIT, new_resident_id
from tests.integration.conftest import Stack

pytestmark = pytest.mark.stack


def test_a_postgresql_timestamp_without_zone_is_read_as_china_standard_time(stack: Stack) -> None:
    id18 = new_resident_id()
    start = stack.offsets(changes_topic("person"))
    # Half past midnight in Beijing is still the previous day in UTC.
    stack.sql(
        "public_security",
        "INSERT INTO household_registration (id_no, full_name, birth_date, domicile,"
        " registered_at) VALUES (%s, '时间测试', %s, '北京市海淀区学府路1号',"
        " '2026-12-02 00:30:00.123456')",
        (id18, f"{id18[6:10]}-{id18[10:12]}-{id18[12:14]}"),
    )
    records = stack.read_until(start, lambda rs: any(r.key == id18 for r in rs), timeout=WAIT)
    [change] = [r.value for r in records if r.key == id18]
    assert change is not None
    assert change["after"]["registered_at"] == "2026-12-01T16:30:00.123456Z"


def test_mariadb_datetime_and_timestamp_become_utc(stack: Stack) -> None:
    certificate_no = f"T{uuid.uuid4().int % 10**12:012d}"
    start = stack.offsets(changes_topic("birth"))
    with (
        pymysql.connect(**mariadb.connection_args(stack.settings, "health")) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(
            "INSERT INTO birth_certificate (certificate_no, child_name, sex, born_at, hospital)"
            " VALUES (%s, '时间测试', '2', '2026-12-02 00:30:00.250', '北京妇产医院')",
            (certificate_no,),
        )
        conn.commit()
        cursor.execute(
            "SELECT issued_at FROM birth_certificate WHERE certificate_no = %s", (certificate_no,)
        )
        (issued_local,) = cursor.fetchone()  # shown in the server's zone, CST
    records = stack.read_until(
        start, lambda rs: any(r.key == certificate_no for r in rs), timeout=WAIT
    )
    [change] = [r.value for r in records if r.key == certificate_no]
    assert change is not None
    after = change["after"]
    assert after["born_at"] == "2026-12-01T16:30:00.250000Z"
    issued = issued_local.replace(tzinfo=CST).astimezone(UTC)
    assert datetime.fromisoformat(after["issued_at"].replace("Z", "+00:00")) == issued
    assert after["issued_at"].endswith("Z")
    assert after["sex"] == "female"
    assert change["source_position"].startswith("binlog=mariadb-bin.")
