"""Exactly-once consume -> process -> produce, on confluent-kafka's transactional API.

Each batch is one Kafka transaction holding the stage's outputs *and* its input
offsets (KIP-447: fenced by consumer-group generation, so one transactional.id per
stage instance suffices). A crash leaves an open transaction that the restarted
instance aborts in ``init_transactions``; consumers read committed only, so nothing
half-done is ever seen, and the batch is processed again from the committed offsets.

Faust's own exactly_once was tried first and left transactions open indefinitely on
this stack (records invisible to read_committed consumers); docs/architecture.md has
the evidence.

Failures are handled crash-only: any error the transaction cannot recover from ends
the session, and a fresh one (new consumer, new producer, state restored) begins.

State is restored between polls, not in the assignment callback (``restoring``): the
partitions still being restored stay paused meanwhile.

Records the client hands over twice in one session, or from a partition no longer
assigned, are dropped before processing (``Fetched``): committed with this member's
current group generation, they would be accepted, and processed twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.contract.topics import stage_group, stage_member
from streams.engine import metrics
from streams.engine.restoring import Hold, Holding
from streams.kafka import clients

log = logging.getLogger("govsync.worker")

Headers = list[tuple[str, bytes]]


class Output(NamedTuple):
    """A record a stage writes. A named tuple, not a dataclass: the route builds four for
    every change, and a frozen dataclass costs twice as much to build."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int | None = None  # None: partition by key
    # A record of the stage's own state: its offset is reported to ``committed`` so a
    # durable store can checkpoint what it reflects.
    changelog: bool = False


Produced = Mapping[tuple[str, int], int]
"""(topic, partition) -> the last offset a committed transaction wrote there (changelogs)."""
NOTHING: Produced = MappingProxyType({})


class Stage(Protocol):
    """A processing step: pure per-record logic plus the state it keeps."""

    name: str
    topics: Sequence[str]

    def assigned(self, partitions: list[TopicPartition]) -> Hold | None:
        """Take ``partitions`` over; those it cannot process yet (None: it can all)."""
        ...

    def revoked(self, partitions: list[TopicPartition]) -> None: ...

    def process(self, message: Message) -> list[Output]: ...

    def committed(self, produced: Produced = NOTHING) -> None: ...

    def aborted(self) -> None: ...


class Fetched:
    """The next offset expected on each assigned partition, so a record the client returns
    again (librdkafka's batch consume has known issues around rebalance, seek and pause)
    or one from a partition another member now owns is dropped, with a warning."""

    def __init__(self, stage: str) -> None:
        self._stage = stage
        self._assigned: set[tuple[str, int]] = set()
        self._next: dict[tuple[str, int], int] = {}

    def assigned(self, partitions: list[TopicPartition]) -> None:
        self._assigned = {(tp.topic, tp.partition) for tp in partitions}
        self._next.clear()  # the client reads each from its committed offset again

    def revoked(self) -> None:
        self._assigned = set()
        self._next.clear()

    def rewound(self, first: Mapping[tuple[str, int], int]) -> None:
        """The consumer was sought back to ``first`` (an aborted batch)."""
        self._next.update(first)

    def fresh(self, messages: list[Message]) -> list[Message]:
        kept = []
        dropped: dict[tuple[str, int], list[int]] = {}
        for message in messages:
            where = (message.topic(), message.partition())
            offset = message.offset()
            expected = self._next.get(where)
            if where not in self._assigned or (expected is not None and offset < expected):
                dropped.setdefault(where, []).append(offset)
                continue
            self._next[where] = offset + 1
            kept.append(message)
        for (topic, partition), offsets in dropped.items():
            log.warning(
                "%s: dropped %d records of %s[%d] (offsets %d-%d) the consumer returned %s",
                self._stage,
                len(offsets),
                topic,
                partition,
                min(offsets),
                max(offsets),
                "again" if (topic, partition) in self._assigned else "after it was revoked",
            )
        return kept


class Watchdog:
    """When each stage entered its current transaction call, so a hung one can be noticed.

    librdkafka can block in send_offsets_to_transaction past its timeout, forever, after
    a broker restart (confluentinc/librdkafka #5456, #5511, open); no Python code can
    interrupt that call, so the worker checks here and restarts itself. Each call has its
    own timeout, so one still running a little past it is hung, not slow.
    """

    def __init__(self) -> None:
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def busy(self, stage: str) -> Iterator[None]:
        with self._lock:
            self._since[stage] = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._since.pop(stage, None)

    def stalled(self, limit: float) -> dict[str, float]:
        """Stage -> seconds spent in its current transaction, for those beyond ``limit``."""
        now = time.monotonic()
        with self._lock:
            return {s: now - t for s, t in self._since.items() if now - t > limit}


@dataclass(frozen=True)
class EngineConfig:
    bootstrap: str
    instance: str = "0"
    # Records per transaction at most. Each commit writes a marker to every partition the
    # transaction touched (the route touches dozens), so bigger batches cost the broker
    # less per record; under light load a batch is whatever arrived within poll_timeout.
    batch_size: int = 2000
    poll_timeout: float = 0.1
    restart_backoff: float = 2.0
    # Without a bound, commit/abort block until the producer is fenced (minutes) when the
    # broker restarts mid-transaction; on expiry the session ends and a new one starts.
    transaction_timeout: float = 10.0
    # Whom the stage's clients log in as (default: the process's principal), and
    # consumer settings of its own.
    principal: str | None = None
    consumer: Mapping[str, Any] = field(default_factory=dict)


def run(stage: Stage, config: EngineConfig, stop: threading.Event, watchdog: Watchdog) -> None:
    """Process until ``stop`` is set, starting a new session after any failure."""
    while not stop.is_set():
        try:
            _session(stage, config, stop, watchdog)
        except Exception:
            log.exception("%s: session ended; starting a new one", stage.name)
            stage.aborted()
            stop.wait(config.restart_backoff)


def _session(stage: Stage, config: EngineConfig, stop: threading.Event, watchdog: Watchdog) -> None:
    producer = Producer(
        clients.config(
            config.bootstrap,
            config.principal,
            **{
                "transactional.id": stage_member(stage.name, config.instance),
                "linger.ms": 5,
                "transaction.timeout.ms": 60000,
            },
        )
    )
    # Fences a predecessor with the same id and aborts its open transaction, so the
    # changelogs the stage restores from are settled before it reads them.
    producer.init_transactions(60)
    consumer = Consumer(
        clients.config(
            config.bootstrap,
            config.principal,
            **{
                "group.id": stage_group(stage.name),
                # Static membership: a restarted instance takes its partitions back at
                # once instead of waiting for its dead predecessor's session to expire.
                "group.instance.id": stage_member(stage.name, config.instance),
                "session.timeout.ms": 10000,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **config.consumer,
            },
        )
    )

    holding = Holding(stage.name, consumer)
    fetched = Fetched(stage.name)

    def on_assign(_: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: assigned %s", stage.name, _describe(partitions))
        # Assigning here replaces confluent-kafka's own assign after the callback, so the
        # partitions the stage holds are paused before anything is fetched for them.
        consumer.assign(partitions)
        fetched.assigned(partitions)
        holding.assigned(partitions, stage.assigned(partitions))

    def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: revoked %s", stage.name, _describe(partitions))
        fetched.revoked()
        holding.close()
        stage.revoked(partitions)

    # Eager rebalancing (the default assignors): every assignment is the whole of it.
    consumer.subscribe(list(stage.topics), on_assign=on_assign, on_revoke=on_revoke)
    try:
        while not stop.is_set():
            # While restoring, poll without waiting: the restore's step is the wait.
            timeout = 0 if holding.restoring else config.poll_timeout
            batch = consumer.consume(config.batch_size, timeout)
            messages = fetched.fresh([m for m in batch if _is_record(m)])
            if messages:
                first = _transact(
                    stage, producer, consumer, messages, config.transaction_timeout, watchdog
                )
                fetched.rewound(first)
            holding.step()
    finally:
        holding.close()
        consumer.close()
        producer.flush(10)


def _transact(
    stage: Stage,
    producer: Producer,
    consumer: Consumer,
    messages: list[Message],
    timeout: float,
    watchdog: Watchdog,
) -> Mapping[tuple[str, int], int]:
    """Process ``messages`` in one transaction; after an abort that can be redone, the
    offsets the consumer was sought back to (else nothing)."""

    def call(method: Callable[..., None], *args: Any) -> None:
        with watchdog.busy(stage.name):
            method(*args, timeout)

    producer.begin_transaction()
    produced: dict[tuple[str, int], int] = {}

    def delivered(error: KafkaError | None, record: Message) -> None:
        if error is None:
            where = (record.topic(), record.partition())
            produced[where] = max(produced.get(where, -1), record.offset())

    try:
        next_offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            for out in stage.process(message):
                _produce(producer, out, delivered if out.changelog else None)
            next_offsets[(message.topic(), message.partition())] = message.offset() + 1
        call(
            producer.send_offsets_to_transaction,
            [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()],
            consumer.consumer_group_metadata(),
        )
        call(producer.commit_transaction)
        producer.poll(0)  # serve the last delivery reports: the changelog offsets
    except Exception as exc:
        metrics.TRANSACTIONS.labels(stage.name, "aborted").inc()
        with contextlib.suppress(KafkaException):
            call(producer.abort_transaction)
        stage.aborted()
        first = _rewind(consumer, messages)
        if isinstance(exc, KafkaException) and exc.args[0].txn_requires_abort():
            log.warning("%s: transaction aborted (%s); redoing the batch", stage.name, exc)
            return first
        raise
    stage.committed(produced)
    metrics.TRANSACTIONS.labels(stage.name, "committed").inc()
    return {}  # committed: nothing was sought back


def _produce(
    producer: Producer, out: Output, on_delivery: Callable[[Any, Message], None] | None
) -> None:
    kwargs: dict[str, Any] = {} if out.partition is None else {"partition": out.partition}
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(out.topic, out.value, out.key, headers=out.headers, **kwargs)
            return
        except BufferError:
            producer.poll(0.05)  # local queue full: let deliveries drain


def _rewind(consumer: Consumer, messages: list[Message]) -> dict[tuple[str, int], int]:
    """Seek back to the first record of the aborted batch on every partition it touched."""
    first: dict[tuple[str, int], int] = {}
    for message in messages:
        first.setdefault((message.topic(), message.partition()), message.offset())
    for (topic, partition), offset in first.items():
        consumer.seek(TopicPartition(topic, partition, offset))
    return first


def _is_record(message: Message) -> bool:
    error = message.error()
    if error is None:
        return True
    if error.fatal() or error.code() == KafkaError._FATAL:
        # E.g. a static member fenced after a broker restart: this consumer will never
        # deliver again. End the session; the next one starts with a new consumer. The
        # consumer reports that fence as code _FATAL with fatal() false, so both count.
        raise KafkaException(error)
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer: %s", error)
    return False


def _describe(partitions: list[TopicPartition]) -> str:
    topics: dict[str, list[int]] = {}
    for tp in partitions:
        topics.setdefault(tp.topic, []).append(tp.partition)
    return ", ".join(f"{t}{sorted(p)}" for t, p in sorted(topics.items())) or "nothing"
