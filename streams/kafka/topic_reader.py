"""Reading what is on a topic, for the demo, `govsync` read commands and the tests.

Reads committed records only (read_committed), without a consumer group: assignment
by explicit offsets, so looking never disturbs a subscriber.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from streams.contract.headers import as_dict, control
from streams.contract.topics import READER_GROUP
from streams.kafka import clients
from streams.kafka.admin import BrokerUnreachable

if TYPE_CHECKING:
    from streams.kafka.serde import ValueDeserializer

Offsets = dict[tuple[str, int], int]


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    value: dict[str, Any] | None
    headers: dict[str, str]


def reader(bootstrap: str, **extra: Any) -> Consumer:
    """A consumer that only looks: read committed, never commits, reports partition ends."""
    return Consumer(
        clients.config(
            bootstrap,
            **{
                "group.id": READER_GROUP,  # required by librdkafka; never committed
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                **extra,
            },
        )
    )


# A restore reads millions of small records: librdkafka's default prefetch (100,000
# messages per partition, 64 MiB) held hundreds of MiB in a worker restoring two stores.
RESTORE_PREFETCH = {"queued.min.messages": 10_000, "queued.max.messages.kbytes": 16_384}


# A read that stops at the partitions' ends learns it has reached one from an empty
# fetch, which the broker holds back for fetch.wait.max.ms (500 ms by default) in case
# records arrive: every bounded read paid that half second at least once.
BOUNDED_READ = {"fetch.wait.max.ms": 20}

RETRIABLE_FOR_S = 30.0
# A partition without a leader yet (a topic just created, a broker taking its partitions
# back): librdkafka does not flag these retriable on a watermark query, but they pass.
_SETTLING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}


def end_offsets(bootstrap: str, topics: Iterable[str]) -> Offsets:
    """The current end (high watermark) of every partition of ``topics``."""
    return {tp: high for tp, (_, high) in watermarks(bootstrap, topics).items()}


def log_starts(bootstrap: str, topics: Iterable[str]) -> Offsets:
    """The first offset retention has kept on every partition of ``topics``."""
    return {tp: low for tp, (low, _) in watermarks(bootstrap, topics).items()}


def watermarks(
    bootstrap: str,
    topics: Iterable[str] | Callable[[str], bool],
    consumer: Consumer | None = None,
) -> dict[tuple[str, int], tuple[int, int]]:
    """(log start, end) of every partition of ``topics`` (names, or a test of a name: then
    of the topics that exist and pass it), asked through ``consumer`` (a resident one:
    its connection and login are most of a one-off question's time) or a new one.

    A broker that has just restarted answers NOT_LEADER and the like while it takes its
    partitions back: such retriable errors are retried for a while before Kafka counts
    as unreachable."""
    names = None if callable(topics) else list(topics)
    deadline = time.monotonic() + RETRIABLE_FOR_S
    own = consumer is None
    consumer = consumer or reader(bootstrap)
    try:
        while True:
            try:
                metadata = consumer.list_topics(timeout=10)
                wanted = names if names is not None else sorted(filter(topics, metadata.topics))
                return {
                    (topic, partition): consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=10
                    )
                    for topic in wanted
                    for partition in metadata.topics[topic].partitions
                }
            except KafkaException as exc:
                error = exc.args[0]
                settling = error.retriable() or error.code() in _SETTLING
                if not settling or time.monotonic() > deadline:
                    raise BrokerUnreachable(f"Kafka is not reachable: {error}") from exc
                time.sleep(1)
    finally:
        if own:
            consumer.close()


class StalledRead(RuntimeError):
    """Nothing, not even a partition's end, arrived for a while: a broker gone quiet."""


def messages(
    bootstrap: str,
    start: Offsets,
    *,
    until: Callable[[list[Message]], bool] | None = None,
    timeout: float = 30.0,
) -> Iterator[Message]:
    """Raw messages from ``start`` on. Without ``until`` it stops at the end of every
    partition (``StalledRead`` if one is not reached within ``timeout``); with ``until``
    it keeps tailing until it returns true for what was read, or ``timeout``."""
    yield from _read(reader(bootstrap, **BOUNDED_READ), start, until, timeout)


def whole(bootstrap: str, topics: Iterable[str], *, timeout: float = 30.0) -> Iterator[Message]:
    """Every committed record now on those of ``topics`` that exist, from the log start to
    the end, read with one client (``beginning`` then ``messages`` connect twice: a
    command's start-up is mostly such connections)."""
    consumer = reader(bootstrap, **BOUNDED_READ)
    try:
        metadata = consumer.list_topics(timeout=10)
    except KafkaException as exc:
        consumer.close()
        raise BrokerUnreachable(f"Kafka is not reachable: {exc.args[0]}") from exc
    start = {
        (topic, partition): OFFSET_BEGINNING
        for topic in topics
        if topic in metadata.topics
        for partition in metadata.topics[topic].partitions
    }
    yield from _read(consumer, start, None, timeout)


def _read(
    consumer: Consumer,
    start: Offsets,
    until: Callable[[list[Message]], bool] | None,
    timeout: float,
) -> Iterator[Message]:
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in start.items()])
    remaining = set(start)
    seen: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if until is None and not remaining:
                return
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard((message.topic(), message.partition()))
                    continue
                raise RuntimeError(f"reading {message.topic()}: {error.str()}")
            seen.append(message)
            yield message
            if until is not None and until(seen):
                return
        if until is None:
            # A read to the end that stops short would answer from part of the topic.
            raise StalledRead(f"reading {sorted(remaining)}: no end within {timeout:g}s")
    finally:
        consumer.close()


def tails(
    bootstrap: str, topics: Iterable[str], window: int = 8
) -> dict[tuple[str, int], list[Message]]:
    """The last committed records of every partition of ``topics`` (see ``last_records``)."""
    marks = watermarks(bootstrap, topics)
    consumer = reader(bootstrap, **BOUNDED_READ)
    try:
        return last_records(consumer, marks, window)
    finally:
        consumer.close()


TAIL_GROWTH = 4
STALL_S = 10.0


def last_records(
    consumer: Consumer,
    marks: dict[tuple[str, int], tuple[int, int]],
    window: int,
    stall_s: float = STALL_S,
) -> dict[tuple[str, int], list[Message]]:
    """The last committed records of each partition in ``marks`` (its log start and end),
    oldest first, read with ``consumer`` (read_committed, reporting partition ends): those
    in its last ``window`` offsets or, where transaction markers and aborted batches fill
    them, from further back (the window grows ``TAIL_GROWTH`` x a round) until a record
    turns up or the log start is reached. Never a partition's whole history unless it is
    that short. Empty for a partition that holds none; ``StalledRead`` when nothing
    arrives for ``stall_s``."""
    found: dict[tuple[str, int], list[Message]] = {
        tp: [] for tp, (low, high) in marks.items() if low >= high
    }
    while unread := [tp for tp in marks if tp not in found]:
        starts = {tp: max(marks[tp][0], marks[tp][1] - window) for tp in unread}
        for tp, records in _to_ends(consumer, starts, stall_s).items():
            if records or starts[tp] == marks[tp][0]:
                found[tp] = records
        window *= TAIL_GROWTH
    return found


def _to_ends(
    consumer: Consumer, starts: Offsets, stall_s: float
) -> dict[tuple[str, int], list[Message]]:
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in starts.items()])
    read: dict[tuple[str, int], list[Message]] = {tp: [] for tp in starts}
    ended: set[tuple[str, int]] = set()
    try:
        while len(ended) < len(starts):
            message = consumer.poll(stall_s)
            if message is None:
                raise StalledRead(f"reading {sorted(set(starts) - ended)}: nothing for {stall_s}s")
            where = (message.topic(), message.partition())
            error = message.error()
            if error is None:
                read[where].append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                ended.add(where)
            else:
                raise RuntimeError(f"reading {where[0]}[{where[1]}]: {error.str()}")
    finally:
        consumer.unassign()
    return read


def read(
    bootstrap: str,
    decode: ValueDeserializer,
    start: Offsets,
    *,
    until: Callable[[list[Record]], bool] | None = None,
    timeout: float = 30.0,
) -> Iterator[Record]:
    """Decoded records from ``start`` on (see ``messages`` for when it stops)."""
    seen: list[Record] = []

    def enough(_: list[Message]) -> bool:
        return until is not None and until(seen)

    for message in messages(
        bootstrap, start, until=enough if until is not None else None, timeout=timeout
    ):
        if control(message.headers()) is not None:
            continue  # a request to the pipeline (govsync replay), not data
        record = Record(
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            timestamp_ms=message.timestamp()[1],
            key=_key_text(decode, message.topic(), message.key()),
            value=decode(message.topic(), message.value()),
            headers=as_dict(message.headers()),
        )
        seen.append(record)
        yield record


def _key_text(decode: ValueDeserializer, topic: str, key: bytes | None) -> str | None:
    """UTF-8 entity keys as they are; Avro keys (Debezium's primary-key struct) as JSON."""
    if key is None:
        return None
    if key[:1] == b"\x00" and len(key) > 5:
        return json.dumps(decode.key(topic, key), sort_keys=True, default=str)
    return key.decode(errors="replace")


class ChangelogTail:
    """The committed records of a changelog's partitions from their starts (None: the log
    start) to their ends as they stand when reading begins, a batch per ``read``: for
    restoring state in steps short enough to run between a consumer's polls. One consumer
    reads every partition; it connects on the first ``read``.

    It never stops early: a partly restored state is silently wrong. There is no limit on
    the whole read, which grows with the tail; it fails only when ``read`` has waited
    ``stall_s`` in all without a record while an end is not reached.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        starts: Mapping[int, int | None],
        batch: int = 5000,
        stall_s: float = 60.0,
    ) -> None:
        self.topic = topic
        self._bootstrap = bootstrap
        self._starts = dict(starts)
        self._batch = batch
        self._stall_s = stall_s
        self._idle_s = 0.0
        self._consumer: Consumer | None = None
        self.remaining: set[int] = set(starts)  # partitions whose end is not reached yet

    def read(self, timeout: float = 1.0) -> dict[int, list[Message]]:
        """The next records by partition (waiting up to ``timeout``); empty at the end."""
        consumer = self._consumer or self._open()
        if not self.remaining:
            return {}
        records: dict[int, list[Message]] = {}
        began = time.monotonic()
        for message in consumer.consume(self._batch, timeout):
            error = message.error()
            if error is None:
                records.setdefault(message.partition(), []).append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                self.remaining.discard(message.partition())
            else:
                raise RuntimeError(f"reading {self.topic}: {error.str()}")
        if records:
            self._idle_s = 0.0
        elif self.remaining:
            self._idle_s += time.monotonic() - began
            if self._idle_s > self._stall_s:
                raise TimeoutError(
                    f"{self.topic} partitions {sorted(self.remaining)}: no record for "
                    f"{self._stall_s:.0f}s before their end"
                )
        return records

    def _open(self) -> Consumer:
        consumer = self._consumer = reader(self._bootstrap, **RESTORE_PREFETCH)
        assignment = []
        for partition, start in self._starts.items():
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=10
            )
            first = low if start is None else min(max(start, low), high)
            if first < high:
                assignment.append(TopicPartition(self.topic, partition, first))
        self.remaining = {tp.partition for tp in assignment}
        if assignment:
            consumer.assign(assignment)
        return consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def beginning(bootstrap: str, topics: Iterable[str]) -> Offsets:
    """Offset 0 on every partition (an offset before the log start resets to the earliest)."""
    return dict.fromkeys(end_offsets(bootstrap, topics), 0)


def since(bootstrap: str, topics: Iterable[str], timestamp_ms: int) -> Offsets:
    """The first offset at or after ``timestamp_ms`` on every partition of ``topics`` (the
    partition's end where nothing is that recent)."""
    ends = end_offsets(bootstrap, topics)
    consumer = reader(bootstrap)
    try:
        found = consumer.offsets_for_times(
            [TopicPartition(t, p, timestamp_ms) for t, p in ends], timeout=10
        )
    finally:
        consumer.close()
    return {
        (tp.topic, tp.partition): tp.offset if tp.offset >= 0 else ends[(tp.topic, tp.partition)]
        for tp in found
    }
