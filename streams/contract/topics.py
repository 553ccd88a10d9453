"""Every topic and consumer group govsync names, in one place.

Writers, readers, ACLs, provisioning and the operations tools all derive names from
here, so a name cannot drift between the stage that writes a topic and the tool that
reads it. ``docs/architecture.md`` has the table of who writes and who reads each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.model.topology import Inbound, Subscription, Topology, Upstream

# --- data path ----------------------------------------------------------------------------

CDC_PREFIX = "cdc."  # cdc.<department>.<schema>.<table>, written by Debezium
CHANGES_PREFIX = "changes."
MASTER_PREFIX = "master."
DELIVERY_PREFIX = "deliver."
CHANGES_PATTERN = r"^changes\..*"
DELIVERIES_PATTERN = r"^deliver\..*"


def capture_heartbeat_topic(department: str) -> str:
    """Where a PostgreSQL source department's connector writes its heartbeat messages
    (Debezium names a connector's logical-decoding-message topic ``<topic.prefix>.message``)."""
    return f"{CDC_PREFIX}{department}.message"


def changes_topic(entity: str) -> str:
    """Canonical change events of one entity, keyed by its canonical key."""
    return f"{CHANGES_PREFIX}{entity}"


def master_topic(entity: str) -> str:
    """The canonical current state of one entity (compacted)."""
    return f"{MASTER_PREFIX}{entity}"


def delivery_topic(subscription: Subscription) -> str:
    """One subscription's projected, masked changes: ``deliver.<department>.<entity>``."""
    return f"{DELIVERY_PREFIX}{subscription.department}.{subscription.entity}"


def department_delivery_prefix(department: str) -> str:
    return f"{DELIVERY_PREFIX}{department}."


def normalize_inputs(topology: Topology) -> list[str]:
    """What normalize reads: the sources' capture topics and the mirrored deliveries of
    upstream nodes."""
    return [
        *(source.cdc_topic for source in topology.sources),
        *(mirrored_topic(inbound) for inbound in topology.inbound),
    ]


def upstream_delivery_topic(inbound: Inbound) -> str:
    """The upstream node's delivery topic to this node, as named there."""
    return f"{DELIVERY_PREFIX}{inbound.upstream.login}.{inbound.entity}"


def upstream_topic_patterns(upstream: Upstream) -> list[str]:
    """MirrorMaker's regular expressions for the exact topics ``upstream`` delivers to
    this node (``[.]``: a bare dot matches any character, and a backslash would not
    survive Java's Properties.load)."""
    prefix = DELIVERY_PREFIX.replace(".", "[.]")
    return [f"{prefix}{upstream.login}[.]{entity}" for entity in sorted(upstream.entities)]


def mirror_target_alias(node: str) -> str:
    """What MirrorMaker calls this node's own cluster. Not the node's name: its default
    replication policy takes every dot-separated part of a source topic for a cluster
    alias and skips the topic as a cycle when one equals the target's, and this node's
    department at the upstream is usually named like the node (``deliver.province.*``
    mirrored to ``province``). A hyphen never occurs in a govsync topic's parts."""
    return f"{node}-local"


def mirrored_topic(inbound: Inbound) -> str:
    """That topic mirrored here by MirrorMaker 2 (its default replication policy prefixes
    the source cluster's alias): ``<node>.deliver.<login>.<entity>``."""
    return f"{inbound.upstream.node}.{upstream_delivery_topic(inbound)}"


# --- govsync's own topics -----------------------------------------------------------------

GOVSYNC_PREFIX = "govsync."
DLQ_TOPIC = "govsync.dlq"
QUERIES_TOPIC = "govsync.queries"  # look-ups on the query API, for the audit trail
DLQ_CLOSED_TOPIC = "govsync.dlq.closed"
QUALITY_TOPIC = "govsync.quality"
RECEIPTS_TOPIC = "govsync.receipts"
TRACE_TOPIC = "govsync.trace"
AUDIT_TOPIC = "govsync.audit"
TOPOLOGY_TOPIC = "govsync.topology"
TOPOLOGY_CHANGES_TOPIC = "govsync.topology.changes"
# 申请—审核—授权 (streams/contract/approvals.py): departments' signed requests, the data
# authority's signed decisions; each compacted by subscription id.
REQUESTS_TOPIC = "govsync.requests"
APPROVALS_TOPIC = "govsync.approvals"
# 使用—评价 (streams/contract/objections.py): objections to a source department's data, and
# its answers, one topic per department that owns a source.
OBJECTIONS_PREFIX = "govsync.objections."
OBJECTIONS_PATTERN = r"^govsync\.objections\..*"


def objections_topic(source_department: str) -> str:
    return f"{OBJECTIONS_PREFIX}{source_department}"


# Debezium's MariaDB connector keeps the DDL it has seen here, one topic per database, to
# know each table's columns at any binlog position (PostgreSQL's WAL carries them).
SCHEMA_HISTORY_PREFIX = "govsync.schema-history."


def schema_history_topic(database: str) -> str:
    return f"{SCHEMA_HISTORY_PREFIX}{database}"


def stage_changelog_prefix(stage: str) -> str:
    """A stage's state changelogs start with this (the worker's ACL on them)."""
    return f"{GOVSYNC_PREFIX}{stage}."


CANONICAL_CHANGELOG_TOPIC = f"{stage_changelog_prefix('route')}canonical-changelog"


def dedup_changelog_topic(stage: str) -> str:
    return f"{stage_changelog_prefix(stage)}dedup-changelog"


# --- consumer groups and transactional ids ------------------------------------------------

STAGE_PREFIX = "govsync-"  # the worker's groups and transactional ids
NORMALIZE, ROUTE, LEDGER = "normalize", "route", "ledger"
STAGES = (NORMALIZE, ROUTE, LEDGER)


def stage_group(stage: str) -> str:
    """The consumer group of one worker stage, shared by all its instances."""
    return f"{STAGE_PREFIX}{stage}"


def stage_member(stage: str, instance: str) -> str:
    """One instance's transactional.id and static group.instance.id."""
    return f"{STAGE_PREFIX}{stage}-{instance}"


# Groups that only read, never commit: librdkafka needs a group.id to consume at all.
LEDGER_TAIL_GROUP = "govsync-ledger-tail"  # reads a chain's head back
LAG_PROBE_GROUP = "govsync-lag-probe"  # `govsync lag` reads the oldest waiting record
READER_GROUP = "govsync-reader"  # the operations tools' topic reader
INDEX_GROUP = "govsync-index"  # the indexer's: it assigns itself, never commits
DLQ_REPROCESS_ID = "govsync-dlq-reprocess"  # `govsync dlq reprocess`'s transactional.id
CONNECT_PREFIX = "govsync-connect"  # Connect's group and its internal topics

# A standby node's MirrorMaker 2 (govsync/stack/standby.py, and its Strimzi render): its
# names for the two clusters; the topics it does not copy (Kafka's own, Debezium's
# heartbeats, MirrorMaker's); the groups whose offsets it does not translate (they never
# commit); how often it translates the others' (what a take-over reads again).
STANDBY_SOURCE, STANDBY_TARGET = "primary", "standby"
STANDBY_NOT_COPIED = ("__.*", "mm2-.*", ".*[.]internal")
STANDBY_UNSYNCED_GROUPS = (LEDGER_TAIL_GROUP, LAG_PROBE_GROUP, READER_GROUP, INDEX_GROUP)
STANDBY_SYNC_SECONDS = 5


def department_group_prefix(department: str) -> str:
    """A department may use any consumer group that starts with this (its ACL)."""
    return f"{department}-"


def sink_group(department: str) -> str:
    """The group of a department's subscriber (the SDK's default)."""
    return f"{department}-sink"


# --- what a topology needs -----------------------------------------------------------


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int | None = None  # None: the cluster's default.replication.factor
    config: dict[str, str] = field(default_factory=dict)


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def topic_specs(topology: Topology) -> list[TopicSpec]:
    """Every topic ``topology`` needs, with its partitions and retention."""
    kafka = topology.kafka
    retained = {"cleanup.policy": "delete", "retention.ms": _ms(kafka.retention.total_seconds())}
    specs = [
        TopicSpec(source.cdc_topic, kafka.partitions, kafka.replication_factor, retained)
        for source in topology.sources
    ]
    specs += [
        TopicSpec(
            capture_heartbeat_topic(department),
            1,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": _ms(24 * 3600)},
        )
        for department in sorted(
            {s.department for s in topology.sources if s.database.kind == "postgres"}
        )
    ]
    specs += [
        # One partition, kept forever: the connector replays all of it at every start.
        TopicSpec(
            schema_history_topic(database),
            1,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
        )
        for database in sorted(
            {s.database.name for s in topology.sources if s.database.kind == "mariadb"}
        )
    ]
    specs += [
        # Created here, not by MirrorMaker, so normalize subscribes before the first record.
        TopicSpec(mirrored_topic(inbound), kafka.partitions, kafka.replication_factor, retained)
        for inbound in topology.inbound
    ]
    for entity in topology.changed_entities:
        specs.append(
            TopicSpec(changes_topic(entity), kafka.partitions, kafka.replication_factor, retained)
        )
        specs.append(
            TopicSpec(
                master_topic(entity),
                kafka.partitions,
                kafka.replication_factor,
                {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
            )
        )
    specs += [
        TopicSpec(delivery_topic(sub), kafka.partitions, kafka.replication_factor, retained)
        for sub in topology.subscriptions
    ]
    specs.append(
        TopicSpec(
            dedup_changelog_topic(ROUTE),
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
        TopicSpec(
            CANONICAL_CHANGELOG_TOPIC,
            kafka.partitions,
            kafka.replication_factor,
            # Every change rewrites its key's entry: roll segments hourly so compaction
            # can drop the old versions a restart would otherwise read.
            {"cleanup.policy": "compact", "segment.ms": "3600000"},
        )
    )
    specs.append(
        TopicSpec(
            RECEIPTS_TOPIC,
            kafka.partitions,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": _ms(kafka.dlq_retention.total_seconds())},
        )
    )
    specs.append(
        TopicSpec(
            QUERIES_TOPIC,
            kafka.partitions,  # the ledger chains partition p into audit chain p
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": _ms(kafka.dlq_retention.total_seconds())},
        )
    )
    specs.append(
        TopicSpec(
            TRACE_TOPIC,
            kafka.partitions,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": _ms(kafka.dlq_retention.total_seconds())},
        )
    )
    specs.append(
        TopicSpec(
            AUDIT_TOPIC,
            kafka.partitions,  # one hash chain per partition
            kafka.replication_factor,
            # Kept forever and never compacted: a chain verifies only from its first record.
            {"cleanup.policy": "delete", "retention.ms": "-1"},
        )
    )
    specs.append(
        TopicSpec(
            QUALITY_TOPIC,
            kafka.partitions,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": _ms(kafka.dlq_retention.total_seconds())},
        )
    )
    specs.append(
        TopicSpec(TOPOLOGY_TOPIC, 1, kafka.replication_factor, {"cleanup.policy": "compact"})
    )
    # The latest of each subscription is what is in force; the ledger puts each on the
    # trail first, so compaction waits a week before dropping any.
    specs += [
        TopicSpec(
            topic,
            1,
            kafka.replication_factor,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": _ms(7 * 24 * 3600)},
        )
        for topic in (REQUESTS_TOPIC, APPROVALS_TOPIC)
    ]
    specs += [
        TopicSpec(
            objections_topic(department),
            1,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": "-1"},  # the record of evaluations
        )
        for department in sorted({source.department for source in topology.sources})
    ]
    specs.append(
        TopicSpec(
            TOPOLOGY_CHANGES_TOPIC,
            1,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": "-1"},  # the record of approvals
        )
    )
    specs.append(
        TopicSpec(DLQ_CLOSED_TOPIC, 1, kafka.replication_factor, {"cleanup.policy": "compact"})
    )
    specs.append(
        TopicSpec(
            DLQ_TOPIC,
            1,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": _ms(kafka.dlq_retention.total_seconds())},
        )
    )
    return specs
