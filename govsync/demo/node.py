"""What every scenario of `govsync demo` shares: this node brought up with its worker and
the departments' sinks, deliveries watched on their topics, and the change's trace.

Everything is real: SQL in a department's database, Debezium on Connect, Avro through
Apicurio, the worker, and the sinks writing to the subscribers' databases.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import psycopg
from rich.console import Console
from rich.table import Table

from connectors.sinks import SINKS, process_name
from govsync.stack import embedded
from govsync.stack.background import start_app_process, start_worker
from govsync.stack.process import StackError
from streams.config.settings import Settings
from streams.contract.topics import TRACE_TOPIC, delivery_topic
from streams.kafka import topic_reader
from streams.kafka.serde import ValueDeserializer, registry_client
from streams.model.topology import Topology, load_topology
from streams.trail import lineage

PIPELINE_READY_TIMEOUT = 180.0
DELIVERY_TIMEOUT = 60.0
TRACE_TIMEOUT = 30.0
SINK_TIMEOUT = 30.0

T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    subscription: str
    department: str
    topic: str
    fields: list[str]
    kind: str
    event_id: str
    latency_ms: int


def bring_up(settings: Settings, console: Console) -> Topology:
    """Start whatever is not running, apply topology.yaml as the data authority, start the
    worker and the sinks; returns the topology applied."""
    started = time.monotonic()
    with console.status("starting the embedded stack") as spinner:
        embedded.up(settings, progress=lambda step: spinner.update(step))
        spinner.update("applying topology.yaml (topics, schemas, Debezium connectors)")
        topology = load_topology(settings.topology)
        # This one-machine node holds every key: its operator applies as the data authority,
        # so the approval blocks become the authority's (signed, audited) decisions.
        embedded.apply_topology(
            topology, settings, settings.topology.read_text(encoding="utf-8"), as_authority=True
        )
        spinner.update("starting the worker and the departments' sinks")
        start_worker(settings)
        for department in SINKS:
            start_app_process(settings, process_name(department), ["sink", department])
    console.print(f"stack up in {time.monotonic() - started:.0f}s")
    return topology


def wait_for_pipeline(settings: Settings, console: Console, uscc: str) -> None:
    """The pipeline is live once the tax sink has applied this company's snapshot record."""

    def applied() -> bool:
        with psycopg.connect(settings.pg_conninfo("tax"), autocommit=True) as tax:
            inbox = tax.execute("SELECT to_regclass('govsync_inbox')").fetchone()
            return bool(
                inbox
                and inbox[0]
                and tax.execute(
                    "SELECT 1 FROM govsync_inbox WHERE entity_key = %s", (uscc,)
                ).fetchone()
            )

    with console.status("waiting for the initial snapshot to flow through to the tax database"):
        if not poll(applied, lambda done: done, PIPELINE_READY_TIMEOUT):
            raise StackError(
                "the initial snapshot did not reach the tax database within "
                f"{PIPELINE_READY_TIMEOUT:.0f}s (see {settings.path('logs')})"
            )


def poll(read: Callable[[], T], done: Callable[[T], bool], timeout: float = SINK_TIMEOUT) -> T:
    """``read()`` until ``done`` says so or ``timeout`` passes; the last value either way."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.3)
        value = read()
    return value


def delivery_offsets(settings: Settings, topology: Topology) -> topic_reader.Offsets:
    return topic_reader.end_offsets(
        settings.bootstrap, [delivery_topic(s) for s in topology.subscriptions]
    )


def trace_offsets(settings: Settings) -> topic_reader.Offsets:
    return topic_reader.end_offsets(settings.bootstrap, [TRACE_TOPIC])


def collect_deliveries(
    settings: Settings,
    topology: Topology,
    entity: str,
    key: str,
    kind: str,
    start: topic_reader.Offsets,
) -> list[Delivery]:
    """The ``kind`` change of ``key`` as each active subscription to ``entity`` received it."""
    wanted = {
        delivery_topic(s): s for s in topology.active_subscriptions(entity, datetime.now(UTC))
    }
    decode = ValueDeserializer(registry_client(settings))

    def ours(record: topic_reader.Record) -> bool:
        return record.key == key and record.value is not None and record.value["kind"] == kind

    def complete(seen: list[topic_reader.Record]) -> bool:
        return {r.topic for r in seen if ours(r)} >= set(wanted)

    found: dict[str, Delivery] = {}
    for record in topic_reader.read(
        settings.bootstrap, decode, start, until=complete, timeout=DELIVERY_TIMEOUT
    ):
        if not ours(record) or record.topic not in wanted or record.value is None:
            continue
        subscription = wanted[record.topic]
        after = record.value["after"] or {}
        found[record.topic] = Delivery(
            subscription=subscription.id,
            department=topology.departments[subscription.department].name,
            topic=record.topic,
            fields=[name for name in after if after[name] is not None],
            kind=record.value["kind"],
            event_id=record.value["event_id"],
            latency_ms=record.timestamp_ms - int(record.headers["source_ts"]),
        )
    return list(found.values())


def expected_topics(topology: Topology, entity: str) -> set[str]:
    return {delivery_topic(s) for s in topology.active_subscriptions(entity, datetime.now(UTC))}


def show_deliveries(console: Console, deliveries: Iterable[Delivery], title: str) -> None:
    table = Table(title=title)
    for column in ("department", "subscription", "topic", "kind", "fields received", "latency"):
        table.add_column(column)
    for d in sorted(deliveries, key=lambda d: d.subscription):
        table.add_row(
            d.department, d.subscription, d.topic, d.kind, ", ".join(d.fields), f"{d.latency_ms} ms"
        )
    console.print(table)
    console.print("latency: source commit (Debezium source.ts_ms) -> record on the delivery topic")


def show_trace(
    settings: Settings,
    console: Console,
    topology: Topology,
    deliveries: list[Delivery],
    start: topic_reader.Offsets,
) -> bool:
    """Print the change's trace once each department's receipt is on it; whether it is
    complete."""
    with console.status("waiting for the receipts on govsync.trace"):
        trace = _wait_for_trace(settings, topology, deliveries, start)
    if trace is None:
        return False
    names = {d: dept.name for d, dept in topology.departments.items()}
    console.print(lineage.table(trace, names))
    console.print(f"the same, any time: .venv/bin/govsync trace {trace.event_id}")
    return trace.complete


def _wait_for_trace(
    settings: Settings,
    topology: Topology,
    deliveries: list[Delivery],
    start: topic_reader.Offsets,
    timeout: float = TRACE_TIMEOUT,
) -> lineage.Trace | None:
    """The trace once each department's receipt is on it (at the timeout, the trace as far
    as it got, with what is missing)."""
    if not deliveries:
        return None
    event_id = deliveries[0].event_id
    deadline = time.monotonic() + timeout
    while True:
        hops = lineage.read(settings, query=event_id, start=start)
        trace = lineage.build(event_id, hops, topology, int(time.time() * 1000)) if hops else None
        receipts = sum(s.stage == "receipt" for s in trace.steps) if trace else 0
        if receipts == len(deliveries) or time.monotonic() > deadline:
            return trace
        time.sleep(0.5)


def finish(console: Console, ok: bool, database: str) -> bool:
    console.print("[green]scenario complete[/green]" if ok else "[red]scenario incomplete[/red]")
    console.print(
        "\nThe stack is still running. Try next:\n"
        "  .venv/bin/govsync status              health of every component\n"
        "  .venv/bin/govsync topology show       who subscribes to what\n"
        f"  psql 'host=127.0.0.1 port=55432 user=govsync dbname={database}'\n"
        "      then change another row and watch .state/logs/*-sink.log\n"
        "  .venv/bin/govsync down                stop everything"
    )
    return ok
