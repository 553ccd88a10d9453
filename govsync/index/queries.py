"""Questions the operations tools ask, answered from the index by key: one change's hops,
an entity's audit entries, the receipts still awaited. Each is an index lookup whose cost
does not depend on how much history the topics hold."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row

from govsync.index import store
from govsync.index.indexer import HOP_COLUMNS, wait_for
from streams.config.settings import Settings
from streams.contract.records import AuditRecord, Hop
from streams.model.topology import Topology
from streams.trail.receipts import Unanswered

_HOP_FIELDS = ", ".join(f'"{c}"' for c in HOP_COLUMNS[2:])
# How long a question waits for the index to reflect what the topics held when it was
# asked; past that it is answered as the index stands, and says how far behind it is.
CURRENT_WITHIN_S = 10.0


@contextmanager
def current(
    settings: Settings, timeout: float = CURRENT_WITHIN_S
) -> Iterator[tuple[psycopg.Connection, int]]:
    """A reading connection once the index has caught up with the trail topics as they
    are now (or ``timeout`` passed), and how many records it still lacks (0: none)."""
    with store.reading(settings) as conn:
        yield conn, wait_for(settings, conn, timeout)


def hops(conn: psycopg.Connection, query: str) -> list[Hop]:
    """The hops of the change with event_id ``query``, or of every change of entity key
    ``query``."""
    rows = conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_HOP_FIELDS}, topic_partition, topic_offset FROM hop "
        "WHERE event_id = %(q)s OR entity_key = %(q)s",
        {"q": query},
    )
    return [
        Hop.model_validate(
            {**row, "partition": row["topic_partition"], "offset": row["topic_offset"]}
        )
        for row in rows
    ]


def audit_entries(conn: psycopg.Connection, key: str) -> dict[int, list[tuple[int, AuditRecord]]]:
    """The audit links that name entity ``key``, by chain (partition), in chain order."""
    rows = conn.cursor(row_factory=dict_row).execute(
        'SELECT * FROM audit_entry WHERE entity_key = %s ORDER BY partition, "offset"', (key,)
    )
    chains: dict[int, list[tuple[int, AuditRecord]]] = {}
    for row in rows:
        partition, offset = row.pop("partition"), row.pop("offset")
        chains.setdefault(partition, []).append((offset, AuditRecord.model_validate(row)))
    return chains


def unanswered(conn: psycopg.Connection, topology: Topology, now_ms: int) -> list[Unanswered]:
    """Deliveries of the subscriptions in ``topology`` still without a receipt, oldest
    first. Those of a subscription since removed are awaited no more."""
    limits = {
        s.id: int(s.sla.receipt_within.total_seconds() * 1000) for s in topology.subscriptions
    }
    rows = conn.execute(
        "SELECT subscription, event_id, department, entity_key, delivered_at_ms FROM awaited "
        "WHERE subscription = ANY(%s) ORDER BY delivered_at_ms",
        (list(limits),),
    )
    return [
        Unanswered(
            event_id=event_id,
            subscription=subscription,
            department=department,
            entity_key=entity_key,
            delivered_at_ms=delivered_at_ms,
            waited_ms=now_ms - delivered_at_ms,
            receipt_within_ms=limits[subscription],
        )
        for subscription, event_id, department, entity_key, delivered_at_ms in rows
    ]
