"""Settings of the Kafka nodes: how many, their ports, the bootstrap list clients get."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.config.settings import Settings


def test_one_broker_is_the_default_and_bootstraps_as_before() -> None:
    settings = Settings()
    assert settings.kafka_brokers == 1
    assert settings.bootstrap == "127.0.0.1:19092"
    assert (settings.kafka_ports, settings.controller_ports) == ([19092], [19093])


def test_three_brokers_take_every_second_port_and_all_are_bootstrapped() -> None:
    settings = Settings(kafka_brokers=3)
    assert settings.kafka_ports == [19092, 19094, 19096]
    assert settings.controller_ports == [19093, 19095, 19097]
    assert settings.bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"


def test_the_broker_count_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVSYNC_KAFKA_BROKERS", "3")
    monkeypatch.setenv("GOVSYNC_KAFKA_PORT", "29092")
    monkeypatch.setenv("GOVSYNC_CONTROLLER_PORT", "29093")
    assert Settings.from_env().bootstrap == "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"


@pytest.mark.parametrize("brokers", [0, 2, 4, 5])
def test_other_broker_counts_are_refused_with_the_reason(brokers: int) -> None:
    with pytest.raises(
        ValidationError, match=f"GOVSYNC_KAFKA_BROKERS is {brokers}; it must be 1 or 3"
    ):
        Settings(kafka_brokers=brokers)


@pytest.mark.parametrize(
    "ports",
    [
        {"kafka_brokers": 3, "controller_port": 19094},  # node 2's client port
        {"kafka_brokers": 3, "connect_port": 19096},  # node 3's client port
        {"kafka_brokers": 1, "kafka_port": 18083},  # Connect's
    ],
)
def test_kafka_ports_may_not_overlap_each_other_or_another_component(
    ports: dict[str, int],
) -> None:
    with pytest.raises(ValidationError, match="overlap"):
        Settings(**ports)


def test_every_service_is_on_host_unless_given_its_own_address() -> None:
    settings = Settings()
    assert (settings.kafka_bootstrap, settings.registry_base, settings.connect_base) == (
        None,
        None,
        None,
    )
    assert (settings.pg_host, settings.bind_host) == (None, None)
    assert settings.registry_base_url == "http://127.0.0.1:18080"
    assert settings.registry_url == "http://127.0.0.1:18080/apis/ccompat/v7"
    assert settings.connect_url == "http://127.0.0.1:18083"
    assert settings.pg_address == "127.0.0.1"
    assert settings.pg_conninfo("tax") == "host=127.0.0.1 port=55432 user=govsync dbname=tax"
    assert settings.listen_host == "127.0.0.1"
    assert Settings(registry_tls=True).registry_base_url == "https://127.0.0.1:18080"


def test_each_services_address_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOVSYNC_HOST", "10.0.0.7")
    monkeypatch.setenv("GOVSYNC_KAFKA_BOOTSTRAP", "kafka-0:9093,kafka-1:9093")
    monkeypatch.setenv("GOVSYNC_KAFKA_BROKERS", "3")  # ignored by an explicit bootstrap
    monkeypatch.setenv("GOVSYNC_REGISTRY_BASE", "http://govsync-registry:8080/")
    monkeypatch.setenv("GOVSYNC_REGISTRY_TLS", "true")  # the scheme is the base URL's
    monkeypatch.setenv("GOVSYNC_CONNECT_BASE", "http://govsync-connect-api:8083")
    monkeypatch.setenv("GOVSYNC_PG_HOST", "govsync-index-db")
    monkeypatch.setenv("GOVSYNC_BIND_HOST", "0.0.0.0")
    settings = Settings.from_env()
    assert settings.bootstrap == "kafka-0:9093,kafka-1:9093"
    assert settings.registry_base_url == "http://govsync-registry:8080"
    assert settings.registry_url == "http://govsync-registry:8080/apis/ccompat/v7"
    assert settings.registry_native_url == "http://govsync-registry:8080/apis/registry/v2"
    assert settings.connect_url == "http://govsync-connect-api:8083"
    assert settings.pg_address == "govsync-index-db"
    assert settings.pg_conninfo("tax") == (
        "host=govsync-index-db port=55432 user=govsync dbname=tax"
    )
    assert settings.listen_host == "0.0.0.0"
    assert settings.host == "10.0.0.7"  # still what is advertised


@pytest.mark.parametrize(
    ("values", "listen"),
    [
        ({}, "127.0.0.1"),
        ({"host": "192.0.2.1"}, "192.0.2.1"),
        ({"bind_host": "0.0.0.0"}, "0.0.0.0"),
        ({"host": "192.0.2.1", "bind_host": "::"}, "::"),
    ],
)
def test_govsyncs_servers_listen_on_bind_host_or_else_host(
    values: dict[str, str], listen: str
) -> None:
    assert Settings(**values).listen_host == listen
