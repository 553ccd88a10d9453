"""Consumer lag: which department is falling behind, by how much, since when, and why.

For each subscription, every consumer group of its department (``<department>-*``) that
reads its delivery topic, per partition: the committed offset, the end a read_committed
consumer can reach, the lag in records and in seconds (the age of the oldest record not
yet consumed), and a status against the subscription's SLA: green within
``deliver_within``, yellow within ``receipt_within``, red beyond. The pipeline's own
groups (normalize, route, ledger) are reported beside them: a department that is behind
because the pipeline is behind is not the department's fault.

All Kafka calls are batched: one metadata call, one ``list_offsets`` for every partition,
one offsets request per group (all in flight at once), and one probe consumer that
fetches the first unconsumed record of every lagging partition for its timestamp. The
probe also tells a consumer that is really caught up from one that is one offset behind
only because a transaction marker follows its last record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec
from pydantic import BaseModel

from streams.contract.topics import (
    LAG_PROBE_GROUP,
    LEDGER,
    NORMALIZE,
    QUERIES_TOPIC,
    RECEIPTS_TOPIC,
    ROUTE,
    STAGES,
    changes_topic,
    delivery_topic,
    department_group_prefix,
    normalize_inputs,
    stage_group,
)
from streams.kafka import clients
from streams.kafka.admin import BrokerUnreachable
from streams.model.topology import Subscription, Topology

Status = Literal["green", "yellow", "red"]
PartitionState = Literal["committed", "no_commit", "topic_missing"]
GroupState = Literal["consuming", "no_commits", "no_group", "topic_missing"]
STATUS_ORDER: dict[Status, int] = {"green": 0, "yellow": 1, "red": 2}

PIPELINE_GROUPS = {stage_group(stage): stage for stage in STAGES}
PROBE_TIMEOUT_S = 5.0

log = logging.getLogger("govsync.lag")


class PartitionLag(BaseModel):
    """``lag`` counts offsets from the committed position to the end, as Kafka's own tools
    do; on transactional topics the commit markers in between count too."""

    topic: str
    partition: int
    committed: int | None  # None: the group has never committed on this partition
    end: int
    lag: int
    lag_seconds: float | None  # None where nothing is waiting
    state: PartitionState


class GroupLag(BaseModel):
    """One consumer group on one topic (for a subscription, or a pipeline stage)."""

    name: str  # the subscription id, or the pipeline stage
    department: str | None
    group: str | None  # None: no group of the department reads the topic
    topic: str
    state: GroupState
    lag: int
    lag_seconds: float | None
    status: Status
    partitions: list[PartitionLag]


class DepartmentLag(BaseModel):
    department: str
    name: str
    status: Status
    lag: int
    lag_seconds: float | None
    groups: int


class LagReport(BaseModel):
    at: datetime
    seconds_taken: float
    subscriptions: list[GroupLag]
    departments: list[DepartmentLag]
    pipeline: list[GroupLag]


# --- measuring -------------------------------------------------------------------------


def measure(
    admin: AdminClient,
    bootstrap: str,
    wanted: Mapping[str | None, Iterable[str]],
    now_ms: int | None = None,
    timeout: float = 10.0,
) -> dict[tuple[str | None, str], list[PartitionLag]]:
    """(group, topic) → the lag of every partition of ``topic`` for ``group``; group None
    stands for a reader that has not started yet (it would begin at the log start).

    Raises BrokerUnreachable when Kafka does not answer."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnreachable(f"Kafka is not reachable: {exc.args[0]}") from exc
    present = metadata.topics
    topics = sorted({t for ts in wanted.values() for t in ts if t in present})
    partitions = [TopicPartition(t, p) for t in topics for p in sorted(present[t].partitions)]
    ends, starts = _offsets(admin, partitions, timeout)
    committed = _committed(
        admin, {g: ts for g, ts in wanted.items() if g is not None}, present, timeout
    )

    result: dict[tuple[str | None, str], list[PartitionLag]] = {}
    for group, group_topics in wanted.items():
        for topic in group_topics:
            if topic not in present:
                result[(group, topic)] = [_missing(topic)]
                continue
            rows = []
            for p in sorted(present[topic].partitions):
                end, start = ends[(topic, p)], starts[(topic, p)]
                offset = committed.get((group, topic, p)) if group is not None else None
                position = max(offset if offset is not None else start, start)
                rows.append(
                    PartitionLag(
                        topic=topic,
                        partition=p,
                        committed=offset,
                        end=end,
                        lag=max(0, end - position),
                        lag_seconds=None,
                        state="committed" if offset is not None else "no_commit",
                    )
                )
            result[(group, topic)] = rows

    def position(row: PartitionLag) -> int:
        return row.end - row.lag

    waiting = {
        (r.topic, r.partition, position(r)) for rows in result.values() for r in rows if r.lag
    }
    oldest = _oldest_unconsumed(bootstrap, waiting, timeout)
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    for rows in result.values():
        for row in rows:
            found = oldest.get((row.topic, row.partition, position(row))) if row.lag else None
            if found is None:
                continue  # nothing waits, or the probe timed out (records lag stands)
            offset, timestamp_ms = found
            if offset is None:
                row.lag = 0  # only transaction markers follow the position
            else:
                row.lag_seconds = round(max(0.0, (now_ms - timestamp_ms) / 1000), 3)
    return result


def _missing(topic: str) -> PartitionLag:
    return PartitionLag(
        topic=topic,
        partition=-1,
        committed=None,
        end=0,
        lag=0,
        lag_seconds=None,
        state="topic_missing",
    )


def _offsets(
    admin: AdminClient, partitions: list[TopicPartition], timeout: float
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """The read_committed end and the log start of every partition: one call each."""
    if not partitions:
        return {}, {}
    found = []
    for spec in (OffsetSpec.latest(), OffsetSpec.earliest()):
        futures = admin.list_offsets(
            {tp: spec for tp in partitions},
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=timeout,
        )
        found.append({(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()})
    return found[0], found[1]


def _committed(
    admin: AdminClient,
    wanted: Mapping[str, Iterable[str]],
    topics: Mapping[str, object],
    timeout: float,
) -> dict[tuple[str, str, int], int]:
    """Committed offsets, every group's request in flight at once (the API takes one group
    per request)."""
    futures = {}
    for group, group_topics in wanted.items():
        partitions = [
            TopicPartition(topic, p)
            for topic in group_topics
            if topic in topics
            for p in topics[topic].partitions  # type: ignore[attr-defined]
        ]
        if partitions:
            request = [ConsumerGroupTopicPartitions(group, partitions)]
            futures[group] = admin.list_consumer_group_offsets(request, request_timeout=timeout)
    committed: dict[tuple[str, str, int], int] = {}
    for group, future in futures.items():
        for result in future.values():
            for tp in result.result().topic_partitions:
                if tp.offset >= 0:
                    committed[(group, tp.topic, tp.partition)] = tp.offset
    return committed


def _oldest_unconsumed(
    bootstrap: str, positions: set[tuple[str, int, int]], timeout: float
) -> dict[tuple[str, int, int], tuple[int | None, int]]:
    """For each (topic, partition, position): the first committed record from there, as
    (offset, timestamp ms), or (None, 0) where only transaction markers follow.

    One consumer; a partition read by groups at different positions is probed once per
    position, in rounds (a consumer holds each partition once)."""
    if not positions:
        return {}
    by_partition: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in sorted(positions):
        by_partition.setdefault((topic, partition), []).append(offset)
    consumer = Consumer(
        clients.config(
            bootstrap,
            **{
                "group.id": LAG_PROBE_GROUP,  # never committed
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                # One record per partition is all it needs, but after faults a position
                # can sit before a long run of aborted transactions that read_committed
                # skips: large fetches cross it in few round trips.
                "max.partition.fetch.bytes": 1024 * 1024,
                "fetch.max.bytes": 32 * 1024 * 1024,
            },
        )
    )
    found: dict[tuple[str, int, int], tuple[int | None, int]] = {}
    try:
        rounds = max(len(offsets) for offsets in by_partition.values())
        for index in range(rounds):
            # Each round its own time: a slow partition must not starve the next round.
            deadline = time.monotonic() + min(timeout, PROBE_TIMEOUT_S)
            probe = {
                (t, p): offsets[index]
                for (t, p), offsets in by_partition.items()
                if index < len(offsets)
            }
            assignment = [TopicPartition(t, p, o) for (t, p), o in probe.items()]
            consumer.assign(assignment)
            # A partition paused in an earlier round stays paused across unassign/assign.
            consumer.resume(assignment)
            done: set[tuple[str, int]] = set()
            while len(done) < len(probe) and time.monotonic() < deadline:
                for message in consumer.consume(1000, 0.2):
                    key = (message.topic(), message.partition())
                    if key in done:
                        continue
                    error = message.error()
                    if error is None:
                        found[(*key, probe[key])] = (message.offset(), message.timestamp()[1])
                    elif error.code() == KafkaError._PARTITION_EOF:
                        found[(*key, probe[key])] = (None, 0)
                    else:
                        continue
                    done.add(key)
                    consumer.pause([TopicPartition(*key)])
            if len(done) < len(probe):
                log.warning(
                    "lag: no record read in %.0fs at %s; their age is unknown",
                    min(timeout, PROBE_TIMEOUT_S),
                    ", ".join(f"{t}[{p}]@{o}" for (t, p), o in probe.items() if (t, p) not in done),
                )
            consumer.unassign()
    finally:
        consumer.close()
    return found


# --- the topology's view --------------------------------------------------------------


def _status(lag: int, lag_seconds: float | None, subscription: Subscription | None) -> Status:
    if lag == 0:
        return "green"
    if lag_seconds is None:
        return "yellow"  # behind, age unknown
    if subscription is None:
        return "green" if lag_seconds <= 5 else "yellow" if lag_seconds <= 60 else "red"
    if lag_seconds <= subscription.sla.deliver_within.total_seconds():
        return "green"
    if lag_seconds <= subscription.sla.receipt_within.total_seconds():
        return "yellow"
    return "red"


def _group_lag(
    name: str,
    department: str | None,
    group: str | None,
    topic: str,
    rows: list[PartitionLag],
    subscription: Subscription | None,
) -> GroupLag:
    lag = sum(r.lag for r in rows)
    ages = [r.lag_seconds for r in rows if r.lag_seconds is not None]
    lag_seconds = max(ages) if ages else None
    if any(r.state == "topic_missing" for r in rows):
        state: GroupState = "topic_missing"
    elif group is None:
        state = "no_group"
    elif all(r.state == "no_commit" for r in rows):
        state = "no_commits"
    else:
        state = "consuming"
    status = "red" if state == "topic_missing" else _status(lag, lag_seconds, subscription)
    return GroupLag(
        name=name,
        department=department,
        group=group,
        topic=topic,
        state=state,
        lag=lag,
        lag_seconds=lag_seconds,
        status=status,
        partitions=rows,
    )


def report(admin: AdminClient, bootstrap: str, topology: Topology) -> LagReport:
    """Every subscription's lag, per department group, and the pipeline's."""
    started = time.monotonic()
    try:
        listed = admin.list_consumer_groups(request_timeout=10).result()
    except KafkaException as exc:
        raise BrokerUnreachable(f"Kafka is not reachable: {exc.args[0]}") from exc
    existing = sorted(g.group_id for g in listed.valid)
    wanted: dict[str, list[str]] = {}
    for subscription in topology.subscriptions:
        prefix = department_group_prefix(subscription.department)
        for group in existing:
            if group.startswith(prefix):
                wanted.setdefault(group, []).append(delivery_topic(subscription))
    changes = [changes_topic(entity) for entity in topology.changed_entities]
    stage_topics = {
        stage_group(NORMALIZE): normalize_inputs(topology),
        stage_group(ROUTE): changes,
        stage_group(LEDGER): [
            *changes,
            *(delivery_topic(s) for s in topology.subscriptions),
            RECEIPTS_TOPIC,
            QUERIES_TOPIC,
        ],
    }
    for group, topics in stage_topics.items():
        if group in existing:
            wanted[group] = topics
    measured = measure(admin, bootstrap, wanted)

    subscriptions: list[GroupLag] = []
    sleeping: list[tuple[Subscription, str]] = []
    for subscription in topology.subscriptions:
        topic = delivery_topic(subscription)
        # The department's groups only: the ledger reads every delivery topic too.
        prefix = f"{subscription.department}-"
        readers = [g for g in existing if g.startswith(prefix) and (g, topic) in measured]
        # A group that has never committed on this topic is not really its reader, unless
        # it is the only one there is.
        reading = [g for g in readers if any(r.committed is not None for r in measured[(g, topic)])]
        for group in reading or readers:
            subscriptions.append(
                _group_lag(
                    subscription.id,
                    subscription.department,
                    group,
                    topic,
                    measured[(group, topic)],
                    subscription,
                )
            )
        if not readers:
            sleeping.append((subscription, topic))
    if sleeping:
        # Nobody reads these: what a reader would find, starting at the log start.
        unread = measure(admin, bootstrap, {None: [topic for _, topic in sleeping]})
        for subscription, topic in sleeping:
            subscriptions.append(
                _group_lag(
                    subscription.id,
                    subscription.department,
                    None,
                    topic,
                    unread[(None, topic)],
                    subscription,
                )
            )
    pipeline = [
        _group_lag(
            f"{PIPELINE_GROUPS[group]} ← {topic}",
            None,
            group,
            topic,
            measured[(group, topic)],
            None,
        )
        for group, topics in stage_topics.items()
        if group in wanted
        for topic in topics
    ]
    departments = []
    for department in sorted({g.department for g in subscriptions if g.department}):
        mine = [g for g in subscriptions if g.department == department]
        ages = [g.lag_seconds for g in mine if g.lag_seconds is not None]
        departments.append(
            DepartmentLag(
                department=department,
                name=topology.departments[department].name,
                status=max((g.status for g in mine), key=STATUS_ORDER.__getitem__),
                lag=sum(g.lag for g in mine),
                lag_seconds=max(ages) if ages else None,
                groups=len({g.group for g in mine if g.group}),
            )
        )
    return LagReport(
        at=datetime.now(UTC),
        seconds_taken=round(time.monotonic() - started, 3),
        subscriptions=subscriptions,
        departments=departments,
        pipeline=pipeline,
    )
