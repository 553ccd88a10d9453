"""The receipt SLA: deliveries a department has not answered on ``govsync.receipts``, and
which of them are past their subscription's ``receipt_within``.

Fed with the delivered and receipt hops of ``govsync.trace`` in any order (a receipt can
be read before its delivery: they are different topics). The monitor keeps one, fed as
the trace grows, for the whole pipeline (the trace holds every worker's hops, so the
count does not depend on how many workers share the ledger's work); `govsync receipts
overdue` builds one from the trace. Both look back a bounded window: twice the longest
``receipt_within``, at least a day. A delivery unanswered for longer than that is not
counted after a restart (docs/architecture.md, state).
"""

from __future__ import annotations

import time
from datetime import timedelta

from pydantic import BaseModel

from streams.config.settings import Settings
from streams.contract.records import Hop
from streams.contract.topics import TRACE_TOPIC
from streams.kafka import topic_reader
from streams.model.topology import Topology
from streams.trail import lineage

MIN_WINDOW = timedelta(days=1)


class Unanswered(BaseModel):
    event_id: str
    subscription: str
    department: str
    entity_key: str
    delivered_at_ms: int
    waited_ms: int
    receipt_within_ms: int

    @property
    def overdue(self) -> bool:
        return self.waited_ms > self.receipt_within_ms


def window(topology: Topology) -> timedelta:
    longest = max((s.sla.receipt_within for s in topology.subscriptions), default=MIN_WINDOW)
    return max(2 * longest, MIN_WINDOW)


class Awaiting:
    """Deliveries without a receipt yet, by (subscription, event_id)."""

    def __init__(self) -> None:
        self._delivered: dict[tuple[str, str], Hop] = {}
        # Receipts seen, whether before or after their delivery: a delivery read again
        # (a batch redone after an abort) must not count as unanswered. Pruned by age.
        self._answered: dict[tuple[str, str], int] = {}

    def feed(self, hop: Hop) -> None:
        if hop.stage not in ("delivered", "receipt") or hop.subscription is None:
            return
        key = (hop.subscription, hop.event_id)
        if hop.stage == "receipt":
            self._delivered.pop(key, None)
            self._answered.setdefault(key, hop.at_ms)
        elif key not in self._answered:
            self._delivered.setdefault(key, hop)

    def unanswered(self, topology: Topology, now_ms: int) -> list[Unanswered]:
        """Deliveries of the subscriptions in ``topology`` still without a receipt. Those
        of a subscription since removed are awaited no more: nobody owes their answer."""
        limits = {
            s.id: int(s.sla.receipt_within.total_seconds() * 1000) for s in topology.subscriptions
        }
        horizon = now_ms - int(window(topology).total_seconds() * 1000)
        for key in [k for k, at in self._answered.items() if at < horizon]:
            del self._answered[key]  # its delivery is older than anything still read
        waiting = list(self._delivered.values())
        return sorted(
            (
                Unanswered(
                    event_id=hop.event_id,
                    subscription=hop.subscription or "",
                    department=hop.department or "",
                    entity_key=hop.entity_key,
                    delivered_at_ms=hop.at_ms,
                    waited_ms=now_ms - hop.at_ms,
                    receipt_within_ms=limits.get(hop.subscription or "", 0),
                )
                for hop in waiting
                if hop.subscription in limits
            ),
            key=lambda u: u.delivered_at_ms,
        )


def window_start(settings: Settings, topology: Topology) -> topic_reader.Offsets:
    """Where the look-back window begins on ``govsync.trace``."""
    start_ms = int(time.time() * 1000 - window(topology).total_seconds() * 1000)
    return topic_reader.since(settings.bootstrap, [TRACE_TOPIC], start_ms)


def from_trace(settings: Settings, topology: Topology) -> Awaiting:
    """The book as ``govsync.trace`` has it over the look-back window."""
    book = Awaiting()
    for hop in lineage.read(
        settings, stages={"delivered", "receipt"}, start=window_start(settings, topology)
    ):
        book.feed(hop)
    return book
