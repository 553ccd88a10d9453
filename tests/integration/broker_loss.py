"""A scratch three-node Kafka cluster loses a node under a transactional producer.

Run by tests/integration/test_brokers.py as ``python -m tests.integration.broker_loss`` with
the scratch cluster's ``GOVSYNC_*`` settings in its environment (every Kafka client reads
its login from there), it prints one JSON line of findings and leaves nothing running.

Steps: start the cluster with the stack's own code (`govsync.stack.kafka`), create two of the
topology's topics with govsync's admin code (their replication factor left to the
cluster), produce keyed records in transactions (acks=all), kill -9 the leader of the
first partition and hold it down for ``OUTAGE_S`` while producing on, start it again,
produce a little more, then read everything back read_committed.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from govsync.stack import embedded, kafka, supervision
from streams.config.settings import Settings
from streams.contract.topics import TopicSpec, topic_specs
from streams.kafka import admin, clients, topic_reader
from streams.model.topology import Topology, load_topology

KEYS = 24
BATCH = 10  # records per transaction
RATE = 100.0  # records per second
BEFORE_S, OUTAGE_S, AFTER_S = 6.0, 20.0, 6.0
# The cluster notices a killed node after broker.session.timeout.ms (9 s) and only then
# moves its partitions' leadership: writes to those wait that long. The outage's last
# seconds are well past that.
LATE_S = 5.0
TOPICS = ("changes.enterprise", "deliver.tax.enterprise")  # two of the topology's
DATA_TOPIC = TOPICS[1]


@dataclass
class Produced:
    """What the producer had committed, and when (epoch seconds of each commit)."""

    next_seq: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    commits: list[float] = field(default_factory=list)
    aborted: int = 0  # transactions aborted and sent again
    error: BaseException | None = None


def cluster_default_specs(topology: Topology) -> list[TopicSpec]:
    """``TOPICS``' specs as topic_specs gives them when the topology names no replication
    factor (topology.yaml names 1 for the one-broker stack)."""
    unnamed = topology.model_copy(
        update={"kafka": topology.kafka.model_copy(update={"replication_factor": None})}
    )
    return [spec for spec in topic_specs(unnamed) if spec.name in TOPICS]


def replication(client: AdminClient, topics: tuple[str, ...]) -> dict[str, Any]:
    """Per topic: the replica count of each partition and min.insync.replicas."""
    metadata = listed(client, topics)
    found: dict[str, Any] = {}
    for topic in topics:
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        config = client.describe_configs([resource])[resource].result(30)
        found[topic] = {
            "replicas": sorted({len(p.replicas) for p in metadata[topic].partitions.values()}),
            "min_insync": config["min.insync.replicas"].value,
        }
    return found


def listed(client: AdminClient, topics: tuple[str, ...], timeout: float = 15.0) -> dict:
    """The cluster's topic metadata once it lists ``topics``: a broker learns of a topic
    the controller has just created a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        metadata = client.list_topics(timeout=10).topics
        if set(topics) <= set(metadata) or time.monotonic() > deadline:
            return metadata
        time.sleep(0.5)


def commit(producer: Producer, records: list[tuple[str, str]]) -> int:
    """Produce ``records`` in one transaction until it commits; the aborts it took. A
    transaction the broker loss makes abortable is aborted and its records sent again in
    a new one (read_committed readers never see the aborted copies)."""
    aborts = 0
    while True:
        producer.begin_transaction()
        for key, value in records:
            producer.produce(DATA_TOPIC, value.encode(), key.encode())
        try:
            _commit_retrying(producer)
            return aborts
        except KafkaException as exc:
            if not exc.args[0].txn_requires_abort():
                raise
            producer.abort_transaction(60)
            aborts += 1


def _commit_retrying(producer: Producer) -> None:
    """Commit; a retriable failure (a timeout while leaders move) is retried as is."""
    while True:
        try:
            producer.commit_transaction(60)
            return
        except KafkaException as exc:
            if not exc.args[0].retriable():
                raise


def produce(settings: Settings, produced: Produced, stop: threading.Event) -> None:
    """Paced transactions of ``BATCH`` records round-robin over ``KEYS`` keys, each value
    ``<key>:<seq>`` with a per-key sequence, until ``stop``."""
    producer = Producer(
        clients.config(
            settings.bootstrap, **{"transactional.id": "broker-loss-probe", "linger.ms": 5}
        )
    )
    try:
        producer.init_transactions(60)
        began = time.monotonic()
        sent = 0
        while not stop.is_set():
            records = []
            for n in range(sent, sent + BATCH):
                key = f"k{n % KEYS:02d}"
                records.append((key, f"{key}:{produced.next_seq[key]}"))
                produced.next_seq[key] += 1
            produced.aborted += commit(producer, records)
            produced.commits.append(time.time())
            sent += BATCH
            time.sleep(max(0.0, began + sent / RATE - time.monotonic()))
    except BaseException as exc:
        produced.error = exc
    finally:
        producer.flush(30)


def read_back(settings: Settings) -> dict[str, list[int]]:
    """Every committed record of the data topic: per key, the sequence numbers in order."""
    seqs: dict[str, list[int]] = defaultdict(list)
    start = topic_reader.beginning(settings.bootstrap, [DATA_TOPIC])
    for message in topic_reader.messages(settings.bootstrap, start, timeout=60):
        key, seq = message.value().decode().split(":")
        seqs[key].append(int(seq))
    return seqs


def under_replicated(client: AdminClient, topics: tuple[str, ...]) -> int:
    metadata = listed(client, topics)
    return sum(
        len(p.isrs) < len(p.replicas)
        for topic in topics
        for p in metadata[topic].partitions.values()
    )


def scenario(settings: Settings) -> dict[str, Any]:
    began = time.monotonic()
    kafka.start(settings)
    findings: dict[str, Any] = {"started_s": round(time.monotonic() - began, 1)}
    client = admin.admin_client(settings.bootstrap)
    admin.ensure_topics(client, cluster_default_specs(load_topology(settings.topology)))
    findings["topics"] = replication(client, TOPICS)

    produced, stop = Produced(), threading.Event()
    producer = threading.Thread(target=produce, args=(settings, produced, stop), daemon=True)
    producer.start()
    time.sleep(BEFORE_S)
    leader = listed(client, TOPICS)[DATA_TOPIC].partitions[0].leader
    victim = next(n for n in kafka.nodes(settings) if n.id == leader)
    down_at = time.time()
    supervision.kill(settings, victim.name, hold=True)
    time.sleep(OUTAGE_S)
    findings["alive_during_outage"] = sorted(kafka.registered(settings))
    back_at = time.time()
    kafka.start(settings)  # the held node only: the others run
    findings["restart_s"] = round(time.time() - back_at, 1)
    time.sleep(AFTER_S)
    stop.set()
    producer.join(120)
    if produced.error is not None:
        raise RuntimeError("the producer failed") from produced.error

    deadline = time.monotonic() + 60
    while under_replicated(client, (*TOPICS, "__transaction_state")) and (
        time.monotonic() < deadline
    ):
        time.sleep(1)
    seqs = read_back(settings)
    gaps = [b - a for a, b in zip(produced.commits, produced.commits[1:], strict=False)]
    findings |= {
        "killed": victim.name,
        "produced": sum(produced.next_seq.values()),
        "read": sum(len(s) for s in seqs.values()),
        "exactly_once_in_order": all(
            seqs.get(key) == list(range(n)) for key, n in produced.next_seq.items()
        )
        and set(seqs) == set(produced.next_seq),
        "committed_during_outage": sum(down_at < t < back_at for t in produced.commits) * BATCH,
        "committed_late_in_outage": BATCH
        * sum(back_at - LATE_S < t < back_at for t in produced.commits),
        "longest_commit_gap_s": round(max(gaps, default=0.0), 1),
        "aborted_and_resent": produced.aborted,
        "under_replicated_after": under_replicated(client, (*TOPICS, "__transaction_state")),
        "internal": replication(client, ("__transaction_state",)),
    }
    return findings


def main() -> None:
    settings = Settings.from_env()
    try:
        findings = scenario(settings)
    finally:
        began = time.monotonic()
        stopped = embedded.down(settings)
        stop_s = round(time.monotonic() - began, 1)
    print(json.dumps({**findings, "stopped": sorted(stopped), "stop_s": stop_s}))


if __name__ == "__main__":
    main()
