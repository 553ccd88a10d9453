"""A thin, typed wrapper over confluent-kafka's AdminClient: idempotent topic creation.

`govsync topology apply` states what each topic should look like; this module makes the
cluster match without ever losing data (partitions only grow, nothing is deleted).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from streams.contract.topics import TopicSpec
from streams.kafka import clients


class AdminError(RuntimeError):
    """Kafka refused or could not complete an administrative request."""


class BrokerUnreachable(AdminError):
    pass


TopicAction = Literal["created", "updated", "unchanged"]
# CreateTopics' replication factor for "the broker's default.replication.factor" (KIP-464).
CLUSTER_DEFAULT = -1


def admin_client(bootstrap: str, extra: dict[str, str] | None = None) -> AdminClient:
    # librdkafka would log every failed connection attempt to stderr; unreachability
    # is reported once, as BrokerUnreachable, instead.
    return AdminClient(clients.config(bootstrap, **{"log_level": 0, **(extra or {})}))


def existing_topics(admin: AdminClient, timeout: float = 5.0) -> dict[str, int]:
    """Topic name -> partition count."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnreachable(f"Kafka is not reachable: {exc.args[0]}") from exc
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def topic_ids(admin: AdminClient, topics: Iterable[str]) -> dict[str, str]:
    """Each topic's id: it tells a topic apart from an earlier one of the same name."""
    futures = admin.describe_topics(TopicCollection(list(topics)))
    return {
        name: str(_result(future, f"describing {name}").topic_id)
        for name, future in futures.items()
    }


def ensure_topics(
    admin: AdminClient, specs: Iterable[TopicSpec], timeout: float = 30.0, dry_run: bool = False
) -> dict[str, TopicAction]:
    """Create missing topics, grow partitions, and set the configs each spec names; with
    ``dry_run``, only say which of that would happen."""
    specs = list(specs)
    current = existing_topics(admin)
    missing = [s for s in specs if s.name not in current]
    present = [s for s in specs if s.name in current]
    grow = [s for s in present if s.partitions > current[s.name]]
    reconfigure = [s for s in present if s.config and _config_differs(admin, s)]
    actions: dict[str, TopicAction] = dict.fromkeys((s.name for s in specs), "unchanged")
    actions.update(dict.fromkeys((s.name for s in [*grow, *reconfigure]), "updated"))
    actions.update(dict.fromkeys((s.name for s in missing), "created"))
    _refuse_unwritable(admin, missing)
    if dry_run:
        return actions

    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    s.name,
                    s.partitions,
                    CLUSTER_DEFAULT if s.replication_factor is None else s.replication_factor,
                    config=dict(s.config),
                )
                for s in missing
            ],
            operation_timeout=timeout,
        )
        for name, future in futures.items():
            _result(future, f"creating topic {name}", tolerate="TOPIC_ALREADY_EXISTS")
    if grow:
        futures = admin.create_partitions([NewPartitions(s.name, s.partitions) for s in grow])
        for name, future in futures.items():
            _result(future, f"adding partitions to {name}")
    for spec in reconfigure:
        resource = ConfigResource(
            ConfigResource.Type.TOPIC,
            spec.name,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in spec.config.items()
            ],
        )
        for future in admin.incremental_alter_configs([resource]).values():
            _result(future, f"configuring topic {spec.name}")
    return actions


def _refuse_unwritable(admin: AdminClient, specs: list[TopicSpec]) -> None:
    """Refuse to create a topic with fewer replicas than a write needs in sync: every
    acks=all write to it (all of govsync's) would fail with NOT_ENOUGH_REPLICAS. A
    topology written for one broker (``replication_factor: 1``) applied to three is the
    case this catches."""
    explicit = [s for s in specs if s.replication_factor is not None]
    if not explicit:
        return
    needed = min_insync_replicas(admin)
    short = [
        s.name
        for s in explicit
        if s.replication_factor is not None
        and s.replication_factor < int(s.config.get("min.insync.replicas", needed))
    ]
    if short:
        raise AdminError(
            f"{len(short)} topics (e.g. {short[0]}) would have fewer replicas than the"
            f" brokers' min.insync.replicas ({needed}), so no write with acks=all could"
            " succeed: leave kafka.replication_factor out of the topology (each topic then"
            " gets the cluster's default.replication.factor) or raise it"
        )


def min_insync_replicas(admin: AdminClient) -> int:
    """The brokers' min.insync.replicas (one broker's, as the cluster configures them
    alike)."""
    try:
        broker = min(admin.list_topics(timeout=5).brokers)
    except (KafkaException, ValueError) as exc:
        raise BrokerUnreachable("Kafka is not reachable: no broker answered") from exc
    resource = ConfigResource(ConfigResource.Type.BROKER, str(broker))
    described = _result(admin.describe_configs([resource])[resource], "reading broker configs")
    return int(described["min.insync.replicas"].value)


def _config_differs(admin: AdminClient, spec: TopicSpec) -> bool:
    resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
    described = _result(admin.describe_configs([resource])[resource], f"reading {spec.name}")
    return any(
        key not in described or described[key].value != value for key, value in spec.config.items()
    )


def _result(future, doing: str, tolerate: str | None = None):  # type: ignore[no-untyped-def]
    try:
        return future.result()
    except KafkaException as exc:
        error = exc.args[0]
        if tolerate is not None and error.name() == tolerate:
            return None
        raise AdminError(f"{doing} failed: {error.str()}") from exc
