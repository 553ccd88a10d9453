"""`govsync demo` (the default scenario, `make demo`): market regulation deregisters a
company; tax and social security know in seconds. Each run picks a different active
company, so the demo can be repeated."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from rich.console import Console
from rich.panel import Panel

from govsync.demo import node
from govsync.stack.process import StackError
from streams.config.settings import Settings


@dataclass(frozen=True)
class Company:
    uscc: str
    name: str
    pending_reminders: int
    employer_account: str | None


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


def deregister(settings: Settings, company: Company) -> None:
    with psycopg.connect(settings.pg_conninfo("market_regulation")) as market:
        market.execute(
            "UPDATE enterprise SET reg_status = '4', updated_at = now() WHERE credit_code = %s",
            (company.uscc,),
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


def run(settings: Settings, console: Console) -> bool:
    topology = node.bring_up(settings, console)
    company = pick_company(settings)
    node.wait_for_pipeline(settings, console, company.uscc)
    console.print(
        Panel.fit(
            f"UPDATE enterprise SET reg_status = '4' WHERE credit_code = '{company.uscc}'\n"
            f"-- {company.name}: {company.pending_reminders} pending tax reminders",
            title="market_regulation: deregister a company",
        )
    )
    start = node.delivery_offsets(settings, topology)
    trace_start = node.trace_offsets(settings)
    deregister(settings, company)
    with console.status("waiting for the deliveries"):
        deliveries = node.collect_deliveries(
            settings, topology, "enterprise", company.uscc, "deregistered", start
        )
    node.show_deliveries(console, deliveries, f"who received the deregistration of {company.uscc}")

    with console.status("waiting for the tax sink"):
        left = node.poll(lambda: pending_reminders(settings, company.uscc), lambda n: n == 0)
    console.print(
        f"tax database: pending reminders for {company.uscc}: "
        f"{company.pending_reminders} before -> {left} after"
    )
    account_closed = True
    if company.employer_account is not None:
        account_no = company.employer_account
        with console.status("waiting for the social security sink"):
            account = node.poll(lambda: account_status(settings, account_no), "open".__ne__)
        account_closed = account == "closed"
        console.print(f"social security database: employer account {account_no}: open -> {account}")
    ok = (
        {d.topic for d in deliveries} == node.expected_topics(topology, "enterprise")
        and left == 0
        and account_closed
    )
    ok = node.show_trace(settings, console, topology, deliveries, trace_start) and ok
    return node.finish(console, ok, "market_regulation")
