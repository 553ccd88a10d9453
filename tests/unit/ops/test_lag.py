"""The lag report's verdicts: status against the subscription's SLA, and each group's state."""

from __future__ import annotations

from govsync.ops.lag import PartitionLag, _group_lag, _status
from tests.unit.examples import TAX

# tax.enterprise: deliver_within 5s, receipt_within 1h


def row(lag: int, seconds: float | None, state: str = "committed") -> PartitionLag:
    return PartitionLag(
        topic="deliver.tax.enterprise",
        partition=0,
        committed=None if state == "no_commit" else 10,
        end=10 + lag,
        lag=lag,
        lag_seconds=seconds,
        state=state,  # type: ignore[arg-type]
    )


def test_status_is_green_within_deliver_within_yellow_within_receipt_within_then_red() -> None:
    assert _status(0, None, TAX) == "green"
    assert _status(3, 4.9, TAX) == "green"
    assert _status(3, 5.1, TAX) == "yellow"
    assert _status(3, 3600.0, TAX) == "yellow"
    assert _status(3, 3600.1, TAX) == "red"
    assert _status(3, None, TAX) == "yellow"  # behind, age unknown (the probe timed out)


def test_a_group_takes_its_oldest_partition_and_the_sum_of_their_lag() -> None:
    group = _group_lag("tax.enterprise", "tax", "tax-sink", "t", [row(2, 1.0), row(5, 7.5)], TAX)
    assert (group.lag, group.lag_seconds, group.status, group.state) == (
        7,
        7.5,
        "yellow",
        "consuming",
    )


def test_states_say_why_nothing_is_consumed() -> None:
    never = _group_lag("tax.enterprise", "tax", "tax-x", "t", [row(4, 2.0, "no_commit")], TAX)
    assert never.state == "no_commits"
    sleeping = _group_lag("tax.enterprise", "tax", None, "t", [row(4, 9000.0, "no_commit")], TAX)
    assert (sleeping.state, sleeping.status) == ("no_group", "red")
    gone = _group_lag(
        "tax.enterprise", "tax", "tax-sink", "t", [row(0, None, "topic_missing")], TAX
    )
    assert (gone.state, gone.status) == ("topic_missing", "red")
