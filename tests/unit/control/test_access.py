"""The ACLs and registry roles generated from the topology: each department reads only its
own deliveries, and no department writes schemas."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from govsync.control.access import grants, principals
from govsync.stack import registry
from streams.config.settings import Settings
from streams.contract.topics import RECEIPTS_TOPIC
from streams.kafka import credentials
from tests.unit.examples import TOPOLOGY


def test_every_department_and_service_gets_a_principal() -> None:
    assert set(principals(TOPOLOGY)) == {
        "worker",
        "ledger",
        "indexer",
        "api",
        "connect",
        *TOPOLOGY.departments,
    }
    assert "admin" not in principals(TOPOLOGY)  # a super user, from the broker config


def test_a_department_reads_only_its_own_delivery_topics_and_groups() -> None:
    for department in TOPOLOGY.departments:
        mine = {g for g in grants(TOPOLOGY) if g[0] == department}
        topics_read = {
            (name, pattern)
            for _, kind, name, pattern, op in mine
            if kind == ResourceType.TOPIC and op == AclOperation.READ
        }
        assert topics_read == {(f"deliver.{department}.", ResourcePatternType.PREFIXED)}
        written = {
            name for _, kind, name, _, op in mine if op in (AclOperation.WRITE, AclOperation.ALL)
        }
        assert written == {RECEIPTS_TOPIC}
        groups = {name for _, kind, name, _, _ in mine if kind == ResourceType.GROUP}
        assert groups == {f"{department}-"}


def test_no_department_prefix_covers_another_departments_topics() -> None:
    prefixes = {f"deliver.{d}." for d in TOPOLOGY.departments}
    for prefix in prefixes:
        assert [p for p in prefixes if p != prefix and p.startswith(prefix)] == []


def test_the_worker_writes_deliveries_but_does_not_read_them() -> None:
    worker = {(name, op) for who, _, name, _, op in grants(TOPOLOGY) if who == "worker"}
    assert ("deliver.", AclOperation.WRITE) in worker
    assert ("deliver.", AclOperation.READ) not in worker
    assert ("cdc.", AclOperation.WRITE) not in worker


def test_the_indexer_only_reads_the_trail_the_queue_changes_and_master() -> None:
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
        (ResourceType.GROUP, "govsync-index", AclOperation.READ),
    }


def test_the_api_writes_only_query_records_and_reads_only_the_applied_topology() -> None:
    api = {(kind, name, op) for who, kind, name, _, op in grants(TOPOLOGY) if who == "api"}
    assert api == {
        (ResourceType.TOPIC, "govsync.queries", AclOperation.WRITE),
        (ResourceType.TOPIC, "govsync.queries", AclOperation.DESCRIBE),
        (ResourceType.TOPIC, "govsync.topology", AclOperation.READ),
        (ResourceType.TOPIC, "govsync.topology", AclOperation.DESCRIBE),
        (ResourceType.GROUP, "govsync-reader", AclOperation.READ),
        (ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE),
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
    assert set(roles) == {"worker", "ledger", "indexer", "api", *TOPOLOGY.departments}
    assert set(roles.values()) == {"sr-readonly"}
    for principal in ("admin", "connect", *roles):
        secret = credentials.registry_password(settings, principal)
        assert f"users.{principal}={secret}\n" in realm
