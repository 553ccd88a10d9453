"""Questions the operations tools ask, answered from the index by key: one change's hops,
an entity's audit entries, the receipts still awaited, the held records and the
dead-letter accounting. Each is an index lookup whose cost does not depend on how much
history the topics hold."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import dict_row

from govsync.index import store
from govsync.index.freshness import wait_for
from streams.config.settings import Settings
from streams.contract.objections import ObjectionState, Step
from streams.contract.records import AuditRecord, Closure, HeldRecord, Hop
from streams.model.topology import Topology
from streams.trail.receipts import Unanswered

_HOP_FIELDS = ", ".join(f'"{c}"' for c in store.HOP_COLUMNS[2:])
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
    return _hops(conn, "event_id = %(q)s OR entity_key = %(q)s", {"q": query})


def _hops(conn: psycopg.Connection, where: str, params: dict[str, Any]) -> list[Hop]:
    """Hops from rows: ``partition`` and ``offset`` are the position the hop describes."""
    rows = conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_HOP_FIELDS}, topic_partition, topic_offset FROM hop WHERE {where}", params
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


_HELD = """
SELECT d.partition, d."offset", d.error_code, d.error_message, d.source_topic,
    d.source_partition, d.source_offset, d.dead_lettered_at_ms,
    c.outcome, c.closed_at, c.reprocess_id, c.event_id
FROM dead_letter d LEFT JOIN closure c ON c.partition = d.partition AND c."offset" = d."offset"
WHERE (%(all)s OR c.outcome IS NULL)
    AND (%(partitions)s::int[] IS NULL OR (d.partition, d."offset") IN (
        SELECT * FROM unnest(%(partitions)s::int[], %(offsets)s::bigint[])))
ORDER BY d.partition, d."offset"
LIMIT %(limit)s
"""


def held(
    conn: psycopg.Connection,
    *,
    closed_too: bool = False,
    positions: list[tuple[int, int]] | None = None,
    limit: int | None = None,
) -> list[HeldRecord]:
    """Held records on the dead-letter queue, open ones only unless ``closed_too``, in
    queue order; only those at ``positions`` ((partition, offset) on govsync.dlq) if given."""
    rows = conn.execute(
        _HELD,
        {
            "all": closed_too,
            "partitions": None if positions is None else [p for p, _ in positions],
            "offsets": None if positions is None else [o for _, o in positions],
            "limit": limit,
        },
    )
    return [
        HeldRecord(
            position=f"{partition}:{offset}",
            error_code=code,
            error_message=message,
            source_topic=topic,
            source_partition=source_partition,
            source_offset=source_offset,
            dead_lettered_at=None
            if at_ms is None
            else datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(),
            closure=None
            if outcome is None
            else Closure(
                outcome=outcome, closed_at=closed_at, reprocess_id=reprocess_id, event_id=event_id
            ),
        )
        for (
            partition,
            offset,
            code,
            message,
            topic,
            source_partition,
            source_offset,
            at_ms,
            outcome,
            closed_at,
            reprocess_id,
            event_id,
        ) in rows
    ]


class Outcomes(NamedTuple):
    """What became of one cdc partition's records, as far as the index has read: change
    events counted from ``first_offset`` (the lowest cdc offset one was made from; None
    before the first), and the records held on the dead-letter queue."""

    normalized: int
    first_offset: int | None
    dead_lettered: int  # held records at or after first_offset (all, when it is None)
    first_dead_letter: int | None
    held: int  # every held record of the partition
    held_open: int
    reprocessed: int


_DEAD_LETTERS = """
SELECT d.source_topic, d.source_partition,
    count(*) FILTER (WHERE n.first_offset IS NULL OR d.source_offset >= n.first_offset),
    min(d.source_offset),
    count(*),
    count(*) FILTER (WHERE c.outcome IS NULL),
    count(*) FILTER (WHERE c.outcome = 'reprocessed')
FROM dead_letter d
LEFT JOIN closure c ON c.partition = d.partition AND c."offset" = d."offset"
LEFT JOIN normalized n
    ON n.source_topic = d.source_topic AND n.source_partition = d.source_partition
WHERE d.source_topic = ANY(%s)
GROUP BY 1, 2
"""


def outcomes(conn: psycopg.Connection, cdc_topics: list[str]) -> dict[tuple[str, int], Outcomes]:
    """Per cdc partition of ``cdc_topics``: the counters the accounting balances."""
    found: dict[tuple[str, int], Outcomes] = {}
    for topic, partition, records, first in conn.execute(
        "SELECT source_topic, source_partition, records, first_offset FROM normalized"
        " WHERE source_topic = ANY(%s)",
        (cdc_topics,),
    ):
        found[(topic, partition)] = Outcomes(records, first, 0, None, 0, 0, 0)
    for topic, partition, counted, lowest, total, still_open, reprocessed in conn.execute(
        _DEAD_LETTERS, (cdc_topics,)
    ):
        normalized, first = found.get((topic, partition), Outcomes(0, None, 0, None, 0, 0, 0))[:2]
        found[(topic, partition)] = Outcomes(
            normalized, first, counted, lowest, total, still_open, reprocessed
        )
    return found


def newest_source_ts(conn: psycopg.Connection, entity: str, keys: list[str]) -> dict[str, int]:
    """Entity key -> commit time of the newest change normalized for it (what master
    holds, once the route has merged it)."""
    rows = conn.execute(
        "SELECT entity_key, max(source_ts_ms) FROM hop WHERE entity_key = ANY(%s)"
        " AND entity = %s AND stage = 'normalized' GROUP BY entity_key",
        (keys, entity),
    )
    return dict(rows)


ENTITY_STATES = (
    "SELECT entity_key, state, event_id, source_ts_ms FROM entity_state"
    " WHERE entity = %s AND entity_key = ANY(%b)"
)


def entity_state_rows(rows: Iterable[tuple[str, Any, str, int]]) -> dict[str, Any]:
    """Rows of :data:`ENTITY_STATES` as ``entity_states`` answers them (the query API reads
    them asynchronously, in batches: govsync/api/states.py)."""
    return {
        key: {"state": state, "event_id": event_id, "source_ts_ms": source_ts_ms}
        for key, state, event_id, source_ts_ms in rows
    }


def entity_states(conn: psycopg.Connection, entity: str, keys: list[str]) -> dict[str, Any]:
    """Key -> the entity's current state as master holds it and the change it reflects
    (``{"state", "event_id", "source_ts_ms"}``); keys master does not hold are absent."""
    return entity_state_rows(conn.execute(ENTITY_STATES, (entity, keys)))


def applied(conn: psycopg.Connection, entity: str, key: str, event_id: str) -> bool:
    """Whether the stored state of ``key`` reflects change ``event_id``: it is that change,
    or one committed later at the source (the change's time from the lineage index)."""
    row = conn.execute(
        "SELECT s.event_id = %(e)s OR s.source_ts_ms >= ("
        "  SELECT min(h.source_ts_ms) FROM hop h WHERE h.event_id = %(e)s AND h.entity_key = %(k)s"
        ") FROM entity_state s WHERE s.entity = %(n)s AND s.entity_key = %(k)s",
        {"e": event_id, "k": key, "n": entity},
    ).fetchone()
    return bool(row and row[0])


def deliveries(conn: psycopg.Connection, entity: str, key: str, department: str) -> list[Hop]:
    """The delivered hops of entity ``key`` to ``department``, oldest first."""
    return _hops(
        conn,
        "entity_key = %(k)s AND entity = %(e)s AND department = %(d)s AND stage = 'delivered'"
        " ORDER BY at_ms",
        {"k": key, "e": entity, "d": department},
    )


def objections(conn: psycopg.Connection, objection: str | None = None) -> list[ObjectionState]:
    """Every objection on the trail (or the one with id ``objection``), raised order, with
    its answer if it has one."""
    where = "kind = 'objection'" + (" AND detail->>'objection' = %(id)s" if objection else "")
    rows = conn.cursor(row_factory=dict_row).execute(
        "SELECT at_ms, actor, event_id, entity_key, department, subscription, detail"
        f' FROM audit_entry WHERE {where} ORDER BY at_ms, partition, "offset"',
        {"id": objection},
    )
    found: dict[str, ObjectionState] = {}
    for row in rows:
        detail = row["detail"]
        step, ident = Step(detail["step"]), detail["objection"]
        if step is Step.RAISED:
            found.setdefault(
                ident,
                ObjectionState(
                    id=ident,
                    event_id=row["event_id"],
                    subscription=row["subscription"],
                    department=row["department"],
                    source=detail["source"],
                    source_id=detail.get("source_id", ""),
                    entity_key=row["entity_key"],
                    reason=detail["reason"],
                    raised_at_ms=row["at_ms"],
                    raised_on=detail["at"],
                    delivered_at=detail.get("delivered_at"),
                ),
            )
        elif ident in found and found[ident].open:
            found[ident] = found[ident].model_copy(
                update={
                    "answer": step,
                    "answer_reason": detail["reason"],
                    "answered_at_ms": row["at_ms"],
                }
            )
    return list(found.values())
