"""Changes that reach Kafka twice reach departments once.

Debezium re-emits what it captured after its last committed offset when its connector
restarts, and a re-snapshot reads every row again. Both arrive as new records on
``changes.enterprise`` under the event_id they had the first time; the route stage's
dedup store must drop them, so every delivery topic holds each event_id exactly once.
"""

from __future__ import annotations

import time
from collections import Counter

from confluent_kafka import Consumer, TopicPartition

from connectors.sources import debezium
from streams.contract.topics import changes_topic
from streams.kafka import clients, topic_reader
from streams.kafka.topic_reader import Offsets
from tests.integration.companies import insert, new_company, update
from tests.integration.conftest import Stack

CONNECTOR = debezium.connector_name("market_regulation")
DELIVERIES = ("deliver.tax.enterprise", "deliver.social_security.enterprise")
CHANGES = changes_topic("enterprise")


def delivered_ids(stack: Stack, start: Offsets | None = None) -> dict[str, Counter[str]]:
    """event_id -> how often it is on each delivery topic (from ``start``, or all of it)."""
    begin = start or topic_reader.beginning(stack.settings.bootstrap, DELIVERIES)
    counts: dict[str, Counter[str]] = {topic: Counter() for topic in DELIVERIES}
    for record in topic_reader.read(stack.settings.bootstrap, stack.decode, begin, timeout=120):
        counts[record.topic][record.headers["event_id"]] += 1
    return counts


def wait_until_routed(stack: Stack, timeout: float = 180.0) -> None:
    """The route stage has committed everything that is on changes.enterprise.

    End offsets of a transactional topic sit past its commit markers, so "caught up"
    means: reading committed records from the group's offsets finds nothing.
    """
    probe = Consumer(clients.config(stack.settings.bootstrap, **{"group.id": "govsync-route"}))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ends = stack.offsets(CHANGES)
            committed = probe.committed([TopicPartition(t, p) for t, p in ends], timeout=10)
            start = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in committed}
            pending = list(topic_reader.messages(stack.settings.bootstrap, start, timeout=30))
            if not pending:
                return
            time.sleep(1)
    finally:
        probe.close()
    raise AssertionError(f"route did not catch up with {CHANGES} within {timeout}s")


def wait_until_running(stack: Stack, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not debezium.is_running(stack.settings, CONNECTOR):
        assert time.monotonic() < deadline, f"{CONNECTOR} is not running after {timeout}s"
        time.sleep(1)


def test_resnapshot_redelivers_no_unchanged_row(stack: Stack) -> None:
    wait_until_routed(stack)
    before = delivered_ids(stack)
    start = stack.offsets(CHANGES, *DELIVERIES)
    rows = stack.sql("market_regulation", "SELECT count(*) FROM enterprise")[0][0]

    debezium.resnapshot(stack.settings, CONNECTOR)
    wait_until_running(stack)

    def resnapshotted(records: list) -> bool:
        snapshots = [r for r in records if r.topic == CHANGES and r.value["kind"] == "snapshot"]
        return len(snapshots) >= rows * 0.9  # rows that fail normalization go to the DLQ

    records = stack.read_until({k: v for k, v in start.items() if k[0] == CHANGES}, resnapshotted)
    wait_until_routed(stack)
    snapshot_ids = {r.headers["event_id"] for r in records if r.value["kind"] == "snapshot"}
    after = delivered_ids(stack, {k: v for k, v in start.items() if k[0] != CHANGES})

    already = set().union(*(set(c) for c in before.values()))
    unchanged = snapshot_ids & already
    assert unchanged, "the re-snapshot should re-read rows that were delivered before"
    for topic in DELIVERIES:
        redelivered = unchanged & set(after[topic])
        assert not redelivered, f"{topic}: {len(redelivered)} unchanged rows delivered again"
        assert all(n == 1 for n in after[topic].values()), f"{topic}: duplicate event_id"
        assert not set(after[topic]) & set(before[topic]), f"{topic}: event_id delivered twice"


def test_connector_restart_delivers_each_change_once(stack: Stack) -> None:
    companies = [new_company() for _ in range(10)]
    start = stack.offsets(*DELIVERIES)
    for company in companies:
        insert(stack, company)
    for round_ in range(3):
        for company in companies:
            update(stack, company.credit_code, "ent_name = %s", (f"{company.ent_name}-{round_}",))
        if round_ == 1:
            debezium.restart(stack.settings, CONNECTOR)
    wait_until_running(stack)
    keys = {c.credit_code for c in companies}

    def all_arrived(records: list) -> bool:
        finals = {
            (r.topic, r.key)
            for r in records
            if r.key in keys and r.value["after"]["name"].endswith("-2")
        }
        return len(finals) == len(keys) * len(DELIVERIES)

    records = stack.read_until(start, all_arrived)
    for topic in DELIVERIES:
        ids = Counter(r.headers["event_id"] for r in records if r.topic == topic and r.key in keys)
        assert ids and all(n == 1 for n in ids.values()), f"{topic}: {ids.most_common(3)}"
        for company in companies:
            names = [
                r.value["after"]["name"]
                for r in records
                if r.topic == topic and r.key == company.credit_code
            ]
            assert names == [company.ent_name, *(f"{company.ent_name}-{n}" for n in range(3))]
