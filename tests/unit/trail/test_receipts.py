"""The receipt SLA book: deliveries without a receipt, awaited or overdue, whatever order
deliveries and receipts are read in."""

from __future__ import annotations

from streams.contract.records import Hop
from streams.trail.receipts import Awaiting, window
from tests.unit.examples import TOPOLOGY

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000


def hop(stage: str, event_id: str, subscription: str, at: int) -> Hop:
    return Hop(
        event_id=event_id,
        stage=stage,  # type: ignore[arg-type]
        kind="updated",
        entity="enterprise",
        entity_key="91310000MA1FL8XQ30",
        department=subscription.split(".")[0],
        subscription=subscription,
        topic="t",
        partition=0,
        offset=0,
        at_ms=T0 + at,
        source_ts_ms=T0,
    )


def unanswered(book: Awaiting, now: int) -> list[tuple[str, str, bool]]:
    return [(w.event_id, w.subscription, w.overdue) for w in book.unanswered(TOPOLOGY, T0 + now)]


def test_a_delivery_is_awaited_until_its_receipt_and_overdue_past_receipt_within() -> None:
    book = Awaiting()
    book.feed(hop("delivered", "e1", "tax.enterprise", 0))
    book.feed(hop("delivered", "e1", "social_security.enterprise", 0))
    assert unanswered(book, HOUR_MS) == [
        ("e1", "tax.enterprise", False),
        ("e1", "social_security.enterprise", False),
    ]
    # tax must answer within 1h, social security within 4h
    assert ("e1", "tax.enterprise", True) in unanswered(book, HOUR_MS + 1)
    assert ("e1", "social_security.enterprise", False) in unanswered(book, HOUR_MS + 1)
    book.feed(hop("receipt", "e1", "tax.enterprise", HOUR_MS + 5))
    assert unanswered(book, HOUR_MS + 10) == [("e1", "social_security.enterprise", False)]


def test_deliveries_of_a_removed_subscription_are_no_longer_awaited() -> None:
    book = Awaiting()
    book.feed(hop("delivered", "e1", "tax.enterprise", 0))
    book.feed(hop("delivered", "e1", "civil_affairs.enterprise", 0))  # not in the topology
    assert unanswered(book, 10) == [("e1", "tax.enterprise", False)]


def test_a_receipt_read_before_its_delivery_still_answers_it() -> None:
    book = Awaiting()
    book.feed(hop("receipt", "e1", "tax.enterprise", 10))
    book.feed(hop("delivered", "e1", "tax.enterprise", 0))
    book.feed(hop("delivered", "e1", "tax.enterprise", 0))  # read again after an abort
    assert unanswered(book, 20) == []


def test_repeated_hops_count_once_and_other_stages_are_ignored() -> None:
    book = Awaiting()
    for _ in range(3):
        book.feed(hop("delivered", "e2", "tax.enterprise", 0))
    book.feed(hop("normalized", "e3", "tax.enterprise", 0))
    assert unanswered(book, 1) == [("e2", "tax.enterprise", False)]


def test_the_look_back_window_is_twice_the_longest_receipt_within_and_at_least_a_day() -> None:
    assert window(TOPOLOGY).total_seconds() == 24 * 3600  # 2 × 4h is under a day
