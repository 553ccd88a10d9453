"""`govsync topology apply`: make Kafka, the registry and Connect match the topology.

Order matters: topics first (Debezium must not create them with default settings),
then schemas (the worker serializes against registered schemas only), then the
connectors (which start producing at once). Every step is idempotent.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from connectors import debezium
from streams import access, admin, applied, schemas, serde
from streams.access import RECEIPTS_TOPIC
from streams.audit import AUDIT_TOPIC
from streams.authority import QUALITY_TOPIC
from streams.canonical import CHANGELOG_TOPIC as CANONICAL_CHANGELOG
from streams.dedup import changelog_topic
from streams.dlq import CLOSED_TOPIC
from streams.lineage import TRACE_TOPIC
from streams.settings import Settings
from streams.stack import registry
from streams.stack.process import StackError
from streams.topology import (
    DLQ_TOPIC,
    Topology,
    changes_topic,
    delivery_topic,
    master_topic,
)


class ApplyReport(BaseModel):
    topics: dict[str, str]
    schemas: dict[str, int]
    connectors: dict[str, str]
    acls: dict[str, int]
    registry_users: Literal["unchanged", "updated, registry restarted"]
    changes: list[applied.Change]


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def topic_specs(topology: Topology) -> list[admin.TopicSpec]:
    kafka = topology.kafka
    retained = {"cleanup.policy": "delete", "retention.ms": _ms(kafka.retention.total_seconds())}
    specs = [
        admin.TopicSpec(source.cdc_topic, kafka.partitions, kafka.replication_factor, retained)
        for source in topology.sources
    ]
    for entity in sorted({source.entity for source in topology.sources}):
        specs.append(
            admin.TopicSpec(
                changes_topic(entity), kafka.partitions, kafka.replication_factor, retained
            )
        )
        specs.append(
            admin.TopicSpec(
                master_topic(entity),
                kafka.partitions,
                kafka.replication_factor,
                {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
            )
        )
    specs += [
        admin.TopicSpec(delivery_topic(sub), kafka.partitions, kafka.replication_factor, retained)
        for sub in topology.subscriptions
    ]
    specs.append(
        admin.TopicSpec(
            changelog_topic("route"),
            kafka.partitions,
            kafka.replication_factor,
            # Compacted for lookups, deleted after the dedup window so it stays bounded.
            {
                "cleanup.policy": "compact,delete",
                "retention.ms": _ms(kafka.dedup_retention.total_seconds()),
            },
        )
    )
    specs.append(
        admin.TopicSpec(
            CANONICAL_CHANGELOG,
            kafka.partitions,
            kafka.replication_factor,
            # Every change rewrites its key's entry: roll segments hourly so compaction
            # can drop the old versions a restart would otherwise read.
            {"cleanup.policy": "compact", "segment.ms": "3600000"},
        )
    )
    specs.append(
        admin.TopicSpec(
            RECEIPTS_TOPIC,
            kafka.partitions,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": _ms(kafka.dlq_retention.total_seconds())},
        )
    )
    specs.append(
        admin.TopicSpec(
            TRACE_TOPIC,
            kafka.partitions,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": _ms(kafka.dlq_retention.total_seconds())},
        )
    )
    specs.append(
        admin.TopicSpec(
            AUDIT_TOPIC,
            kafka.partitions,  # one hash chain per partition
            kafka.replication_factor,
            # Kept forever and never compacted: a chain verifies only from its first record.
            {"cleanup.policy": "delete", "retention.ms": "-1"},
        )
    )
    specs.append(
        admin.TopicSpec(
            QUALITY_TOPIC,
            kafka.partitions,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": _ms(kafka.dlq_retention.total_seconds())},
        )
    )
    specs.append(
        admin.TopicSpec(
            applied.TOPOLOGY_TOPIC, 1, kafka.replication_factor, {"cleanup.policy": "compact"}
        )
    )
    specs.append(
        admin.TopicSpec(
            applied.CHANGES_TOPIC,
            1,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": "-1"},  # the record of approvals
        )
    )
    specs.append(
        admin.TopicSpec(CLOSED_TOPIC, 1, kafka.replication_factor, {"cleanup.policy": "compact"})
    )
    specs.append(
        admin.TopicSpec(
            DLQ_TOPIC,
            1,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": _ms(kafka.dlq_retention.total_seconds())},
        )
    )
    return specs


def schema_plan(topology: Topology) -> dict[str, dict]:
    """Topic -> value schema, for every topic govsync itself writes Avro to."""
    plan: dict[str, dict] = {}
    for entity in sorted({source.entity for source in topology.sources}):
        plan[changes_topic(entity)] = schemas.change_event_schema(topology, entity)
        plan[master_topic(entity)] = schemas.entity_state_schema(topology, entity)
    for subscription in topology.subscriptions:
        plan[delivery_topic(subscription)] = schemas.delivery_schema(topology, subscription)
    plan[QUALITY_TOPIC] = schemas.quality_schema()
    plan[RECEIPTS_TOPIC] = schemas.receipt_schema()
    plan[TRACE_TOPIC] = schemas.lineage_schema()
    plan[AUDIT_TOPIC] = schemas.audit_schema()
    return plan


def apply(topology: Topology, settings: Settings, text: str) -> ApplyReport:
    """Make the cluster match ``topology`` (parsed from ``text``), then publish ``text`` as
    the applied topology, which running workers follow: publishing comes last, so they
    never serve a subscription whose topic or schema does not exist yet."""
    client = admin.admin_client(settings.bootstrap)
    serde.ensure_reachable(settings)
    topics = admin.ensure_topics(client, topic_specs(topology))
    acls = access.apply(client, settings, topology)
    restarted = registry.users_outdated(settings, topology)
    if restarted:
        with debezium.paused(topology, settings):
            registry.restart(settings, topology)
    schema_registry = serde.registry_client(settings)
    registered = {
        topic: serde.register(schema_registry, topic, schema)
        for topic, schema in schema_plan(topology).items()
    }
    connectors = debezium.apply(topology, settings)
    changes = applied.publish(settings.bootstrap, text, topology)
    return ApplyReport(
        topics=topics,
        schemas=registered,
        connectors=connectors,
        acls=acls,
        registry_users="updated, registry restarted" if restarted else "unchanged",
        changes=changes,
    )


def check_applied(topology: Topology, settings: Settings) -> None:
    """Refuse to start processing against a cluster the topology was not applied to."""
    serde.ensure_reachable(settings)
    present = admin.existing_topics(admin.admin_client(settings.bootstrap))
    missing = [spec.name for spec in topic_specs(topology) if spec.name not in present]
    subjects = set(serde.registry_client(settings).get_subjects())
    missing += [
        serde.value_subject(t)
        for t in schema_plan(topology)
        if serde.value_subject(t) not in subjects
    ]
    if missing:
        raise StackError(
            f"the topology is not applied ({', '.join(missing[:3])}"
            f"{' …' if len(missing) > 3 else ''} missing): run `govsync topology apply`"
        )
