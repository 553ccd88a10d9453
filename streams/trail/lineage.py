"""Where each change went: compact lineage records on ``govsync.trace``, and `govsync trace`.

The ledger stage (streams/stages/ledger.py) writes one record per hop it sees committed:
``captured`` (the cdc record normalize read), ``sent`` (by an upstream node, for a change
that came from one), ``normalized`` (changes.<entity>),
``delivered`` (one per department) and ``receipt`` (the department's answer). Keyed by
event_id. A trace puts one change's hops in order with the latency of each, and says
plainly what is missing, e.g. a delivery without a receipt past ``receipt_within``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, computed_field
from rich.table import Table

from streams.config.settings import Settings
from streams.contract.records import Hop
from streams.contract.topics import TRACE_TOPIC
from streams.kafka import topic_reader
from streams.kafka.serde import ValueDeserializer, registry_client
from streams.model.topology import CST, Topology


class Step(BaseModel):
    """A hop as a trace shows it: when, where, and how long since the hop before."""

    stage: Literal["committed", "captured", "sent", "normalized", "delivered", "receipt"]
    department: str | None = None
    at_ms: int
    hop_ms: int | None = None  # since the previous step on this path
    since_commit_ms: int
    position: str | None = None
    detail: str | None = None


class Trace(BaseModel):
    event_id: str
    kind: str
    entity: str
    entity_key: str
    source_ts_ms: int
    steps: list[Step]
    missing: list[str]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def complete(self) -> bool:
        return not self.missing


def _step(hop: Hop, commit_ms: int, previous_ms: int, detail: str | None = None) -> Step:
    return Step(
        stage=hop.stage,
        department=hop.department,
        at_ms=hop.at_ms,
        hop_ms=hop.at_ms - previous_ms,
        since_commit_ms=hop.at_ms - commit_ms,
        position=hop.position,
        detail=detail,
    )


def _duration_text(ms: int) -> str:
    seconds = ms / 1000
    return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds:g}s"


def build(event_id: str, hops: Iterable[Hop], topology: Topology, now_ms: int) -> Trace:
    """One change's path: commit → captured → normalized → each delivery → its receipt.

    Hops seen more than once (a change Debezium re-emitted, a receipt sent again) count
    from their first sighting."""
    first: dict[tuple[str, str | None], Hop] = {}
    for hop in sorted(hops, key=lambda h: (h.at_ms, h.offset)):
        first.setdefault((hop.stage, hop.department), hop)
    # Receipts do not carry the commit time; every other hop does.
    any_hop = next((h for h in first.values() if h.stage != "receipt"), next(iter(first.values())))
    commit = any_hop.source_ts_ms
    steps = [Step(stage="committed", at_ms=commit, since_commit_ms=0, detail=any_hop.entity_key)]
    missing: list[str] = []
    previous = commit
    for stage in ("captured", "sent", "normalized"):
        if stage == "sent":
            # From an upstream node (federation): it delivered the change to this one.
            for hop in sorted(
                (h for (name, _), h in first.items() if name == "sent"), key=lambda h: h.at_ms
            ):
                steps.append(_step(hop, commit, previous, f"by node {hop.department}"))
                previous = hop.at_ms
            continue
        hop = first.get((stage, None))
        if hop is None:
            missing.append(f"not {stage} (see `govsync dlq list`)")
            continue
        steps.append(_step(hop, commit, previous))
        previous = hop.at_ms
    subscriptions = {s.id: s for s in topology.subscriptions}
    deliveries = sorted(
        (hop for (stage, _), hop in first.items() if stage == "delivered"),
        key=lambda h: h.department or "",
    )
    for delivery in deliveries:
        steps.append(_step(delivery, commit, previous, delivery.subscription))
        receipt = first.get(("receipt", delivery.department))
        if receipt is not None:
            detail = receipt.outcome + (f": {receipt.reason}" if receipt.reason else "")
            steps.append(_step(receipt, commit, delivery.at_ms, detail))
            continue
        subscription = subscriptions.get(delivery.subscription or "")
        waited = now_ms - delivery.at_ms
        if subscription is None:
            missing.append(f"no receipt from {delivery.department}")
            continue
        limit_ms = int(subscription.sla.receipt_within.total_seconds() * 1000)
        state = "overdue" if waited > limit_ms else "awaited"
        missing.append(
            f"no receipt from {delivery.department} after {_duration_text(waited)} "
            f"(receipt_within {_duration_text(limit_ms)}: {state})"
        )
    return Trace(
        event_id=event_id,
        kind=any_hop.kind,
        entity=any_hop.entity,
        entity_key=any_hop.entity_key,
        source_ts_ms=commit,
        steps=steps,
        missing=missing,
    )


def traces(hops: Iterable[Hop], query: str, topology: Topology, now_ms: int) -> list[Trace]:
    """The traces of an event_id, or of every change of an entity key (newest first)."""
    by_event: dict[str, list[Hop]] = defaultdict(list)
    for hop in hops:
        if query in (hop.event_id, hop.entity_key):
            by_event[hop.event_id].append(hop)
    found = [build(event_id, found, topology, now_ms) for event_id, found in by_event.items()]
    return sorted(found, key=lambda t: t.source_ts_ms, reverse=True)


def read(settings: Settings, *, query: str, start: topic_reader.Offsets | None = None) -> list[Hop]:
    """The hops of an event_id or entity key (``query``) from ``start`` (default: the
    beginning of ``govsync.trace``).

    Records are matched on their key (the event_id) and ``entity_key`` header before
    anything is decoded: the read covers the topic from ``start``, but decodes only the
    hops asked for. `govsync trace` asks the index instead (govsync/index)."""
    decode = ValueDeserializer(registry_client(settings))
    wanted = query.encode()
    start = start or topic_reader.beginning(settings.bootstrap, [TRACE_TOPIC])
    return [
        Hop.model_validate(decode(TRACE_TOPIC, message.value()))
        for message in topic_reader.messages(settings.bootstrap, start, timeout=600)
        if wanted in (message.key(), dict(message.headers() or []).get("entity_key"))
    ]


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, CST).strftime("%H:%M:%S.%f")[:-3]


def table(trace: Trace, departments: dict[str, str]) -> Table:
    """A trace for people: one row per step, with times in China Standard Time."""
    title = f"{trace.kind} {trace.entity} {trace.entity_key}  (event {trace.event_id[:16]}…)"
    view = Table(title=title, title_justify="left")
    for column in ("step", "department", "at (CST)", "hop", "since commit", "where", "detail"):
        view.add_column(column)
    for step in trace.steps:
        view.add_row(
            step.stage,
            departments.get(step.department or "", step.department or ""),
            _clock(step.at_ms),
            "" if step.hop_ms is None else f"+{step.hop_ms} ms",
            f"{step.since_commit_ms} ms",
            step.position or "",
            step.detail or "",
        )
    for gap in trace.missing:
        view.add_row("[yellow]missing[/yellow]", "", "", "", "", "", f"[yellow]{gap}[/yellow]")
    return view
