"""The ACLs and registry roles generated from the topology: each department reads only its
own deliveries, and no department writes schemas."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from govsync.control import access
from govsync.control.access import _federation_grants, grants, principals
from govsync.stack import registry
from streams.config.settings import Settings
from streams.contract.topics import (
    APPROVALS_TOPIC,
    OBJECTIONS_PREFIX,
    READER_GROUP,
    RECEIPTS_TOPIC,
    REQUESTS_TOPIC,
    SCHEMA_HISTORY_PREFIX,
    TOPOLOGY_TOPIC,
    mirrored_topic,
    objections_topic,
)
from streams.kafka import credentials
from streams.kafka.applied import Applied, InForce
from streams.model.topology import Subscription
from tests.unit.examples import PROVINCE, TOPOLOGY

DURING = datetime(2026, 12, 1, tzinfo=UTC)  # every example subscription is active
AFTER = datetime(2099, 1, 1, tzinfo=UTC)  # every one has expired
AUTHORITY_READS = (TOPOLOGY_TOPIC, REQUESTS_TOPIC, APPROVALS_TOPIC)


def test_every_department_and_service_gets_a_principal() -> None:
    assert set(principals(TOPOLOGY)) == {
        "worker",
        "ledger",
        "indexer",
        "api",
        "connect",
        "mirror",
        *TOPOLOGY.departments,
    }
    assert "admin" not in principals(TOPOLOGY)  # a super user, from the broker config


def test_a_department_reads_only_the_topics_of_its_active_subscriptions() -> None:
    for department in TOPOLOGY.departments:
        mine = {g for g in grants(TOPOLOGY, DURING) if g[0] == department}
        topics_read = {
            (name, pattern)
            for _, kind, name, pattern, op in mine
            if kind == ResourceType.TOPIC and op == AclOperation.READ
        }
        active = [
            s for s in TOPOLOGY.subscriptions if s.department == department and s.is_active(DURING)
        ]
        authority = department == TOPOLOGY.authority
        reviewed = (
            {(t, ResourcePatternType.LITERAL) for t in AUTHORITY_READS} if authority else set()
        )
        sources = {s.department for s in TOPOLOGY.sources}
        findings = {(objections_topic(department), ResourcePatternType.LITERAL)}
        assert topics_read == reviewed | (findings if department in sources else set()) | {
            (f"deliver.{department}.{s.entity}", ResourcePatternType.LITERAL) for s in active
        }
        written = {
            name for _, kind, name, _, op in mine if op in (AclOperation.WRITE, AclOperation.ALL)
        }
        decides = {APPROVALS_TOPIC} if authority else set()
        assert written == {RECEIPTS_TOPIC, REQUESTS_TOPIC, OBJECTIONS_PREFIX} | decides
        groups = {name for _, kind, name, _, _ in mine if kind == ResourceType.GROUP}
        assert groups == ({f"{department}-"} if active else set()) | (
            {READER_GROUP} if authority or department in sources or active else set()
        )


def test_only_the_data_authority_writes_decisions() -> None:
    writers = {
        who
        for who, kind, name, _, op in grants(TOPOLOGY, DURING)
        if name == APPROVALS_TOPIC and op in (AclOperation.WRITE, AclOperation.ALL)
    }
    assert TOPOLOGY.authority is not None and writers == {TOPOLOGY.authority}


@pytest.mark.parametrize(
    ("state", "at"),
    [("suspended", DURING), ("revoked", DURING), ("requested", DURING), ("approved", AFTER)],
)
def test_a_subscription_not_active_grants_no_read(state: str, at: datetime) -> None:
    """Suspended, revoked, not yet approved, or expired (the day after ``expires``): the
    department (each of its subscriptions so) neither reads the topics nor joins its
    groups."""

    def changed(s: Subscription) -> Subscription:
        if s.department != "tax":
            return s
        return s.model_copy(update={"approval": s.approval.model_copy(update={"state": state})})

    topology = TOPOLOGY.model_copy(
        update={"subscriptions": [changed(s) for s in TOPOLOGY.subscriptions]}
    )
    reads = {
        (kind, name)
        for who, kind, name, _, op in grants(topology, at)
        if who == "tax" and op == AclOperation.READ
    }
    assert reads == set()


def test_the_keeper_reconciles_a_change_first_read_beside_another_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A suspension read in a pass that also saw the document's version change (a read
    that missed the applied document, or an apply) was taken as reconciled: the next pass
    saw the same grants and the topic stayed open (test_lifecycle, session 14)."""

    def suspended(s: Subscription) -> Subscription:
        if s.department != "tax":
            return s
        approval = s.approval.model_copy(update={"state": "suspended"})
        return s.model_copy(update={"approval": approval})

    closed = TOPOLOGY.model_copy(
        update={"subscriptions": [suspended(s) for s in TOPOLOGY.subscriptions]}
    )
    assert grants(closed) != grants(TOPOLOGY)
    document = Applied(text="", sha256="a" * 64, applied_at=DURING)
    reads = [
        InForce(topology=TOPOLOGY, applied=document),
        InForce(topology=closed, applied=None),
        InForce(topology=closed, applied=document),
        InForce(topology=closed, applied=document),
    ]
    stop = threading.Event()
    reconciled: list[object] = []

    def in_force(settings: Settings) -> InForce:
        if len(reads) == 1:
            stop.set()
        return reads.pop(0)

    def reconcile(client: object, topology: object) -> dict[str, int]:
        reconciled.append(topology)
        return {"created": 0, "deleted": 0}

    monkeypatch.setattr(access.applied, "in_force", in_force)
    monkeypatch.setattr(access, "admin_client", lambda bootstrap: None)
    monkeypatch.setattr(access, "reconcile_acls", reconcile)
    access.keep(Settings(state_dir=tmp_path), stop, every_s=0)
    assert reconciled == [TOPOLOGY, closed, closed]  # once per (version, grants) read


def test_no_department_prefix_covers_another_departments_topics() -> None:
    prefixes = {f"deliver.{d}." for d in TOPOLOGY.departments}
    for prefix in prefixes:
        assert [p for p in prefixes if p != prefix and p.startswith(prefix)] == []


def test_the_worker_writes_deliveries_but_does_not_read_them() -> None:
    worker = {(name, op) for who, _, name, _, op in grants(TOPOLOGY) if who == "worker"}
    assert ("deliver.", AclOperation.WRITE) in worker
    assert ("deliver.", AclOperation.READ) not in worker
    assert ("cdc.", AclOperation.WRITE) not in worker


def test_only_the_ledger_writes_the_trail() -> None:
    """The worker (normalize, route) writes its own outputs and changelogs, nothing of
    the trail: trace, audit, receipts and query records are the ledger's to chain."""
    worker_writes = {
        name
        for who, kind, name, _, op in grants(TOPOLOGY)
        if who == "worker" and kind == ResourceType.TOPIC and op == AclOperation.WRITE
    }
    assert worker_writes == {
        "changes.",
        "master.",
        "deliver.",
        "govsync.dlq",
        "govsync.quality",
        "govsync.route.",
    }
    trail_writers = {
        who
        for who, _, name, _, op in grants(TOPOLOGY)
        if op == AclOperation.WRITE and name in ("govsync.trace", "govsync.audit", "govsync.")
    }
    assert trail_writers == {"ledger"}


def test_the_indexer_only_reads_the_trail_the_queue_changes_master_and_objections() -> None:
    indexer = {(kind, name, op) for who, kind, name, _, op in grants(TOPOLOGY) if who == "indexer"}
    assert indexer == {
        (ResourceType.TOPIC, topic, op)
        for topic in ("govsync.trace", "govsync.audit", "govsync.dlq", "govsync.dlq.closed")
        for op in (AclOperation.READ, AclOperation.DESCRIBE)
    } | {
        (ResourceType.TOPIC, "changes.", AclOperation.READ),
        (ResourceType.TOPIC, "changes.", AclOperation.DESCRIBE),
        (ResourceType.TOPIC, "master.", AclOperation.READ),
        (ResourceType.TOPIC, "master.", AclOperation.DESCRIBE),
        (ResourceType.TOPIC, "govsync.objections.", AclOperation.READ),
        (ResourceType.TOPIC, "govsync.objections.", AclOperation.DESCRIBE),
        (ResourceType.GROUP, "govsync-index", AclOperation.READ),
    }


def test_the_api_writes_only_query_records_and_reads_only_the_topology_in_force() -> None:
    api = {(kind, name, op) for who, kind, name, _, op in grants(TOPOLOGY) if who == "api"}
    assert api == {
        (ResourceType.TOPIC, "govsync.queries", AclOperation.WRITE),
        (ResourceType.TOPIC, "govsync.queries", AclOperation.DESCRIBE),
        (ResourceType.TOPIC, "govsync.topology", AclOperation.READ),
        (ResourceType.TOPIC, "govsync.topology", AclOperation.DESCRIBE),
        (ResourceType.TOPIC, "govsync.approvals", AclOperation.READ),
        (ResourceType.TOPIC, "govsync.approvals", AclOperation.DESCRIBE),
        (ResourceType.GROUP, "govsync-reader", AclOperation.READ),
        (ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE),
        # the trail's ends, for the freshness of the authority's audit questions
        (ResourceType.TOPIC, "govsync.trace", AclOperation.DESCRIBE),
        (ResourceType.TOPIC, "govsync.audit", AclOperation.DESCRIBE),
    }


def test_only_admin_and_connect_may_write_schemas(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    realm = registry.users_config(settings, TOPOLOGY)
    roles = dict(
        line.removeprefix("quarkus.security.users.embedded.roles.").split("=")
        for line in realm.splitlines()
        if line.startswith("quarkus.security.users.embedded.roles.")
    )
    assert roles.pop("admin") == "sr-admin"
    assert roles.pop("connect") == "sr-developer"
    assert set(roles) == {"worker", "ledger", "indexer", "api", "mirror", *TOPOLOGY.departments}
    assert set(roles.values()) == {"sr-readonly"}
    for principal in ("admin", "connect", *roles):
        secret = credentials.registry_password(settings, principal)
        assert f"users.{principal}={secret}\n" in realm


def test_the_api_keeps_digests_of_the_department_logins_not_the_passwords(
    tmp_path: Path,
) -> None:
    settings = Settings(state_dir=tmp_path)
    credentials.write_logins(settings, ["tax", "social_security"])
    text = credentials.logins_file(settings).read_text()
    logins = json.loads(text)
    assert set(logins) == {"tax", "social_security"}
    assert credentials.logins_file(settings).stat().st_mode & 0o777 == 0o600
    tax = credentials.password(settings, "tax")
    assert tax not in text
    salt = bytes.fromhex(logins["tax"]["salt"])
    assert credentials.login_digest(tax, salt) == logins["tax"]["sha256"]
    assert credentials.login_digest(tax + "0", salt) != logins["tax"]["sha256"]
    other = bytes.fromhex(logins["social_security"]["salt"])
    assert salt != other  # one salt per login


def test_only_connect_keeps_the_mariadb_schema_history() -> None:
    """Debezium's MariaDB connector reads and writes its schema history as Connect."""
    holders = {
        (principal, op)
        for principal, kind, name, pattern, op in grants(TOPOLOGY, DURING)
        if kind == ResourceType.TOPIC
        and name.startswith(SCHEMA_HISTORY_PREFIX)
        and op != AclOperation.DESCRIBE
    }
    assert holders == {("connect", AclOperation.ALL)}


# --- federation -----------------------------------------------------------------------------

PREFIXED, LITERAL = ResourcePatternType.PREFIXED, ResourcePatternType.LITERAL


def test_a_node_without_upstreams_grants_nothing_for_federation() -> None:
    assert _federation_grants(TOPOLOGY) == set()
    assert not [g for g in grants(TOPOLOGY, DURING) if g[0] == credentials.MIRROR]


def test_mirror_maker_writes_under_each_upstreams_prefix_and_the_worker_reads_it() -> None:
    found = _federation_grants(PROVINCE)
    assert found == {
        ("mirror", ResourceType.TOPIC, "city.", PREFIXED, AclOperation.ALL),
        ("mirror", ResourceType.TOPIC, "mm2-", PREFIXED, AclOperation.ALL),
        ("mirror", ResourceType.GROUP, "city-mm2", LITERAL, AclOperation.READ),
        ("mirror", ResourceType.BROKER, "kafka-cluster", LITERAL, AclOperation.IDEMPOTENT_WRITE),
        ("mirror", ResourceType.BROKER, "kafka-cluster", LITERAL, AclOperation.DESCRIBE),
        ("worker", ResourceType.TOPIC, "city.deliver.", PREFIXED, AclOperation.READ),
        ("worker", ResourceType.TOPIC, "city.deliver.", PREFIXED, AclOperation.DESCRIBE),
    }
    assert found <= grants(PROVINCE, DURING)
    (inbound,) = PROVINCE.inbound
    assert mirrored_topic(inbound).startswith("city.deliver.")  # what normalize subscribes to


def test_only_mirror_maker_and_the_worker_touch_mirrored_topics() -> None:
    touching = {
        who
        for who, kind, name, _, _ in grants(PROVINCE, DURING)
        if kind == ResourceType.TOPIC and name.startswith("city.")
    }
    assert touching == {"mirror", "worker"}
    # Nor does a prefix of the node's own topics cover them (e.g. "c" or "ci").
    assert not [
        (who, name)
        for who, kind, name, pattern, _ in grants(PROVINCE, DURING)
        if kind == ResourceType.TOPIC
        and pattern == PREFIXED
        and who not in ("mirror", "worker", "admin")
        and "city.deliver.province.enterprise".startswith(name)
    ]


def test_each_upstream_gets_its_own_prefix_and_group() -> None:
    assert PROVINCE.federation is not None
    (city,) = PROVINCE.federation.upstreams
    region = city.model_copy(update={"node": "region"})
    two = PROVINCE.model_copy(
        update={"federation": PROVINCE.federation.model_copy(update={"upstreams": [city, region]})}
    )
    mirror = {(kind, name) for who, kind, name, _, _ in _federation_grants(two) if who == "mirror"}
    assert {(ResourceType.TOPIC, "region."), (ResourceType.GROUP, "region-mm2")} <= mirror
    worker = {name for who, _, name, _, _ in _federation_grants(two) if who == "worker"}
    assert worker == {"city.deliver.", "region.deliver."}
