"""History generated straight into Kafka, fast: the benches need millions of records and
SQL through Debezium would take hours to make them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from confluent_kafka import Producer

from streams.kafka import clients

Record = tuple[int, bytes, bytes]  # partition, key, value
Headers = list[tuple[str, bytes]]

USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
REGIONS = ("110105", "310115", "440305", "320106", "330106", "350203", "370202", "420106")
SCRAMBLE = 1_000_003  # coprime to 31: spreads consecutive k over the USCC's serial part


def produce(
    bootstrap: str, topic: str, records: Iterable[Record | tuple[int, bytes, bytes, Headers]]
) -> int:
    """Write ``records`` (with headers, when they have a fourth member) to their partitions,
    large batches, acknowledged; returns how many."""
    producer = Producer(
        clients.config(bootstrap, **{"linger.ms": 50, "batch.size": 1 << 20, "acks": "all"})
    )
    count = 0
    for partition, key, value, *headers in records:
        while True:
            try:
                producer.produce(
                    topic, value, key, partition=partition, headers=headers[0] if headers else None
                )
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


def uscc(k: int) -> str:
    """An 18-character unified social credit code, valid check character included."""
    serial, n = "", (k * SCRAMBLE) % 31**7
    for _ in range(7):
        n, digit = divmod(n, 31)
        serial = USCC_CHARS[digit] + serial
    body = f"91{REGIONS[k % len(REGIONS)]}MA{serial}"
    total = sum(USCC_CHARS.index(c) * w for c, w in zip(body, USCC_WEIGHTS, strict=True))
    return body + USCC_CHARS[(31 - total % 31) % 31]


def resident_id(k: int) -> str:
    """An 18-character resident ID (region, birth date, serial, ISO 7064 check)."""
    region, rest = REGIONS[k % len(REGIONS)], k // len(REGIONS)
    born = date(1950, 1, 1) + timedelta(days=(rest // 1000) * 37 % 20_000)
    body = f"{region}{born:%Y%m%d}{rest % 1000:03d}"
    total = sum(int(c) * w for c, w in zip(body, ID_WEIGHTS, strict=True))
    return body + "10X98765432"[total % 11]
