"""The ledger given records its chain already holds chains none of them again: what a
standby's ledger meets when it resumes from MirrorMaker's translated offsets and reads a
tail a second time (docs/operating.md, "The standby node").

A second ledger, in this process, reads the real chain tails from ``govsync.audit`` and
is handed the very delivery records the stack's own ledger has just chained. It leaves
the stack's worker running and writes nothing: the outputs it would write are asserted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from streams.contract import signatures
from streams.contract.topics import AUDIT_TOPIC
from streams.kafka import topic_reader
from streams.kafka.serde import RegistryCodec, registry_client
from streams.stages.ledger import LedgerStage
from tests.integration.companies import SOCIAL, TAX, WAIT, insert_many, new_company
from tests.integration.conftest import Stack

pytestmark = pytest.mark.stack

COMPANIES = 3


@pytest.fixture()
def raw(stack: Stack) -> Iterator[Consumer]:
    consumer = topic_reader.reader(stack.settings.bootstrap)
    try:
        yield consumer
    finally:
        consumer.close()


def fetch(consumer: Consumer, records: list[topic_reader.Record]) -> list[Message]:
    """The records at these positions, as the ledger's consumer gets them (undecoded)."""
    messages = []
    for record in records:
        consumer.assign([TopicPartition(record.topic, record.partition, record.offset)])
        message = consumer.poll(10)
        assert message is not None and message.error() is None, f"{record.topic} unreadable"
        assert message.offset() == record.offset
        messages.append(message)
    consumer.unassign()
    return messages


def test_deliveries_read_again_are_not_chained_twice(stack: Stack, raw: Consumer) -> None:
    companies = [new_company() for _ in range(COMPANIES)]
    keys = {c.credit_code for c in companies}
    start = stack.offsets(TAX, SOCIAL, AUDIT_TOPIC)
    insert_many(stack, companies)

    def delivered(records: list[topic_reader.Record]) -> list[topic_reader.Record]:
        return [r for r in records if r.topic in (TAX, SOCIAL) and r.key in keys]

    def chained(records: list[topic_reader.Record]) -> list[topic_reader.Record]:
        return [
            r
            for r in records
            if r.topic == AUDIT_TOPIC
            and r.value
            and r.value["kind"] == "delivery"
            and r.value["entity_key"] in keys
        ]

    # Tax and social security each receive every registration, and the ledger chains each.
    records = stack.read_until(
        start,
        lambda rs: len(delivered(rs)) >= 2 * COMPANIES and len(chained(rs)) >= 2 * COMPANIES,
        timeout=WAIT,
    )
    assert len(delivered(records)) == 2 * COMPANIES
    assert sorted(
        (r.value["department"], r.value["entity_key"]) for r in chained(records) if r.value
    ) == sorted((department, key) for department in ("tax", "social_security") for key in keys)

    settings = stack.settings
    ledger = LedgerStage(
        stack.topology,
        RegistryCodec(registry_client(settings)),
        settings.bootstrap,
        stack.topology.kafka.partitions,
        lambda department: signatures.receipt_key(settings.path("secrets"), department),
    )
    messages = fetch(raw, delivered(records))
    outputs = [output for message in messages for output in ledger.process(message)]
    assert outputs == [], f"{len(outputs)} records would be written again"
