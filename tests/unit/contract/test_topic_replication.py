"""Each topic's replication factor: the topology's when it names one, else the cluster's."""

from __future__ import annotations

from streams.contract.topics import topic_specs
from streams.model.topology import KafkaSettings
from tests.unit.examples import TOPOLOGY


def test_without_a_replication_factor_every_topic_takes_the_clusters() -> None:
    assert KafkaSettings().replication_factor is None
    topology = TOPOLOGY.model_copy(
        update={"kafka": TOPOLOGY.kafka.model_copy(update={"replication_factor": None})}
    )
    assert {spec.replication_factor for spec in topic_specs(topology)} == {None}


def test_a_named_replication_factor_is_every_topics() -> None:
    topology = TOPOLOGY.model_copy(
        update={"kafka": TOPOLOGY.kafka.model_copy(update={"replication_factor": 3})}
    )
    assert {spec.replication_factor for spec in topic_specs(topology)} == {3}
