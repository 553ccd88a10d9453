"""Data quality per source for `govsync quality` and the monitor: the 一数一源 findings on
``govsync.quality``, and each source's error rate (records dead-lettered) and objection
rate (deliveries departments objected to, 数据异议) from the index."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from govsync.index import queries, store
from govsync.ops import dlq
from govsync.ops.dlq import SourceAccount
from streams.config.settings import Settings
from streams.contract.objections import ObjectionState, Step
from streams.contract.topics import QUALITY_TOPIC
from streams.kafka import topic_reader
from streams.kafka.serde import ValueDeserializer, registry_client
from streams.model.topology import Topology
from streams.transform.authority import Discrepancy


class Finding(Discrepancy):
    """A discrepancy as stored, with when it was recorded."""

    recorded_at: datetime


def findings(
    settings: Settings,
    *,
    entity: str | None = None,
    key: str | None = None,
    source: str | None = None,
) -> list[Finding]:
    """Every recorded finding matching the filters, oldest first."""
    decode = ValueDeserializer(registry_client(settings))
    start = topic_reader.beginning(settings.bootstrap, [QUALITY_TOPIC])
    found = [
        Finding(
            **record.value,
            recorded_at=datetime.fromtimestamp(record.timestamp_ms / 1000, UTC),
        )
        for record in topic_reader.read(settings.bootstrap, decode, start, timeout=300)
        if record.value is not None
    ]
    return sorted(
        (
            f
            for f in found
            if (entity is None or f.entity == entity)
            and (key is None or f.key == key)
            and (source is None or source in (f.other_source, f.authoritative_source))
        ),
        key=lambda f: f.recorded_at,
    )


class SourceQuality(BaseModel):
    """One source's rates: errors per record processed, objections per change event."""

    source: str
    department: str
    processed: int
    dead_lettered: int
    error_rate: float | None  # None: nothing processed yet
    objections: int
    open: int
    resolved: int
    rejected: int
    objection_rate: float | None  # per change event normalized from the source


def source_rates(
    topology: Topology, accounts: list[SourceAccount], objected: list[ObjectionState]
) -> list[SourceQuality]:
    by_source = {a.source: a for a in accounts}
    rates = []
    for source in topology.sources:
        account = by_source.get(source.id)
        mine = [o for o in objected if o.source_id == source.id]
        processed = account.processed if account else 0
        normalized = account.normalized if account else 0
        rates.append(
            SourceQuality(
                source=source.id,
                department=source.department,
                processed=processed,
                dead_lettered=account.dead_lettered if account else 0,
                error_rate=(account.dead_lettered / processed) if account and processed else None,
                objections=len(mine),
                open=sum(o.open for o in mine),
                resolved=sum(o.answer is Step.RESOLVED for o in mine),
                rejected=sum(o.answer is Step.REJECTED for o in mine),
                objection_rate=len(mine) / normalized if normalized else None,
            )
        )
    return rates


def rates(settings: Settings, topology: Topology, wait: float = 0) -> list[SourceQuality]:
    """Every source's rates, as the index stands (``wait``: for it to catch up first)."""
    with store.reading(settings) as conn:
        objected = queries.objections(conn)
    return source_rates(topology, dlq.accounting(settings, topology, wait=wait), objected)
