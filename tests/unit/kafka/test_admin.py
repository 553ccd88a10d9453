"""Creating topics: their replication factor is the cluster's unless the topology names
one, and one too small for the brokers' min.insync.replicas is refused before creating."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka.admin import ConfigResource, NewTopic

from streams.contract.topics import TopicSpec
from streams.kafka import admin


def done(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class FakeAdmin:
    """What ensure_topics asks of an AdminClient: a cluster of ``brokers`` with the
    given min.insync.replicas and no topics yet."""

    def __init__(self, brokers: int, min_insync: int) -> None:
        self.brokers = {i: object() for i in range(1, brokers + 1)}
        self.min_insync = min_insync
        self.created: list[NewTopic] = []

    def list_topics(self, timeout: float) -> SimpleNamespace:
        return SimpleNamespace(topics={}, brokers=self.brokers)

    def describe_configs(self, resources: list[ConfigResource]) -> dict[ConfigResource, Future]:
        entry = SimpleNamespace(value=str(self.min_insync))
        return {r: done({"min.insync.replicas": entry}) for r in resources}

    def create_topics(self, topics: list[NewTopic], operation_timeout: float) -> dict[str, Future]:
        self.created += topics
        return {t.topic: done(None) for t in topics}


def test_a_topic_without_a_replication_factor_gets_the_clusters_default() -> None:
    client = FakeAdmin(brokers=3, min_insync=2)
    actions = admin.ensure_topics(client, [TopicSpec("changes.enterprise", 6)])  # type: ignore[arg-type]
    assert actions == {"changes.enterprise": "created"}
    (created,) = client.created
    assert created.replication_factor == admin.CLUSTER_DEFAULT == -1


def test_an_explicit_replication_factor_is_kept() -> None:
    client = FakeAdmin(brokers=3, min_insync=2)
    admin.ensure_topics(client, [TopicSpec("changes.enterprise", 6, 3)])  # type: ignore[arg-type]
    assert [t.replication_factor for t in client.created] == [3]


def test_one_replica_where_two_must_be_in_sync_is_refused_before_anything_is_created() -> None:
    client = FakeAdmin(brokers=3, min_insync=2)
    specs = [TopicSpec("changes.enterprise", 6, 1), TopicSpec("master.enterprise", 6)]
    with pytest.raises(admin.AdminError, match=r"fewer replicas than the brokers' min.insync"):
        admin.ensure_topics(client, specs)  # type: ignore[arg-type]
    with pytest.raises(admin.AdminError):
        admin.ensure_topics(client, specs, dry_run=True)  # type: ignore[arg-type]
    assert client.created == []


def test_one_replica_on_one_broker_is_what_it_always_was() -> None:
    client = FakeAdmin(brokers=1, min_insync=1)
    admin.ensure_topics(client, [TopicSpec("changes.enterprise", 6, 1)])  # type: ignore[arg-type]
    assert [t.replication_factor for t in client.created] == [1]
