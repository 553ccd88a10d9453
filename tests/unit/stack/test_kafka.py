"""The KRaft nodes' configurations for one and for three nodes, and how their storage is
formatted: read back from the files govsync writes, as Kafka reads them; ids the storage
tool accepts."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from govsync.stack import kafka
from govsync.stack.process import StackError
from streams.config.settings import Settings


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    """kafka-storage reads ``-t -Ab…`` as a missing argument; one random id in 64 began
    with ``-`` and its format failed. The controllers' directory ids are drawn alike."""
    for _ in range(5_000):
        cluster_id = kafka._kafka_uuid()
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def properties(path: str) -> dict[str, str]:
    """A .properties file as key -> value (comments and blank lines left out)."""
    lines = Path(path).read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def rendered(settings: Settings) -> list[dict[str, str]]:
    return [properties(kafka.render_config(settings, node)) for node in kafka.nodes(settings)]


def test_one_node_is_configured_as_the_single_broker_always_was(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    (node,) = kafka.nodes(settings)
    assert (node.name, node.directory, node.id) == ("kafka", tmp_path / "kafka", 1)
    (config,) = rendered(settings)
    assert config["node.id"] == "1"
    assert config["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert config["listeners"] == "CLIENT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert config["advertised.listeners"] == "CLIENT://127.0.0.1:19092"
    assert config["log.dirs"] == str(tmp_path / "kafka" / "data")
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
        "min.insync.replicas",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.min.isr",
    ):
        assert config[key] == "1", key
    assert kafka.quorum_arguments(settings, {1: "ignored"}) == ["--standalone"]


def test_three_nodes_share_one_quorum_each_on_its_own_ports_and_directory(
    tmp_path: Path,
) -> None:
    settings = Settings(state_dir=tmp_path, kafka_brokers=3)
    nodes = kafka.nodes(settings)
    assert [(n.id, n.name, n.port, n.controller_port) for n in nodes] == [
        (1, "kafka", 19092, 19093),
        (2, "kafka-2", 19094, 19095),
        (3, "kafka-3", 19096, 19097),
    ]
    configs = rendered(settings)
    quorum = "127.0.0.1:19093,127.0.0.1:19095,127.0.0.1:19097"
    for node, config in zip(nodes, configs, strict=True):
        assert config["node.id"] == str(node.id)
        assert config["process.roles"] == "broker,controller"
        assert config["controller.quorum.bootstrap.servers"] == quorum
        assert "controller.quorum.voters" not in config  # the voters are in the log
        assert config["listeners"] == (
            f"CLIENT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}"
        )
        assert config["advertised.listeners"] == f"CLIENT://127.0.0.1:{node.port}"
        assert config["log.dirs"] == str(node.data_dir)
        assert Path(node.config_path).stat().st_mode & 0o777 == 0o600  # it holds passwords
    assert len({n.data_dir for n in nodes}) == 3


def test_three_nodes_replicate_every_topic_three_times_and_need_two_in_sync(
    tmp_path: Path,
) -> None:
    settings = Settings(state_dir=tmp_path, kafka_brokers=3)
    for config in rendered(settings):
        for key in (
            "default.replication.factor",
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
            "share.coordinator.state.topic.replication.factor",
        ):
            assert config[key] == "3", key
        for key in (
            "min.insync.replicas",
            "transaction.state.log.min.isr",
            "share.coordinator.state.topic.min.isr",
        ):
            assert config[key] == "2", key
        assert config["auto.create.topics.enable"] == "false"
        assert config["auto.leader.rebalance.enable"] == "false"  # no second stall


def test_three_nodes_are_formatted_with_the_same_initial_controllers(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, kafka_brokers=3)
    arguments = kafka.quorum_arguments(settings, {1: "AAAA", 2: "BBBB", 3: "CCCC"})
    assert arguments == [
        "--initial-controllers",
        "1@127.0.0.1:19093:AAAA,2@127.0.0.1:19095:BBBB,3@127.0.0.1:19097:CCCC",
    ]


def formatted(node: kafka.Node, nodes: int | None) -> None:
    """Leave the files formatting leaves (``nodes`` None: as before the marker existed)."""
    node.data_dir.mkdir(parents=True)
    (node.data_dir / "meta.properties").write_text("node.id=1\n")
    (node.data_dir / kafka.SECURED_MARKER).write_text("")
    if nodes is not None:
        (node.data_dir / kafka.NODES_MARKER).write_text(f"{nodes}\n")


def test_storage_formatted_for_one_node_is_refused_for_three(tmp_path: Path) -> None:
    one = Settings(state_dir=tmp_path)
    formatted(kafka.nodes(one)[0], None)
    with pytest.raises(StackError, match="formatted for 1 Kafka node"):
        kafka._format_storage(Settings(state_dir=tmp_path, kafka_brokers=3))
    kafka._format_storage(one)  # and left as it is for one: nothing to do


def test_storage_formatted_for_three_nodes_is_refused_for_one(tmp_path: Path) -> None:
    three = Settings(state_dir=tmp_path, kafka_brokers=3)
    for node in kafka.nodes(three):
        formatted(node, 3)
    with pytest.raises(StackError, match="formatted for 3 Kafka node"):
        kafka._format_storage(Settings(state_dir=tmp_path))
    kafka._format_storage(three)


def test_a_node_without_storage_beside_formatted_ones_is_refused(tmp_path: Path) -> None:
    three = Settings(state_dir=tmp_path, kafka_brokers=3)
    for node in kafka.nodes(three)[:2]:
        formatted(node, 3)
    with pytest.raises(StackError, match="kafka-3 have no storage"):
        kafka._format_storage(three)


def test_down_stops_every_node_a_stack_may_have() -> None:
    from govsync.stack import embedded

    assert kafka.PROGRAMS in embedded.STACK_PROCESSES
    assert set(kafka.PROGRAMS) >= {n.name for n in kafka.nodes(Settings(kafka_brokers=3))}
