"""Who may do what on Kafka: SCRAM users and ACLs generated from the topology.

Each department may read only ``deliver.<its id>.*`` with consumer groups named
``<its id>-*``, and write only its receipts and its subscription requests; the data
authority alone writes decisions (and its signature, not this ACL, is what readers
trust: ``admin`` could write there too). The worker reads the capture and change
topics and writes the canonical, delivery and govsync.* topics transactionally; Connect
(with Debezium) writes the capture topics and its own. ``admin`` is a super user in the
broker config and needs no ACL. Applying is a reconcile: bindings for govsync's
principals that the topology no longer implies are deleted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from govsync.control import state_secrets
from streams.config.settings import Settings
from streams.contract.topics import (
    APPROVALS_TOPIC,
    AUDIT_TOPIC,
    CDC_PREFIX,
    CHANGES_PREFIX,
    CONNECT_PREFIX,
    DELIVERY_PREFIX,
    DLQ_CLOSED_TOPIC,
    DLQ_TOPIC,
    GOVSYNC_PREFIX,
    INDEX_GROUP,
    LEDGER,
    MASTER_PREFIX,
    OBJECTIONS_PREFIX,
    QUALITY_TOPIC,
    QUERIES_TOPIC,
    READER_GROUP,
    RECEIPTS_TOPIC,
    REQUESTS_TOPIC,
    ROUTE,
    SCHEMA_HISTORY_PREFIX,
    STAGE_PREFIX,
    TOPOLOGY_CHANGES_TOPIC,
    TOPOLOGY_TOPIC,
    TRACE_TOPIC,
    delivery_topic,
    department_group_prefix,
    objections_topic,
    stage_changelog_prefix,
    stage_group,
)
from streams.kafka import applied, credentials, topic_reader
from streams.kafka.admin import AdminError, admin_client
from streams.model.topology import Topology

log = logging.getLogger("govsync.acl")

SUPER_USERS = {f"User:{credentials.ADMIN}", f"User:{credentials.CONTROLLER}"}

_TOPIC, _GROUP = ResourceType.TOPIC, ResourceType.GROUP
_PREFIXED, _LITERAL = ResourcePatternType.PREFIXED, ResourcePatternType.LITERAL
_Grant = tuple[str, ResourceType, str, ResourcePatternType, AclOperation]


def principals(topology: Topology) -> list[str]:
    """Every principal govsync creates a SCRAM user for (admin comes from the format)."""
    return [
        credentials.WORKER,
        credentials.LEDGER,
        credentials.INDEXER,
        credentials.API,
        credentials.CONNECT,
        credentials.MIRROR,
        *sorted(topology.departments),
    ]


def grants(topology: Topology, at: datetime | None = None) -> set[_Grant]:
    """Every binding the topology implies at ``at`` (default now): a department reads a
    delivery topic only while its subscription is active there (approved, approval day
    reached, not expired), and joins its groups only while one of them is."""
    at = at or datetime.now(UTC)
    read, write, describe = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE
    worker, connect = credentials.WORKER, credentials.CONNECT
    wanted: set[_Grant] = set()
    for prefix, operations in (
        (CDC_PREFIX, (read, describe)),
        (CHANGES_PREFIX, (read, write, describe)),
        (MASTER_PREFIX, (read, write, describe)),
        (DELIVERY_PREFIX, (write, describe)),
        # Every govsync topic is described (the worker checks the topology's topics
        # exist), but it writes only its own outputs: the trail is the ledger's alone.
        (GOVSYNC_PREFIX, (describe,)),
        (stage_changelog_prefix(ROUTE), (read, write)),
    ):
        wanted |= {(worker, _TOPIC, prefix, _PREFIXED, op) for op in operations}
    for topic, operations in (
        (DLQ_TOPIC, (write,)),
        (QUALITY_TOPIC, (write,)),
        (TOPOLOGY_TOPIC, (read,)),
        (APPROVALS_TOPIC, (read,)),
    ):
        wanted |= {(worker, _TOPIC, topic, _LITERAL, op) for op in operations}
    wanted |= {
        (worker, _GROUP, STAGE_PREFIX, _PREFIXED, read),
        (worker, ResourceType.TRANSACTIONAL_ID, STAGE_PREFIX, _PREFIXED, write),
        (worker, ResourceType.TRANSACTIONAL_ID, STAGE_PREFIX, _PREFIXED, describe),
        (worker, ResourceType.BROKER, "kafka-cluster", _LITERAL, AclOperation.IDEMPOTENT_WRITE),
    }
    ledger = credentials.LEDGER
    for prefix in (CHANGES_PREFIX, DELIVERY_PREFIX):
        wanted |= {(ledger, _TOPIC, prefix, _PREFIXED, op) for op in (read, describe)}
    for topic in (
        RECEIPTS_TOPIC,
        TOPOLOGY_CHANGES_TOPIC,
        QUERIES_TOPIC,
        REQUESTS_TOPIC,
        APPROVALS_TOPIC,
    ):
        wanted |= {(ledger, _TOPIC, topic, _LITERAL, op) for op in (read, describe)}
    wanted |= {(ledger, _TOPIC, OBJECTIONS_PREFIX, _PREFIXED, op) for op in (read, describe)}
    for topic in (TRACE_TOPIC, AUDIT_TOPIC):
        wanted |= {(ledger, _TOPIC, topic, _LITERAL, op) for op in (read, write, describe)}
    wanted |= {
        (ledger, _GROUP, stage_group(LEDGER), _PREFIXED, read),
        (ledger, ResourceType.TRANSACTIONAL_ID, stage_group(LEDGER), _PREFIXED, write),
        (ledger, ResourceType.TRANSACTIONAL_ID, stage_group(LEDGER), _PREFIXED, describe),
        (ledger, ResourceType.BROKER, "kafka-cluster", _LITERAL, AclOperation.IDEMPOTENT_WRITE),
    }
    # The indexer only reads (govsync/index): the trail, the dead-letter queue, the
    # change topics' headers for the accounting, and master for look-ups (govsync api).
    # Its group is never joined or committed to, but the consumer looks up its coordinator.
    wanted |= {
        (credentials.INDEXER, _TOPIC, topic, _LITERAL, op)
        for topic in (TRACE_TOPIC, AUDIT_TOPIC, DLQ_TOPIC, DLQ_CLOSED_TOPIC)
        for op in (read, describe)
    }
    wanted |= {
        (credentials.INDEXER, _TOPIC, prefix, _PREFIXED, op)
        for prefix in (CHANGES_PREFIX, MASTER_PREFIX, OBJECTIONS_PREFIX)
        for op in (read, describe)
    }
    wanted.add((credentials.INDEXER, _GROUP, INDEX_GROUP, _LITERAL, read))
    # The query API records each look-up (idempotently) and follows the applied topology;
    # for the authority's audit questions it asks the trail's ends (the index's freshness),
    # never reading a record of it.
    api = credentials.API
    wanted |= {(api, _TOPIC, topic, _LITERAL, describe) for topic in (TRACE_TOPIC, AUDIT_TOPIC)}
    wanted |= {
        (api, _TOPIC, QUERIES_TOPIC, _LITERAL, write),
        (api, _TOPIC, QUERIES_TOPIC, _LITERAL, describe),
        (api, _TOPIC, TOPOLOGY_TOPIC, _LITERAL, read),
        (api, _TOPIC, TOPOLOGY_TOPIC, _LITERAL, describe),
        (api, _TOPIC, APPROVALS_TOPIC, _LITERAL, read),
        (api, _TOPIC, APPROVALS_TOPIC, _LITERAL, describe),
        (api, _GROUP, READER_GROUP, _LITERAL, read),
        (api, ResourceType.BROKER, "kafka-cluster", _LITERAL, AclOperation.IDEMPOTENT_WRITE),
    }
    # Its own topics, Debezium's heartbeats and the MariaDB connector's schema history
    # (apply creates those; Debezium would create a missing one itself).
    for prefix in (f"{CONNECT_PREFIX}-", "__debezium-heartbeat.", SCHEMA_HISTORY_PREFIX):
        wanted.add((connect, _TOPIC, prefix, _PREFIXED, AclOperation.ALL))
    wanted |= {
        (connect, _TOPIC, CDC_PREFIX, _PREFIXED, op)
        for op in (write, describe, AclOperation.DESCRIBE_CONFIGS)
    }
    wanted |= {
        (connect, _GROUP, CONNECT_PREFIX, _PREFIXED, read),
        (connect, ResourceType.BROKER, "kafka-cluster", _LITERAL, AclOperation.IDEMPOTENT_WRITE),
        (connect, ResourceType.BROKER, "kafka-cluster", _LITERAL, describe),
    }
    wanted |= _federation_grants(topology)
    for department in topology.departments:
        # Its receipts, its subscription requests, objections to any source's data and
        # answers to its own (all signed: signatures, not these ACLs, prove the author).
        wanted |= {
            (department, _TOPIC, topic, _LITERAL, op)
            for topic in (RECEIPTS_TOPIC, REQUESTS_TOPIC)
            for op in (write, describe)
        }
        wanted |= {
            (department, _TOPIC, OBJECTIONS_PREFIX, _PREFIXED, op) for op in (write, describe)
        }
    for department in {source.department for source in topology.sources}:
        # The objections to its own data: the findings it answers (read by position).
        wanted |= {
            (department, _TOPIC, objections_topic(department), _LITERAL, read),
            (department, _GROUP, READER_GROUP, _LITERAL, read),
        }
    if topology.authority is not None:
        # The data authority reads the wiring and the requests, and decides.
        wanted |= {
            (topology.authority, _TOPIC, topic, _LITERAL, op)
            for topic in (TOPOLOGY_TOPIC, REQUESTS_TOPIC, APPROVALS_TOPIC)
            for op in (read, describe)
        }
        wanted |= {
            (topology.authority, _TOPIC, APPROVALS_TOPIC, _LITERAL, write),
            (topology.authority, _GROUP, READER_GROUP, _LITERAL, read),
        }
    for subscription in topology.subscriptions:
        if not subscription.is_active(at):
            continue
        department, topic = subscription.department, delivery_topic(subscription)
        wanted |= {
            (department, _TOPIC, topic, _LITERAL, read),
            (department, _TOPIC, topic, _LITERAL, describe),
            (department, _GROUP, department_group_prefix(department), _PREFIXED, read),
            # Reading one of its deliveries by position (`objection raise`) goes through
            # topic_reader, whose consumer names this group; librdkafka asks for its
            # coordinator now and then, and without the grant that read fails.
            (department, _GROUP, READER_GROUP, _LITERAL, read),
        }
    return wanted


def _federation_grants(topology: Topology) -> set[_Grant]:
    """MirrorMaker writes what upstream nodes deliver here under ``<upstream>.`` and keeps
    its Connect worker's topics (``mm2-*``) and group (``<upstream>-mm2``); normalize
    reads the mirrored deliveries. (At an upstream, the department standing for this node
    needs nothing beyond a department's grants: it reads its delivery topics.)"""
    if topology.federation is None:
        return set()
    mirror, worker = credentials.MIRROR, credentials.WORKER
    wanted: set[_Grant] = {
        (mirror, _TOPIC, "mm2-", _PREFIXED, AclOperation.ALL),
        (mirror, ResourceType.BROKER, "kafka-cluster", _LITERAL, AclOperation.IDEMPOTENT_WRITE),
        (mirror, ResourceType.BROKER, "kafka-cluster", _LITERAL, AclOperation.DESCRIBE),
    }
    for upstream in topology.federation.upstreams:
        wanted |= {
            (mirror, _TOPIC, f"{upstream.node}.", _PREFIXED, AclOperation.ALL),
            (mirror, _GROUP, f"{upstream.node}-mm2", _LITERAL, AclOperation.READ),
        }
        wanted |= {
            (worker, _TOPIC, f"{upstream.node}.{DELIVERY_PREFIX}", _PREFIXED, op)
            for op in (AclOperation.READ, AclOperation.DESCRIBE)
        }
    return wanted


def _binding(grant: _Grant) -> AclBinding:
    principal, kind, name, pattern, operation = grant
    return AclBinding(
        kind, name, pattern, f"User:{principal}", "*", operation, AclPermissionType.ALLOW
    )


def ensure_users(client: AdminClient, settings: Settings, names: Iterable[str]) -> None:
    """Create or refresh each principal's SCRAM credential from its stored password."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, credentials.SCRAM_ITERATIONS)
    upserts = [
        UserScramCredentialUpsertion(name, info, credentials.password(settings, name).encode())
        for name in names
    ]
    for name, future in client.alter_user_scram_credentials(upserts).items():
        try:
            future.result()
        except KafkaException as exc:
            raise AdminError(f"creating Kafka user {name} failed: {exc.args[0].str()}") from exc


def reconcile_acls(
    client: AdminClient, topology: Topology, dry_run: bool = False, at: datetime | None = None
) -> dict[str, int]:
    """Create the bindings the topology implies (at ``at``, default now), delete govsync's
    others; returns counts (with ``dry_run``, of what would be created and deleted)."""
    wanted = {_binding(g) for g in grants(topology, at)}
    everything = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    try:
        present = set(client.describe_acls(everything).result())
        missing = list(wanted - present)
        # Any other binding: a principal's former grants, or a department since removed.
        extra = [b for b in present - wanted if b.principal not in SUPER_USERS]
        if dry_run:
            return {"created": len(missing), "deleted": len(extra), "total": len(wanted)}
        if missing:
            for future in client.create_acls(missing).values():
                future.result()
        if extra:
            filters = [
                AclBindingFilter(
                    b.restype,
                    b.name,
                    b.resource_pattern_type,
                    b.principal,
                    b.host,
                    b.operation,
                    b.permission_type,
                )
                for b in extra
            ]
            for future in client.delete_acls(filters).values():
                future.result()
    except KafkaException as exc:
        raise AdminError(f"applying ACLs failed: {exc.args[0].str()}") from exc
    return {"created": len(missing), "deleted": len(extra), "total": len(wanted)}


KEEP_EVERY_S = 5.0


def keep(settings: Settings, stop: threading.Event, every_s: float = KEEP_EVERY_S) -> None:
    """Keep the ACLs in step with time until ``stop``: an apply reconciles at once, but an
    expiry (or an approval's first day) comes with no apply and must open or close the
    department's topic within seconds all the same (`govsync acl --follow`, supervised,
    started by `govsync up`).

    Every ``every_s`` it works out what the topology in force grants now, and reconciles
    when that differs from what it last reconciled. Comparing with the last pass instead
    lost changes: a pass whose read saw the document's version change took the new grants
    as already reconciled, and a suspension read in such a pass never closed the topic. A
    read from just before an apply can undo that apply's grants, for one pass at most: the
    next pass sees the new version and reconciles again."""
    client = admin_client(settings.bootstrap)
    reconciled: tuple[str | None, frozenset[_Grant]] | None = None
    while True:
        try:
            current = applied.in_force(settings)
            version = current.applied.sha256 if current.applied else None
            wanted = frozenset(grants(current.topology))
            log.debug("in force: version %s, %d grants", version, len(wanted))
            if reconciled != (version, wanted):
                counts = reconcile_acls(client, current.topology)
                log.info(
                    "ACLs follow the topology (version %s): %d created, %d deleted",
                    (version or "unapplied")[:12],
                    counts["created"],
                    counts["deleted"],
                )
                reconciled = (version, wanted)
        except (AdminError, KafkaException, topic_reader.StalledRead) as exc:
            log.warning("reconciling ACLs failed, trying again in %gs: %s", every_s, exc)
        if stop.wait(every_s):
            return


def apply(
    client: AdminClient, settings: Settings, topology: Topology, dry_run: bool = False
) -> dict[str, int]:
    """Users, their client property files, the departments' keys and logins, and the ACLs,
    as ``topology`` implies."""
    if dry_run:
        return reconcile_acls(client, topology, dry_run=True)
    ensure_users(client, settings, principals(topology))
    for principal in (credentials.ADMIN, *principals(topology)):
        credentials.write_client_properties(settings, principal)
    state_secrets.make(settings, topology)
    return reconcile_acls(client, topology)
