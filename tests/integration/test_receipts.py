"""Receipts: every department that applies a delivery says so on govsync.receipts, under
the trace of the change, as its own Kafka principal, signed with its own key; a receipt
in another department's name is refused."""

from __future__ import annotations

from confluent_kafka import Producer

from streams.contract import headers, signatures
from streams.contract.schemas import receipt_schema
from streams.contract.topics import AUDIT_TOPIC, RECEIPTS_TOPIC, TRACE_TOPIC
from streams.kafka import clients
from streams.kafka.serde import ValueSerializer, registry_client
from streams.kafka.topic_reader import Record
from tests.integration.companies import SOCIAL, TAX, WAIT, insert, new_company
from tests.integration.conftest import Stack


def test_each_department_receipts_the_registration_it_applied(stack: Stack) -> None:
    company = new_company()
    start = stack.offsets(TAX, SOCIAL, RECEIPTS_TOPIC)
    insert(stack, company)

    def receipts(records: list[Record]) -> list[Record]:
        return [
            r
            for r in records
            if r.topic == RECEIPTS_TOPIC
            and r.value
            and r.value["entity_key"] == company.credit_code
        ]

    records = stack.read_until(start, lambda rs: len(receipts(rs)) >= 2, timeout=WAIT)
    deliveries = {
        r.topic: r for r in records if r.topic in (TAX, SOCIAL) and r.key == company.credit_code
    }
    by_department = {r.value["department"]: r for r in receipts(records) if r.value}
    assert set(by_department) == {"tax", "social_security"}
    for department, topic in (("tax", TAX), ("social_security", SOCIAL)):
        receipt = by_department[department]
        assert receipt.value is not None
        delivery = deliveries[topic]
        assert receipt.value["outcome"] == "applied"
        assert receipt.value["reason"] is None
        assert receipt.value["event_id"] == delivery.headers["event_id"]
        assert receipt.value["subscription"] == f"{department}.enterprise"
        assert (receipt.value["topic"], receipt.value["partition"], receipt.value["offset"]) == (
            topic,
            delivery.partition,
            delivery.offset,
        )
        assert receipt.value["applied_at_ms"] >= int(delivery.headers["source_ts"])
        assert receipt.key == delivery.headers["event_id"]
        trace = headers.trace_id(delivery.headers["event_id"])
        assert receipt.headers["traceparent"].split("-")[1] == trace
        assert delivery.headers["traceparent"].split("-")[1] == trace
        assert receipt.headers[signatures.SIGNATURE_HEADER]


def test_a_receipt_in_another_departments_name_is_refused(stack: Stack) -> None:
    """Tax, logged in as itself, answers social security's delivery in social security's
    name, signed with the only receipt key it has, its own: the ledger refuses it onto
    the audit trail, and no receipt hop says social security rejected the change."""
    settings = stack.settings
    company = new_company()
    start = stack.offsets(SOCIAL)
    insert(stack, company)
    records = stack.read_until(start, lambda rs: any(r.key == company.credit_code for r in rs))
    delivery = next(r for r in records if r.key == company.credit_code)
    event_id = delivery.headers["event_id"]
    trail = stack.offsets(AUDIT_TOPIC, TRACE_TOPIC)
    value = ValueSerializer(registry_client(settings, "tax"), RECEIPTS_TOPIC, receipt_schema())(
        {
            "event_id": event_id,
            "subscription": "social_security.enterprise",
            "department": "social_security",
            "entity_key": company.credit_code,
            "outcome": "rejected",
            "reason": "forged by tax",
            "topic": SOCIAL,
            "partition": delivery.partition,
            "offset": delivery.offset,
            "applied_at_ms": int(delivery.headers["source_ts"]) + 1,
        }
    )
    tax_key = signatures.receipt_key(settings.path("secrets"), "tax")
    producer = Producer(clients.config(settings.bootstrap, "tax"))
    producer.produce(
        RECEIPTS_TOPIC,
        key=event_id.encode(),
        value=value,
        headers=[(signatures.SIGNATURE_HEADER, signatures.sign(tax_key, value))],
    )
    assert producer.flush(30) == 0

    def refused(records: list[Record]) -> list[Record]:
        return [
            r
            for r in records
            if r.topic == AUDIT_TOPIC
            and r.value
            and r.value["kind"] == "receipt_refused"
            and r.value["event_id"] == event_id
        ]

    found = stack.read_until(trail, lambda rs: bool(refused(rs)), timeout=WAIT)
    (record,) = refused(found)
    assert record.value is not None
    assert record.value["actor"] == "unverified"
    assert record.value["department"] == "social_security"
    assert record.value["detail"]["reason"] == "signature does not match the department's key"
    assert not [
        r
        for r in found
        if r.topic == TRACE_TOPIC and r.value and r.value.get("reason") == "forged by tax"
    ]
