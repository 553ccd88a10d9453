"""MirrorMaker 2's configuration on a receiving node, read back from the file govsync
writes: only the flows from upstream nodes into this one, only the topics they deliver to
this node, with the password each upstream issued."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from govsync.stack import mirror
from streams.config.settings import Settings
from streams.contract.topics import mirror_target_alias, upstream_delivery_topic
from streams.kafka import credentials
from tests.unit.examples import PROVINCE, TOPOLOGY

PEER_PASSWORD = "issued-by-the-city"


def properties(path: str) -> dict[str, str]:
    """A .properties file as key -> value (comments and blank lines left out)."""
    lines = Path(path).read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    """A state directory holding the password the city issued to the province."""
    settings = Settings(state_dir=tmp_path)
    path = credentials.peer_password_file(settings, "city", "kafka")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{PEER_PASSWORD}\n")
    path.chmod(0o600)
    return settings


def test_the_province_mirrors_only_what_the_city_delivers_to_it(settings: Settings) -> None:
    rendered = mirror.render(settings, PROVINCE)
    assert rendered == str(settings.path("mirror", "mirror-maker.properties"))
    config = properties(rendered)
    assert config["clusters"] == "province-local, city"
    assert config["city->province-local.enabled"] == "true"
    assert config["city->province-local.topics"] == "deliver[.]province[.]enterprise"
    assert config["province-local->city.enabled"] == "false"  # each node runs its own inflow
    assert config["offset-syncs.topic.location"] == "target"  # nothing written upstream
    for never_copied in ("sync.topic.acls", "sync.topic.configs", "sync.group.offsets"):
        assert config[f"{never_copied}.enabled"] == "false"
    assert config["province-local.bootstrap.servers"] == settings.bootstrap
    assert config["city.bootstrap.servers"] == "127.0.0.1:19092"


def test_it_logs_in_upstream_as_its_department_there_and_here_as_mirror(
    settings: Settings,
) -> None:
    config = properties(mirror.render(settings, PROVINCE) or "")
    assert config["city.sasl.jaas.config"] == credentials.jaas("province", PEER_PASSWORD)
    assert config["city.sasl.mechanism"] == credentials.MECHANISM
    here = credentials.password(settings, credentials.MIRROR)
    assert config["province-local.sasl.jaas.config"] == credentials.jaas("mirror", here)
    assert config["province-local.security.protocol"] == settings.kafka_protocol


def test_the_configuration_holding_passwords_is_the_owners_only(settings: Settings) -> None:
    rendered = mirror.render(settings, PROVINCE)
    assert rendered is not None
    assert stat.S_IMODE(Path(rendered).stat().st_mode) == 0o600
    assert PEER_PASSWORD in Path(rendered).read_text()


def test_without_the_upstreams_password_it_says_where_to_put_it(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    expected = credentials.peer_password_file(settings, "city", "kafka")
    with pytest.raises(credentials.PeerLoginMissing, match=str(expected)) as missing:
        mirror.render(settings, PROVINCE)
    assert "upstream node city" in str(missing.value)
    assert not settings.path("mirror", "mirror-maker.properties").exists()


def test_a_node_without_upstreams_runs_no_mirror(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    assert mirror.render(settings, TOPOLOGY) is None
    assert PROVINCE.federation is not None
    alone = PROVINCE.model_copy(
        update={"federation": PROVINCE.federation.model_copy(update={"upstreams": []})}
    )
    assert mirror.render(settings, alone) is None
    assert not settings.path("mirror").exists()


def test_one_upstream_config_lists_each_entity_as_an_exact_topic() -> None:
    assert PROVINCE.federation is not None
    (city,) = PROVINCE.federation.upstreams
    topics = ["deliver[.]province[.]enterprise", "deliver[.]province[.]person"]
    lines = mirror.upstream_config(city, "province-local", "secret", topics).splitlines()
    assert lines[0] == f"city.bootstrap.servers = {city.bootstrap}"
    assert f"city->province-local.topics = {topics[0]}, {topics[1]}" in lines
    assert lines[-1] == "province-local->city.enabled = false"


def java_properties(path: str) -> dict[str, str]:
    """The file as java.util.Properties.load reads it (MirrorMaker's Utils.loadProps): a
    backslash escapes the next character, and before one with no special meaning it is
    silently dropped."""
    special = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
    return {
        key: re.sub(r"\\(.)", lambda m: special.get(m[1], m[1]), value)
        for key, value in properties(path).items()
    }


def test_the_topic_regex_mirror_maker_reads_has_literal_dots(settings: Settings) -> None:
    config = java_properties(mirror.render(settings, PROVINCE) or "")
    pattern = re.compile(config["city->province-local.topics"])
    assert pattern.fullmatch("deliver.province.enterprise")
    assert not pattern.fullmatch("deliver-province-enterprise")


def test_the_running_mirrors_upstreams_are_read_from_its_applied_configuration(
    settings: Settings,
) -> None:
    assert mirror.upstreams(settings) == []  # never started
    rendered = mirror.render(settings, PROVINCE)
    assert rendered is not None
    applied = settings.path("mirror", "running.properties")
    applied.write_text(Path(rendered).read_text())
    assert mirror.upstreams(settings) == ["city"]


def test_only_committed_deliveries_are_mirrored(settings: Settings) -> None:
    config = properties(mirror.render(settings, PROVINCE) or "")
    assert config["city.consumer.isolation.level"] == "read_committed"


def test_with_tls_mirror_maker_trusts_this_nodes_brokers(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, kafka_tls=True)
    path = credentials.peer_password_file(settings, "city", "kafka")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PEER_PASSWORD)
    config = properties(mirror.render(settings, PROVINCE) or "")
    assert config["province-local.security.protocol"] == "SASL_SSL"
    assert config["province-local.ssl.truststore.location"]


def test_no_part_of_a_mirrored_topic_names_the_target_cluster() -> None:
    """MirrorMaker's default policy skips a topic as a cycle when any dot-separated part
    equals the target cluster's alias; the province's department at the city is called
    province, so the alias must not be."""
    assert PROVINCE.federation is not None
    alias = mirror_target_alias(PROVINCE.federation.node)
    for inbound in PROVINCE.inbound:
        assert alias not in upstream_delivery_topic(inbound).split(".")
