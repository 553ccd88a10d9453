"""The connector configs rendered from the topology: one per source database, PostgreSQL's
and MariaDB's each with what its connector needs, no secret in either."""

from __future__ import annotations

from pathlib import Path

from connectors.sources.debezium import connector_name, render
from streams.config.settings import REPO_ROOT, Settings
from streams.contract.topics import CONNECT_PREFIX, schema_history_topic, topic_specs
from tests.unit.examples import TOPOLOGY

SETTINGS = Settings(state_dir=Path("/nonexistent/state"))


def test_one_connector_per_source_database() -> None:
    databases = {source.database.name for source in TOPOLOGY.sources}
    assert set(render(TOPOLOGY, SETTINGS)) == {connector_name(db) for db in databases}


def test_a_mariadb_database_is_captured_from_the_binlog() -> None:
    config = render(TOPOLOGY, SETTINGS)[connector_name("health")]
    assert config["connector.class"] == "io.debezium.connector.mariadb.MariaDbConnector"
    assert config["database.port"] == str(SETTINGS.mariadb_port)
    assert config["database.user"] == "connect"
    assert config["database.include.list"] == "health"
    assert config["table.include.list"] == "health.birth_certificate"
    assert config["topic.prefix"] == "cdc.health"
    assert config["database.server.id"] == "5400"
    assert config["schema.history.internal.kafka.topic"] == schema_history_topic("health")
    assert config["schema.history.internal.consumer.group.id"].startswith(CONNECT_PREFIX)
    assert config["include.schema.changes"] == "false"
    assert not any(key.startswith("heartbeat.") for key in config)


def test_secrets_are_named_by_reference_only() -> None:
    for config in render(TOPOLOGY, SETTINGS).values():
        for key, value in config.items():
            if "password" in key or key.endswith("jaas.config"):
                assert value.startswith("${file:/nonexistent/state/"), key


def test_schema_history_topic_is_one_partition_kept_forever() -> None:
    specs = {spec.name: spec for spec in topic_specs(TOPOLOGY)}
    history = specs[schema_history_topic("health")]
    assert history.partitions == 1
    assert history.config["retention.ms"] == "-1"
    assert "cdc.health.message" not in specs  # heartbeats are PostgreSQL's
    assert "cdc.health.health.birth_certificate" in specs


def test_what_connectors_write_survives_a_broker_as_the_data_does() -> None:
    """Topics Connect creates get the cluster's replication factor (three with three
    brokers), and the DDL history is acknowledged by every in-sync replica."""
    configs = render(TOPOLOGY, SETTINGS)
    for config in configs.values():
        assert config.get("topic.creation.default.replication.factor", "-1") == "-1"
    assert configs[connector_name("health")]["schema.history.internal.producer.acks"] == "all"
    connect = REPO_ROOT / "deploy" / "local" / "connect-distributed.properties"
    internal = [line for line in connect.read_text().splitlines() if ".replication.factor=" in line]
    assert len(internal) == 3 and all(line.endswith("=-1") for line in internal)
