"""`govsync lag` on the real stack: a department consumer that is stopped falls behind by
exactly what Kafka says, ages, turns yellow past deliver_within, and catches up to zero
when it resumes; the pipeline's own groups are reported beside it."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from connectors.sinks import process_name
from govsync.ops import lag
from govsync.stack import supervision
from govsync.stack.background import start_app_process
from streams.kafka import admin, clients
from tests.integration.companies import TAX, deliver, govsync, new_company, wait_for
from tests.integration.conftest import Stack

GROUP = "tax-sink"
CHANGES = 12


def lag_report() -> dict[str, Any]:
    result = govsync("lag", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def tax_sink_lag(report: dict[str, Any]) -> dict[str, Any]:
    (entry,) = [g for g in report["subscriptions"] if g["group"] == GROUP and g["topic"] == TAX]
    return entry


def kafka_says(stack: Stack) -> dict[int, tuple[int, int]]:
    """Partition → (committed, end) for tax-sink, straight from Kafka, for comparison."""
    consumer = Consumer(
        clients.config(
            stack.settings.bootstrap,
            **{"group.id": GROUP, "isolation.level": "read_committed", "enable.auto.commit": False},
        )
    )
    try:
        partitions = consumer.list_topics(TAX, timeout=10).topics[TAX].partitions
        committed = consumer.committed([TopicPartition(TAX, p) for p in partitions], timeout=10)
        return {
            tp.partition: (tp.offset, consumer.get_watermark_offsets(tp, timeout=10)[1])
            for tp in committed
        }
    finally:
        consumer.close()


def test_a_stopped_consumer_lags_by_what_kafka_says_and_catches_up_when_resumed(
    stack: Stack,
) -> None:
    sink = process_name("tax")
    # Start from a sink that has caught up with whatever earlier tests delivered.
    wait_for(lambda: tax_sink_lag(lag_report())["lag"] == 0, "the tax sink to catch up")
    supervision.stop(stack.settings, sink)
    try:
        delivered = deliver(stack, [new_company() for _ in range(CHANGES)])
        first_delivered_ms = min(r.timestamp_ms for r in delivered)
        time.sleep(6)  # older than tax's deliver_within (5s), well within receipt_within (1h)

        report = lag_report()
        checked_at_ms = int(time.time() * 1000)
        entry = tax_sink_lag(report)
        truth = kafka_says(stack)
        by_partition = {p["partition"]: p for p in entry["partitions"]}
        for partition, (committed, end) in truth.items():
            row = by_partition[partition]
            assert (row["committed"], row["end"]) == (committed, end)
            if row["lag"]:
                assert row["lag"] == end - committed
        assert entry["lag"] >= CHANGES  # records, plus the transaction markers between them
        age = checked_at_ms / 1000 - first_delivered_ms / 1000
        assert age - 3 <= entry["lag_seconds"] <= age + 1, (entry["lag_seconds"], age)
        assert entry["status"] == "yellow" and entry["state"] == "consuming"
        (tax,) = [d for d in report["departments"] if d["department"] == "tax"]
        assert tax["status"] == "yellow" and tax["lag"] >= CHANGES
        assert {g["name"].split(" ")[0] for g in report["pipeline"]} == {
            "normalize",
            "route",
            "ledger",
        }
    finally:
        start_app_process(stack.settings, sink, ["sink", "tax"])

    def caught_up() -> bool:
        entry = tax_sink_lag(lag_report())
        return entry["lag"] == 0 and entry["status"] == "green"

    wait_for(caught_up, "the resumed tax sink to catch up")


def test_an_unreachable_broker_is_one_clear_line(stack: Stack) -> None:
    import os
    import subprocess

    from tests.integration.companies import GOVSYNC

    result = subprocess.run(
        [str(GOVSYNC), "lag"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GOVSYNC_KAFKA_PORT": "1"},
        check=False,
    )
    assert result.returncode == 3
    assert "Kafka is not reachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_groups_at_different_positions_on_one_partition_each_get_their_age(
    stack: Stack,
) -> None:
    """The probe reads each partition once per distinct position, in rounds; a partition
    probed in one round must be read again in the next (it was once left paused)."""
    client = admin.admin_client(stack.settings.bootstrap)
    topic, groups = f"test.lag.{uuid.uuid4().hex[:8]}", ["test-lag-older", "test-lag-newer"]
    client.create_topics([NewTopic(topic, 2, 1)])[topic].result()
    try:
        producer = Producer(clients.config(stack.settings.bootstrap))
        for n in range(20):
            producer.produce(topic, str(n).encode(), partition=n % 2)
            producer.flush(10)
            time.sleep(0.05)  # records of increasing age
        for group, position in zip(groups, (2, 8), strict=True):
            offsets = [TopicPartition(topic, p, position) for p in range(2)]
            for future in client.alter_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, offsets)]
            ).values():
                future.result()
        measured = lag.measure(client, stack.settings.bootstrap, {g: [topic] for g in groups})
        older = [r.lag_seconds for r in measured[(groups[0], topic)]]
        newer = [r.lag_seconds for r in measured[(groups[1], topic)]]
        assert None not in older and None not in newer, (older, newer)
        assert all(o > n for o, n in zip(older, newer, strict=True))
        assert [r.lag for r in measured[(groups[0], topic)]] == [8, 8]
    finally:
        client.delete_consumer_groups(groups)
        client.delete_topics([topic])
