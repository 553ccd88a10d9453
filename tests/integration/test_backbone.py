"""The backbone end to end on the real stack: PostgreSQL → Debezium → Kafka (Avro, Apicurio)
→ the worker (normalize, route, ledger) → delivery topics → the tax sink.

Every test makes its own brand-new enterprises (random, valid credit codes), so the tests
are independent and can be rerun on a stack that already holds data. Nothing is mocked.
Waits are generous (the worker may be restarted by someone else meanwhile); nothing here
asserts on latency.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.serialization import SerializationError

from connectors.sinks import tax as tax_sink
from connectors.subscriber import Delivery, Rejected, apply_batch, apply_once
from govsync.stack.seed import Enterprise
from streams.contract.headers import as_dict
from streams.contract.topics import DLQ_TOPIC
from streams.kafka import clients
from streams.kafka.topic_reader import Offsets, Record
from streams.model.standards import resident_id_15_to_18
from streams.transform.masking import keyed_hash, mask_state, partial
from tests.integration.companies import (
    CDC_TOPIC,
    CHANGES,
    DELIVERIES,
    ENTERPRISE_TYPE,
    MASTER,
    SOCIAL,
    SOURCE_ID,
    STATUS,
    SUBSCRIPTION_OF,
    TAX,
    TRACEPARENT,
    WAIT,
    insert,
    mask_key,
    new_company,
    new_resident_id,
    new_uscc,
    unique_name,
    update,
    wait_for,
    with_wrong_check_character,
)
from tests.integration.conftest import Stack

pytestmark = pytest.mark.stack


def expected_state(company: Enterprise) -> dict[str, Any]:
    """The canonical state (every entity field) the worker must make of the row."""
    return {
        "uscc": company.credit_code,
        "name": company.ent_name,
        "status": STATUS[company.reg_status],
        "legal_rep_name": company.rep_name,
        "legal_rep_id": (
            resident_id_15_to_18(company.rep_id_no)
            if len(company.rep_id_no) == 15
            else company.rep_id_no
        ),
        "legal_rep_phone": None,  # the source has no phone column
        "registered_capital": str(company.reg_capital),
        "address": company.address,
        "established_on": company.established_on.isoformat(),
        "contact_phone": None,  # owned by the district source, which has no row for it
        "enterprise_type": ENTERPRISE_TYPE[company.ent_type],
        "industry": company.industry_code,
    }


# --- reading -----------------------------------------------------------------------------


def of(records: list[Record], topic: str, key: str) -> list[Record]:
    """The records of ``topic`` keyed by ``key``, in the order read (one partition per key)."""
    return [r for r in records if r.topic == topic and r.key == key]


def count_on(topics: tuple[str, ...], key: str, count: int) -> Callable[[list[Record]], bool]:
    """Done once each of ``topics`` has at least ``count`` records for ``key``."""
    return lambda records: all(len(of(records, topic, key)) >= count for topic in topics)


def names(records: list[Record]) -> list[str]:
    return [r.value["after"]["name"] for r in records if r.value is not None]


def txid_of(record: Record) -> str:
    """The source transaction id from ``source_position`` (``lsn=…;txid=…``)."""
    assert record.value is not None
    position = dict(part.split("=", 1) for part in record.value["source_position"].split(";"))
    return position["txid"]


@dataclass(frozen=True)
class Raw:
    """A record as bytes, read without any deserializer."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


def read_raw(
    stack: Stack, start: Offsets, done: Callable[[list[Raw]], bool], timeout: float = WAIT
) -> list[Raw]:
    """Tail ``start`` with a plain confluent_kafka consumer until ``done`` holds."""
    consumer = Consumer(
        clients.config(
            stack.settings.bootstrap,
            **{
                "group.id": f"govsync-it-{uuid.uuid4().hex}",  # never committed
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            },
        )
    )
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in start.items()])
    seen: list[Raw] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not done(seen):
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error.str()
                continue
            seen.append(
                Raw(
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    message.key(),
                    message.value(),
                    as_dict(message.headers()),
                )
            )
    finally:
        consumer.close()
    assert done(seen), f"timed out after {timeout}s; read {len(seen)} raw records"
    return seen


def read_one_raw(stack: Stack, topic: str, partition: int, offset: int) -> Raw:
    return read_raw(stack, {(topic, partition): offset}, lambda seen: len(seen) >= 1)[0]


def dead_letters_for(stack: Stack, uscc: str) -> Callable[[list[Raw]], list[Raw]]:
    """Dead letters whose original Debezium envelope carries ``uscc`` as its credit code."""

    def matching(seen: list[Raw]) -> list[Raw]:
        found = []
        for raw in seen:
            if raw.headers.get("source_topic") != CDC_TOPIC:
                continue
            try:
                envelope = stack.decode(CDC_TOPIC, raw.value)
            except SerializationError:
                continue  # someone else's undecodable dead letter
            after = (envelope or {}).get("after") or {}
            if after.get("credit_code") == uscc:
                found.append(raw)
        return found

    return matching


def assert_headers(record: Record) -> None:
    """The header contract (docs/architecture.md), from changes.* on."""
    assert record.value is not None
    headers = record.headers
    assert headers["event_id"] == record.value["event_id"]
    assert TRACEPARENT.fullmatch(headers["traceparent"]), headers["traceparent"]
    assert headers["source"] == SOURCE_ID
    assert int(headers["source_ts"]) == record.value["source_ts_ms"] > 0


# --- tests -------------------------------------------------------------------------------


def test_insert_is_registered_and_delivered_with_exactly_the_subscribed_fields(
    stack: Stack,
) -> None:
    """An INSERT becomes a `registered` change and one delivery per subscription, each with
    exactly its subscription's fields, codes mapped, a legacy 15-digit ID converted to 18
    digits, and the header contract (event_id, traceparent, source, source_ts)."""
    company = new_company(rep_id_no=new_resident_id(legacy=True), reg_status="1")
    key = company.credit_code
    start = stack.offsets(CHANGES, *DELIVERIES)
    insert(stack, company)
    records = stack.read_until(start, count_on((CHANGES, *DELIVERIES), key, 1), timeout=WAIT)

    state = expected_state(company)
    assert state["status"] == "active"
    assert len(state["legal_rep_id"]) == 18
    change = of(records, CHANGES, key)[0]
    assert change.value is not None
    assert change.value["kind"] == "registered"
    assert change.value["key"] == key
    assert change.value["source"] == SOURCE_ID
    assert change.value["before"] is None
    assert change.value["after"] == state
    assert_headers(change)

    for topic in DELIVERIES:
        [delivery] = of(records, topic, key)
        value = delivery.value
        assert value is not None
        subscription = stack.topology.subscription(SUBSCRIPTION_OF[topic])
        assert value["subscription"] == subscription.id
        assert value["kind"] == "registered"
        assert value["event_id"] == change.value["event_id"]
        dropped = {n for n, m in subscription.mask.items() if m.rule == "drop"}
        assert set(value["after"]) == set(subscription.fields) - dropped
        expected = {name: state[name] for name in subscription.fields}
        assert value["after"] == mask_state(expected, subscription, mask_key(stack, topic))
        assert_headers(delivery)

    social = of(records, SOCIAL, key)[0].value
    assert social is not None
    # Masked for social security: first and last four digits of the converted number.
    assert social["after"]["legal_rep_id"] == partial(resident_id_15_to_18(company.rep_id_no), 4)
    assert social["after"]["status"] == "active"
    tax = of(records, TAX, key)[0].value
    assert tax is not None
    assert "legal_rep_id" not in tax["after"]
    assert tax["after"]["registered_capital"] == str(company.reg_capital)


def test_updates_arrive_in_commit_order_including_a_burst_in_one_transaction(
    stack: Stack,
) -> None:
    """Updates in separate transactions and a burst of updates to the same row inside one
    transaction reach every delivery topic in exactly commit order, each with its own
    event_id."""
    company = new_company()
    key = company.credit_code
    start = stack.offsets(*DELIVERIES)
    insert(stack, company)
    separate = [unique_name(f"第{n}次") for n in range(1, 4)]
    for name in separate:
        update(stack, key, "ent_name = %s", (name,))
    burst = [unique_name(f"批量{n}") for n in range(1, 6)]
    conninfo = stack.settings.pg_conninfo("market_regulation")
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        for name in burst:
            conn.execute(
                "UPDATE enterprise SET ent_name = %s, updated_at = now() WHERE credit_code = %s",
                (name, key),
            )
    expected = [company.ent_name, *separate, *burst]

    records = stack.read_until(start, count_on(DELIVERIES, key, len(expected)), timeout=WAIT)
    for topic in DELIVERIES:
        delivered = of(records, topic, key)
        assert names(delivered) == expected, topic
        assert [r.value["kind"] for r in delivered if r.value] == [
            "registered",
            *["updated"] * (len(expected) - 1),
        ]
        event_ids = [r.value["event_id"] for r in delivered if r.value]
        assert len(set(event_ids)) == len(expected), f"{topic}: event_ids repeat: {event_ids}"
        assert [r.headers["event_id"] for r in delivered] == event_ids
        txids = [txid_of(r) for r in delivered]
        assert len(set(txids[-len(burst) :])) == 1, f"the burst was not one transaction: {txids}"
        assert len(set(txids[: -len(burst)])) == len(expected) - len(burst)


def test_update_of_an_unsubscribed_field_is_not_delivered(stack: Stack) -> None:
    """最小必要: a change of legal_rep_name alone reaches social security, which subscribes to
    it, but not tax, which does not; tax gets exactly the registration and the later name
    change."""
    company = new_company()
    key = company.credit_code
    start = stack.offsets(*DELIVERIES)
    insert(stack, company)
    new_rep = company.rep_name + "新"
    update(stack, key, "rep_name = %s", (new_rep,))
    new_name = unique_name("更名")
    update(stack, key, "ent_name = %s", (new_name,))

    def done(records: list[Record]) -> bool:
        return len(of(records, SOCIAL, key)) >= 3 and len(of(records, TAX, key)) >= 2

    records = stack.read_until(start, done, timeout=WAIT)

    social = [r.value for r in of(records, SOCIAL, key) if r.value]
    assert [(v["kind"], v["changed_fields"]) for v in social] == [
        ("registered", ["uscc", "name", "status", "legal_rep_name", "legal_rep_id"]),
        ("updated", ["legal_rep_name"]),
        ("updated", ["name"]),
    ]
    # Hashed for social security with its own key: the change shows, the name does not.
    assert social[1]["before"]["legal_rep_name"] == keyed_hash(
        company.rep_name, mask_key(stack, SOCIAL)
    )
    assert social[1]["after"]["legal_rep_name"] == keyed_hash(new_rep, mask_key(stack, SOCIAL))

    # Same key, same partition, commit order: had the rep change been delivered to tax it
    # would sit between the registration and the name change.
    tax = [r.value for r in of(records, TAX, key) if r.value]
    assert [(v["kind"], v["changed_fields"]) for v in tax] == [
        (
            "registered",
            [
                "uscc",
                "name",
                "status",
                "registered_capital",
                "address",
                "enterprise_type",
                "industry",
            ],
        ),
        ("updated", ["name"]),
    ]
    assert tax[1]["after"]["name"] == new_name
    assert tax[1]["event_id"] == social[2]["event_id"]
    assert all("legal_rep_name" not in v["after"] for v in tax)


def test_deregistration_closes_the_taxpayer_in_the_tax_database(stack: Stack) -> None:
    """The headline scenario: a deregistration at market regulation is delivered as
    `deregistered` and the tax sink marks the taxpayer deregistered and cancels its pending
    reminders, recording the event exactly once in its inbox."""
    company = new_company()
    key = company.credit_code
    insert(stack, company)
    stack.sql(
        "tax",
        "INSERT INTO taxpayer (uscc, name, status, tax_office, registered_on)"
        " VALUES (%s, %s, 'active', '国家税务总局北京市海淀区税务局', current_date)"
        " ON CONFLICT (uscc) DO NOTHING",
        (key, company.ent_name),
    )
    stack.sql(
        "tax",
        "INSERT INTO tax_reminder (uscc, tax_type, period, due_date, state) VALUES"
        " (%s, '增值税', '2026-11', '2026-12-15', 'pending'),"
        " (%s, '企业所得税', '2026-11', '2026-12-15', 'pending')",
        (key, key),
    )

    def registration_applied() -> bool:
        return bool(
            stack.sql(
                "tax",
                "SELECT 1 FROM govsync_inbox WHERE entity_key = %s AND kind = 'registered'",
                (key,),
            )
        )

    wait_for(registration_applied, f"the tax sink to apply the registration of {key}")

    start = stack.offsets(*DELIVERIES)
    update(stack, key, "reg_status = '4'")
    records = stack.read_until(start, count_on(DELIVERIES, key, 1), timeout=WAIT)
    deliveries = {topic: of(records, topic, key)[0].value for topic in DELIVERIES}
    for topic, value in deliveries.items():
        assert value is not None
        assert value["kind"] == "deregistered", topic
        assert value["before"]["status"] == "active"
        assert value["after"]["status"] == "deregistered"
        assert value["changed_fields"] == ["status"]
    event_id = deliveries[TAX]["event_id"]

    def closed() -> bool:
        rows = stack.sql("tax", "SELECT status FROM taxpayer WHERE uscc = %s", (key,))
        return rows == [("deregistered",)]

    wait_for(closed, f"the tax sink to deregister taxpayer {key}")
    [(status, deregistered_at)] = stack.sql(
        "tax", "SELECT status, deregistered_at FROM taxpayer WHERE uscc = %s", (key,)
    )
    assert status == "deregistered"
    assert deregistered_at is not None
    assert abs(deregistered_at.timestamp() * 1000 - deliveries[TAX]["source_ts_ms"]) < 1
    states = dict(
        stack.sql(
            "tax",
            "SELECT state, count(*) FROM tax_reminder WHERE uscc = %s GROUP BY state",
            (key,),
        )
    )
    assert states == {"cancelled": 2}
    reasons = stack.sql(
        "tax", "SELECT DISTINCT cancelled_reason FROM tax_reminder WHERE uscc = %s", (key,)
    )
    assert reasons == [(f"企业已注销 (event {event_id})",)]
    inbox = stack.sql(
        "tax", "SELECT kind, entity_key FROM govsync_inbox WHERE event_id = %s", (event_id,)
    )
    assert inbox == [("deregistered", key)]


def test_master_holds_the_latest_full_state(stack: Stack) -> None:
    """master.enterprise ends with the latest state of the entity, every field present."""
    company = new_company()
    key = company.credit_code
    start = stack.offsets(MASTER)
    insert(stack, company)
    latest = replace(
        company,
        ent_name=unique_name("最新"),
        address="上海市浦东新区长江路8号",
        reg_status="2",
        reg_capital=Decimal("1234567.89"),
    )
    update(stack, key, "ent_name = %s", (latest.ent_name,))
    update(stack, key, "address = %s, reg_capital = %s", (latest.address, latest.reg_capital))
    update(stack, key, "reg_status = '2'")
    stack.read_until(start, count_on((MASTER,), key, 4), timeout=WAIT)

    mine = [r for r in stack.read_all(MASTER) if r.key == key]
    assert mine, f"no record for {key} on {MASTER}"
    state = mine[-1].value
    assert state is not None
    assert set(state) == set(stack.topology.entity("enterprise").fields)
    assert state == expected_state(latest)
    assert state["status"] == "suspended"
    assert mine[-1].headers["source"] == SOURCE_ID


def test_bad_check_character_goes_to_the_dlq_and_the_pipeline_goes_on(stack: Stack) -> None:
    """A credit code with a wrong check character is dead-lettered with its reason and
    position, as the original Avro bytes; a valid insert right after is still delivered."""
    bad = new_company()
    bad = replace(bad, credit_code=with_wrong_check_character(bad.credit_code))
    good = new_company()
    dlq_start = stack.offsets(DLQ_TOPIC)
    start = stack.offsets(*DELIVERIES)
    insert(stack, bad)
    insert(stack, good)

    matching = dead_letters_for(stack, bad.credit_code)
    [letter] = matching(read_raw(stack, dlq_start, lambda seen: bool(matching(seen))))
    assert letter.headers["error_code"] == "bad_check_character"
    assert bad.credit_code in letter.headers["error_message"]
    assert letter.headers["source_topic"] == CDC_TOPIC
    partition = int(letter.headers["source_partition"])
    offset = int(letter.headers["source_offset"])

    envelope = stack.decode(CDC_TOPIC, letter.value)
    assert envelope is not None
    assert envelope["op"] == "c"
    assert envelope["after"]["credit_code"] == bad.credit_code
    original = read_one_raw(stack, CDC_TOPIC, partition, offset)
    assert original.value == letter.value
    assert original.key == letter.key

    records = stack.read_until(start, count_on(DELIVERIES, good.credit_code, 1), timeout=WAIT)
    for topic in DELIVERIES:
        [delivery] = of(records, topic, good.credit_code)
        assert delivery.value is not None
        assert delivery.value["kind"] == "registered"
    assert not [r for r in records if r.key == bad.credit_code]


def test_unknown_status_code_goes_to_the_dlq(stack: Stack) -> None:
    """A status code that the source's code table has but the topology does not map is
    dead-lettered as unknown_code."""
    stack.sql(
        "market_regulation",
        "INSERT INTO reg_status_code (code, label) VALUES ('9', '未知') ON CONFLICT DO NOTHING",
    )
    company = new_company(reg_status="9")
    dlq_start = stack.offsets(DLQ_TOPIC)
    insert(stack, company)

    matching = dead_letters_for(stack, company.credit_code)
    [letter] = matching(read_raw(stack, dlq_start, lambda seen: bool(matching(seen))))
    assert letter.headers["error_code"] == "unknown_code"
    assert letter.headers["source_topic"] == CDC_TOPIC
    assert int(letter.headers["source_partition"]) >= 0
    assert int(letter.headers["source_offset"]) >= 0


def tax_delivery(value: dict[str, Any], offset: int) -> Delivery:
    """``value`` as the tax sink's subscriber hands it to its handler, read at ``offset``."""
    return Delivery(**value, topic=TAX, partition=0, offset=offset)


def test_tax_sink_applies_a_delivery_once(stack: Stack) -> None:
    """apply_once is idempotent by event_id: the same delivery applied a second time (in
    a later transaction) is reported as a duplicate and changes nothing."""
    key = new_uscc()  # throwaway: exists only in this test's tax rows, removed at the end
    company = new_company(credit_code=key)
    registered = {
        "event_id": str(uuid.uuid4()),
        "kind": "registered",
        "entity": "enterprise",
        "key": key,
        "before": None,
        "after": {
            "uscc": key,
            "name": company.ent_name,
            "status": "active",
            "address": company.address,
            "registered_capital": str(company.reg_capital),
        },
        "changed_fields": ["uscc", "name", "status", "registered_capital", "address"],
        "source": SOURCE_ID,
        "source_ts_ms": int(time.time() * 1000),
        "source_position": "lsn=0;txid=0",
        "subscription": "tax.enterprise",
    }
    deregistered = {
        **registered,
        "event_id": str(uuid.uuid4()),
        "kind": "deregistered",
        "before": registered["after"],
        "after": {**registered["after"], "status": "deregistered"},
        "changed_fields": ["status"],
    }

    def snapshot(conn: psycopg.Connection) -> tuple[list[tuple], ...]:
        return tuple(
            conn.execute(statement, (key,)).fetchall()
            for statement in (
                "SELECT * FROM taxpayer WHERE uscc = %s",
                "SELECT * FROM tax_reminder WHERE uscc = %s ORDER BY id",
                "SELECT * FROM govsync_inbox WHERE entity_key = %s ORDER BY event_id",
            )
        )

    # Autocommit, so each conn.transaction() below is a real transaction of its own.
    with psycopg.connect(stack.settings.pg_conninfo("tax"), autocommit=True) as conn:
        try:
            for delivery in (registered, deregistered):
                with conn.transaction():
                    outcome = apply_once(
                        conn, tax_delivery(delivery, offset=0), tax_sink.apply_enterprise
                    )
                    if delivery is registered:
                        conn.execute(
                            "INSERT INTO tax_reminder (uscc, tax_type, period, due_date)"
                            " VALUES (%s, '增值税', '2026-11', '2026-12-15'),"
                            " (%s, '印花税', '2026-11', '2026-12-15')",
                            (key, key),
                        )
                assert outcome == "applied"
                before = snapshot(conn)
                with conn.transaction():
                    again = apply_once(
                        conn, tax_delivery(delivery, offset=1), tax_sink.apply_enterprise
                    )
                assert again == "duplicate"
                assert snapshot(conn) == before
            [taxpayer] = before[0]
            assert "deregistered" in taxpayer
            assert [row[5] for row in before[1]] == ["cancelled", "cancelled"]
            assert len(before[2]) == 2
        finally:
            with conn.transaction():
                conn.execute("DELETE FROM govsync_inbox WHERE entity_key = %s", (key,))
                conn.execute("DELETE FROM tax_reminder WHERE uscc = %s", (key,))
                conn.execute("DELETE FROM taxpayer_tax_type WHERE uscc = %s", (key,))
                conn.execute("DELETE FROM taxpayer WHERE uscc = %s", (key,))


def test_a_delivery_the_department_cannot_take_is_rejected_not_fatal(stack: Stack) -> None:
    """A delivery the tax database refuses (no name for a new taxpayer) is recorded in the
    inbox as rejected with the database's reason, leaves no partial writes, and is a
    duplicate when it comes again; the sink is not stopped by it."""
    key = new_uscc()
    nameless = {
        "event_id": str(uuid.uuid4()),
        "kind": "registered",
        "entity": "enterprise",
        "key": key,
        "before": None,
        "after": {"uscc": key, "name": None, "status": "active", "address": None},
        "changed_fields": ["uscc", "status"],
        "source": SOURCE_ID,
        "source_ts_ms": int(time.time() * 1000),
        "source_position": "lsn=0;txid=0",
        "subscription": "tax.enterprise",
    }
    with psycopg.connect(stack.settings.pg_conninfo("tax"), autocommit=True) as conn:
        try:
            with conn.transaction():
                outcome = apply_once(
                    conn, tax_delivery(nameless, offset=0), tax_sink.apply_enterprise
                )
            assert outcome == "rejected"
            [(recorded, reason)] = conn.execute(
                "SELECT outcome, reason FROM govsync_inbox WHERE event_id = %s",
                (nameless["event_id"],),
            ).fetchall()
            assert recorded == "rejected"
            assert "name" in reason and "not-null" in reason
            assert conn.execute("SELECT 1 FROM taxpayer WHERE uscc = %s", (key,)).fetchall() == []
            with conn.transaction():
                again = apply_once(
                    conn, tax_delivery(nameless, offset=1), tax_sink.apply_enterprise
                )
            assert again == "duplicate"
        finally:
            conn.execute("DELETE FROM govsync_inbox WHERE entity_key = %s", (key,))


def test_a_delivery_the_handler_refuses_is_rejected_with_its_reason(stack: Stack) -> None:
    """A handler that raises Rejected after writing leaves no partial writes; the inbox
    records the delivery as rejected with the handler's reason, and it is a duplicate when
    it comes again."""
    key = new_uscc()
    company = new_company(credit_code=key)
    registered = {
        "event_id": str(uuid.uuid4()),
        "kind": "registered",
        "entity": "enterprise",
        "key": key,
        "before": None,
        "after": {"uscc": key, "name": company.ent_name, "status": "active", "address": None},
        "changed_fields": ["uscc", "name", "status"],
        "source": SOURCE_ID,
        "source_ts_ms": int(time.time() * 1000),
        "source_position": "lsn=0;txid=0",
        "subscription": "tax.enterprise",
    }
    why = f"纳税人 {key} 不属本局管辖"

    def refuse_after_writing(conn: psycopg.Connection, delivery: Delivery) -> None:
        tax_sink.apply_enterprise(conn, delivery)  # the taxpayer row is written ...
        raise Rejected(why)  # ... and undone

    with psycopg.connect(stack.settings.pg_conninfo("tax"), autocommit=True) as conn:
        try:
            with conn.transaction():
                outcome = apply_once(conn, tax_delivery(registered, offset=0), refuse_after_writing)
            assert outcome == "rejected"
            assert conn.execute(
                "SELECT outcome, reason FROM govsync_inbox WHERE event_id = %s",
                (registered["event_id"],),
            ).fetchall() == [("rejected", why)]
            assert conn.execute("SELECT 1 FROM taxpayer WHERE uscc = %s", (key,)).fetchall() == []
            with conn.transaction():
                again = apply_once(conn, tax_delivery(registered, offset=1), refuse_after_writing)
            assert again == "duplicate"
        finally:
            with conn.transaction():
                conn.execute("DELETE FROM govsync_inbox WHERE entity_key = %s", (key,))
                conn.execute("DELETE FROM taxpayer_tax_type WHERE uscc = %s", (key,))
                conn.execute("DELETE FROM taxpayer WHERE uscc = %s", (key,))


def test_a_batch_applies_together_and_leaves_out_only_what_is_refused(stack: Stack) -> None:
    """apply_batch: a batch with a delivery the database refuses is undone and applied
    again one by one, so the others apply, the refused one is rejected with no partial
    writes, and an event_id repeated in the batch applies once. The same batch again is
    all duplicates and changes nothing."""
    keys = [new_uscc() for _ in range(3)]

    def registered(key: str, name: str | None) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()),
            "kind": "registered",
            "entity": "enterprise",
            "key": key,
            "before": None,
            "after": {"uscc": key, "name": name, "status": "active", "address": None},
            "changed_fields": ["uscc", "name", "status"],
            "source": SOURCE_ID,
            "source_ts_ms": int(time.time() * 1000),
            "source_position": "lsn=0;txid=0",
            "subscription": "tax.enterprise",
        }

    first, nameless, last = (
        registered(keys[0], "甲公司"),
        registered(keys[1], None),  # taxpayer.name is NOT NULL
        registered(keys[2], "丙公司"),
    )
    batch = [
        tax_delivery(value, offset) for offset, value in enumerate([first, nameless, first, last])
    ]
    with psycopg.connect(stack.settings.pg_conninfo("tax"), autocommit=True) as conn:
        try:
            done = apply_batch(conn, batch, tax_sink.HANDLERS)
            assert [outcome for _, outcome, _ in done] == [
                "applied",
                "rejected",
                "duplicate",
                "applied",
            ]
            assert [recorded[0] for _, _, recorded in done] == [
                "applied",
                "rejected",
                "applied",
                "applied",
            ]
            assert "not-null" in (done[1][2][1] or "")
            names = conn.execute(
                "SELECT uscc, name FROM taxpayer WHERE uscc = ANY(%s)", (keys,)
            ).fetchall()
            assert set(names) == {(keys[0], "甲公司"), (keys[2], "丙公司")}

            together = apply_batch(conn, [batch[0], batch[3]], tax_sink.HANDLERS)
            assert [outcome for _, outcome, _ in together] == ["duplicate", "duplicate"]
            assert [r for _, _, r in together] == [done[0][2], done[3][2]]

            fresh = [tax_delivery(registered(key, "丁公司"), 9) for key in keys]
            applied = apply_batch(conn, fresh, tax_sink.HANDLERS)
            assert [outcome for _, outcome, _ in applied] == ["applied"] * 3
            assert conn.execute(
                "SELECT count(*) FROM taxpayer WHERE uscc = ANY(%s) AND name = '丁公司'", (keys,)
            ).fetchone() == (3,)
        finally:
            with conn.transaction():
                conn.execute("DELETE FROM govsync_inbox WHERE entity_key = ANY(%s)", (keys,))
                conn.execute("DELETE FROM taxpayer_tax_type WHERE uscc = ANY(%s)", (keys,))
                conn.execute("DELETE FROM taxpayer WHERE uscc = ANY(%s)", (keys,))
