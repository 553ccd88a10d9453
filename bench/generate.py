"""History generated straight into Kafka, fast: the benches need millions of records and
SQL through Debezium would take hours to make them."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Producer

from streams.kafka import clients

Record = tuple[int, bytes, bytes]  # partition, key, value


def produce(bootstrap: str, topic: str, records: Iterable[Record]) -> int:
    """Write ``records`` to their partitions, large batches, acknowledged; returns how many."""
    producer = Producer(
        clients.config(bootstrap, **{"linger.ms": 50, "batch.size": 1 << 20, "acks": "all"})
    )
    count = 0
    for partition, key, value in records:
        while True:
            try:
                producer.produce(topic, value, key, partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 100_000 == 0:
            producer.poll(0)
    unsent = producer.flush(300)
    if unsent:
        raise RuntimeError(f"{unsent} generated records to {topic} were not acknowledged")
    return count
