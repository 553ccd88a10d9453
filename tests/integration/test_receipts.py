"""Receipts: every department that applies a delivery says so on govsync.receipts, under
the trace of the change, as its own Kafka principal."""

from __future__ import annotations

from streams.contract import headers
from streams.contract.topics import RECEIPTS_TOPIC
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
