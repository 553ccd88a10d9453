"""Known failures become one line and an exit code that says what kind of failure it was."""

from __future__ import annotations

import pytest
import typer

from govsync.cli.output import EXIT_UNAVAILABLE, errors
from streams.kafka.admin import BrokerUnreachable
from streams.kafka.topic_reader import StalledRead


@pytest.mark.parametrize(
    "failure",
    [
        BrokerUnreachable("Kafka is not reachable: 127.0.0.1:19092"),
        StalledRead("reading [('govsync.topology', 0)]: no end within 30s"),
    ],
)
def test_kafka_that_does_not_answer_is_unavailable(
    failure: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exited, errors():
        raise failure
    assert exited.value.exit_code == EXIT_UNAVAILABLE
    assert str(failure) in capsys.readouterr().err


def test_an_unknown_failure_keeps_its_traceback() -> None:
    with pytest.raises(KeyError), errors():
        raise KeyError("not a known failure")
