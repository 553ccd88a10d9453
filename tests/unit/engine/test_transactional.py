"""The engine's reading of consumer errors: a fatal one ends the session, others do not."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from streams.engine.transactional import _is_record


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
