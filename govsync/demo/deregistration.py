"""`make demo`: market regulation deregisters a company; tax and social security know in seconds.

Everything is real: a plain SQL UPDATE in the market_regulation database, Debezium on
Connect, Avro through Apicurio, the worker, and the tax sink writing to the tax
database. Each run picks a different active company, so the demo can be repeated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from rich.console import Console
from rich.panel import Panel
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


@dataclass(frozen=True)
class Company:
    uscc: str
    name: str
    pending_reminders: int
    employer_account: str | None


@dataclass(frozen=True)
class Delivery:
    subscription: str
    department: str
    topic: str
    fields: list[str]
    kind: str
    event_id: str
    latency_ms: int


def pick_company(settings: Settings) -> Company:
    """An active company that the tax bureau still sends reminders to (and, preferably,
    with an open employer account at social security)."""
    with psycopg.connect(settings.pg_conninfo("tax")) as tax:
        pending = dict(
            tax.execute(
                "SELECT uscc, count(*) FROM tax_reminder WHERE state = 'pending' GROUP BY uscc"
            ).fetchall()
        )
    with psycopg.connect(settings.pg_conninfo("social_security")) as social:
        accounts = dict(
            social.execute(
                "SELECT uscc, account_no FROM employer_account WHERE status = 'open'"
            ).fetchall()
        )
    with psycopg.connect(settings.pg_conninfo("market_regulation")) as market:
        rows = market.execute(
            "SELECT credit_code, ent_name FROM enterprise WHERE reg_status = '1' ORDER BY id"
        ).fetchall()
    candidates = [(uscc, name) for uscc, name in rows if pending.get(uscc)]
    for uscc, name in sorted(candidates, key=lambda c: c[0] not in accounts):
        return Company(uscc, name, pending[uscc], accounts.get(uscc))
    raise StackError("no active company with pending tax reminders is left in the seed data")


def wait_for_pipeline(settings: Settings, company: Company) -> None:
    """The pipeline is live once the tax sink has applied this company's snapshot record."""
    deadline = time.monotonic() + PIPELINE_READY_TIMEOUT
    with psycopg.connect(settings.pg_conninfo("tax"), autocommit=True) as tax:
        while time.monotonic() < deadline:
            inbox = tax.execute("SELECT to_regclass('govsync_inbox')").fetchone()
            if (
                inbox
                and inbox[0]
                and tax.execute(
                    "SELECT 1 FROM govsync_inbox WHERE entity_key = %s", (company.uscc,)
                ).fetchone()
            ):
                return
            time.sleep(0.5)
    raise StackError(
        "the initial snapshot did not reach the tax database within "
        f"{PIPELINE_READY_TIMEOUT:.0f}s (see {settings.path('logs')})"
    )


def deregister(settings: Settings, company: Company) -> datetime:
    with psycopg.connect(settings.pg_conninfo("market_regulation")) as market:
        market.execute(
            "UPDATE enterprise SET reg_status = '4', updated_at = now() WHERE credit_code = %s",
            (company.uscc,),
        )
    return datetime.now(UTC)


def collect_deliveries(
    settings: Settings, topology: Topology, company: Company, start: topic_reader.Offsets
) -> list[Delivery]:
    wanted = {
        delivery_topic(s): s for s in topology.active_subscriptions("enterprise", datetime.now(UTC))
    }
    decode = ValueDeserializer(registry_client(settings))

    def complete(seen: list[topic_reader.Record]) -> bool:
        return {r.topic for r in seen if _is_deregistration(r, company)} >= set(wanted)

    found: dict[str, Delivery] = {}
    for record in topic_reader.read(
        settings.bootstrap, decode, start, until=complete, timeout=DELIVERY_TIMEOUT
    ):
        if not _is_deregistration(record, company) or record.value is None:
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


def wait_for_trace(
    settings: Settings,
    topology: Topology,
    deliveries: list[Delivery],
    start: topic_reader.Offsets,
    timeout: float = TRACE_TIMEOUT,
) -> lineage.Trace | None:
    """The deregistration's trace once each department's receipt is on it (at the timeout,
    the trace as far as it got, with what is missing)."""
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


def _is_deregistration(record: topic_reader.Record, company: Company) -> bool:
    return (
        record.key == company.uscc
        and record.value is not None
        and record.value["kind"] == "deregistered"
    )


def pending_reminders(settings: Settings, uscc: str) -> int:
    with psycopg.connect(settings.pg_conninfo("tax")) as tax:
        row = tax.execute(
            "SELECT count(*) FROM tax_reminder WHERE uscc = %s AND state = 'pending'", (uscc,)
        ).fetchone()
    return int(row[0]) if row else 0


def account_status(settings: Settings, account_no: str) -> str:
    with psycopg.connect(settings.pg_conninfo("social_security")) as social:
        row = social.execute(
            "SELECT status FROM employer_account WHERE account_no = %s", (account_no,)
        ).fetchone()
    return str(row[0]) if row else "missing"


def wait_account_closed(settings: Settings, account_no: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    status = account_status(settings, account_no)
    while status == "open" and time.monotonic() < deadline:
        time.sleep(0.3)
        status = account_status(settings, account_no)
    return status


def wait_reminders_cancelled(settings: Settings, uscc: str, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    left = pending_reminders(settings, uscc)
    while left and time.monotonic() < deadline:
        time.sleep(0.3)
        left = pending_reminders(settings, uscc)
    return left


def run(settings: Settings, console: Console) -> bool:
    started = time.monotonic()
    with console.status("starting the embedded stack") as spinner:
        embedded.up(settings, progress=lambda step: spinner.update(step))
        spinner.update("applying topology.yaml (topics, schemas, Debezium connector)")
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
        company = pick_company(settings)
        spinner.update("waiting for the initial snapshot to flow through to the tax database")
        wait_for_pipeline(settings, company)
    console.print(f"stack ready in {time.monotonic() - started:.0f}s")

    console.print(
        Panel.fit(
            f"UPDATE enterprise SET reg_status = '4' WHERE credit_code = '{company.uscc}'\n"
            f"-- {company.name}: {company.pending_reminders} pending tax reminders",
            title="market_regulation: deregister a company",
        )
    )
    start = topic_reader.end_offsets(
        settings.bootstrap, [delivery_topic(s) for s in topology.subscriptions]
    )
    trace_start = topic_reader.end_offsets(settings.bootstrap, [TRACE_TOPIC])
    deregister(settings, company)
    with console.status("waiting for the deliveries"):
        deliveries = collect_deliveries(settings, topology, company, start)

    table = Table(title=f"who received the deregistration of {company.uscc}")
    for column in ("department", "subscription", "topic", "kind", "fields received", "latency"):
        table.add_column(column)
    for d in sorted(deliveries, key=lambda d: d.subscription):
        table.add_row(
            d.department, d.subscription, d.topic, d.kind, ", ".join(d.fields), f"{d.latency_ms} ms"
        )
    console.print(table)
    console.print("latency: source commit (Debezium source.ts_ms) -> record on the delivery topic")

    with console.status("waiting for the tax sink"):
        left = wait_reminders_cancelled(settings, company.uscc)
    console.print(
        f"tax database: pending reminders for {company.uscc}: "
        f"{company.pending_reminders} before -> {left} after"
    )
    account_closed = True
    if company.employer_account is not None:
        with console.status("waiting for the social security sink"):
            account = wait_account_closed(settings, company.employer_account)
        account_closed = account == "closed"
        console.print(
            f"social security database: employer account {company.employer_account}: "
            f"open -> {account}"
        )
    expected = {
        delivery_topic(s) for s in topology.active_subscriptions("enterprise", datetime.now(UTC))
    }
    ok = {d.topic for d in deliveries} == expected and left == 0 and account_closed
    with console.status("waiting for the receipts on govsync.trace"):
        trace = wait_for_trace(settings, topology, deliveries, trace_start)
    if trace is not None:
        names = {d: dept.name for d, dept in topology.departments.items()}
        console.print(lineage.table(trace, names))
        console.print(f"the same, any time: .venv/bin/govsync trace {trace.event_id}")
    ok = ok and trace is not None and trace.complete
    console.print("[green]scenario complete[/green]" if ok else "[red]scenario incomplete[/red]")
    console.print(
        "\nThe stack is still running. Try next:\n"
        "  .venv/bin/govsync status              health of every component\n"
        "  .venv/bin/govsync topology show       who subscribes to what\n"
        "  psql 'host=127.0.0.1 port=55432 user=govsync dbname=market_regulation'\n"
        "      then UPDATE another company and watch .state/logs/tax-sink.log\n"
        "  .venv/bin/govsync down                stop everything"
    )
    return ok
