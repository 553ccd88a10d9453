"""The engine's reading of what the consumer returns: a fatal error ends the session,
others do not; a record returned twice, or from a revoked partition, is not processed."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from streams.engine.transactional import Fetched, _is_record

TOPIC = "deliver.tax.enterprise"


def records(partition: int, *offsets: int) -> list[Message]:
    return [Message(topic=TOPIC, partition=partition, offset=o, value=b"x") for o in offsets]


def offsets(messages: list[Message]) -> list[tuple[int, int]]:
    return [(m.partition(), m.offset()) for m in messages]


def test_a_fatal_consumer_error_ends_the_session() -> None:
    fenced = KafkaError(KafkaError._FATAL, "Static consumer fenced", fatal=True)
    with pytest.raises(KafkaException):
        _is_record(Message(error=fenced))


def test_a_fenced_static_member_ends_the_session_even_when_not_flagged_fatal() -> None:
    """Seen after a broker restart: code _FATAL, but fatal() false on the message's error;
    logging it and polling on left the route stage dead for the rest of the run."""
    fenced = KafkaError(KafkaError._FATAL, "Static consumer fenced by other consumer")
    assert not fenced.fatal()
    with pytest.raises(KafkaException):
        _is_record(Message(error=fenced))


def test_end_of_partition_and_passing_errors_are_not_records_and_go_on() -> None:
    assert not _is_record(Message(error=KafkaError(KafkaError._PARTITION_EOF)))
    assert not _is_record(Message(error=KafkaError(KafkaError._TRANSPORT, "broker down")))
    assert _is_record(Message(topic="changes.enterprise", value=b"x"))


def test_a_range_returned_again_in_a_session_is_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fetched = Fetched("ledger")
    fetched.assigned([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
    assert offsets(fetched.fresh(records(0, 5, 6, 7) + records(1, 3))) == [
        (0, 5),
        (0, 6),
        (0, 7),
        (1, 3),
    ]
    with caplog.at_level(logging.WARNING):
        assert offsets(fetched.fresh(records(0, 6, 7, 8) + records(1, 4))) == [(0, 8), (1, 4)]
    assert "dropped 2 records of deliver.tax.enterprise[0] (offsets 6-7)" in caplog.text


def test_records_of_a_partition_no_longer_assigned_are_dropped() -> None:
    fetched = Fetched("ledger")
    fetched.assigned([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
    fetched.fresh(records(0, 1))
    fetched.revoked()
    fetched.assigned([TopicPartition(TOPIC, 1)])
    assert offsets(fetched.fresh(records(0, 2) + records(1, 0))) == [(1, 0)]


def test_a_new_assignment_reads_from_the_committed_offset_again() -> None:
    """Within one consume call: the old assignment's records, the rebalance, then the same
    records from the committed offset: each is processed once."""
    fetched = Fetched("ledger")
    fetched.assigned([TopicPartition(TOPIC, 0)])
    fetched.fresh(records(0, 10, 11))
    fetched.assigned([TopicPartition(TOPIC, 0)])
    assert offsets(fetched.fresh(records(0, 10, 11, 10, 11, 12))) == [(0, 10), (0, 11), (0, 12)]


def test_after_a_rewind_the_batch_is_read_again() -> None:
    fetched = Fetched("route")
    fetched.assigned([TopicPartition(TOPIC, 0)])
    fetched.fresh(records(0, 10, 11, 12))
    fetched.rewound({(TOPIC, 0): 10})
    assert offsets(fetched.fresh(records(0, 10, 11, 12))) == [(0, 10), (0, 11), (0, 12)]
