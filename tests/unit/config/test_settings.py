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
