"""`govsync demo registration` (企业开办): market regulation registers a company; the tax
bureau makes it a taxpayer with the tax types its legal form and industry call for, and
social security opens its employer account, each in its own database."""

from __future__ import annotations

import random

import psycopg
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from govsync.demo import node
from govsync.stack.seed import Enterprise, new_enterprise
from streams.config.settings import Settings

LEGAL_FORMS = {"1": "有限责任公司", "2": "股份有限公司", "3": "合伙企业", "4": "个人独资企业"}


def register(settings: Settings, company: Enterprise) -> None:
    with psycopg.connect(settings.pg_conninfo("market_regulation")) as market:
        market.execute(
            "INSERT INTO enterprise (credit_code, ent_name, reg_status, rep_name, rep_id_no,"
            " reg_capital, address, established_on, ent_type, industry_code)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                company.credit_code,
                company.ent_name,
                company.reg_status,
                company.rep_name,
                company.rep_id_no,
                company.reg_capital,
                company.address,
                company.established_on,
                company.ent_type,
                company.industry_code,
            ),
        )


def tax_types(settings: Settings, uscc: str) -> list[tuple[str, str]]:
    with psycopg.connect(settings.pg_conninfo("tax")) as tax:
        rows = tax.execute(
            "SELECT tax_type, basis FROM taxpayer_tax_type WHERE uscc = %s ORDER BY basis, 1",
            (uscc,),
        ).fetchall()
    return [(str(t), str(b)) for t, b in rows]


def employer_account(settings: Settings, uscc: str) -> tuple[str, str] | None:
    with psycopg.connect(settings.pg_conninfo("social_security")) as social:
        row = social.execute(
            "SELECT account_no, status FROM employer_account WHERE uscc = %s", (uscc,)
        ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def run(settings: Settings, console: Console) -> bool:
    topology = node.bring_up(settings, console)
    company = new_enterprise(random.SystemRandom())
    with psycopg.connect(settings.pg_conninfo("market_regulation")) as market:
        row = market.execute("SELECT credit_code FROM enterprise ORDER BY id LIMIT 1").fetchone()
    if row is not None:
        node.wait_for_pipeline(settings, console, str(row[0]).strip())
    console.print(
        Panel.fit(
            "INSERT INTO enterprise (credit_code, ent_name, ent_type, industry_code, ...)\n"
            f"VALUES ('{company.credit_code}', '{company.ent_name}', "
            f"'{company.ent_type}', '{company.industry_code}', ...)\n"
            f"-- {LEGAL_FORMS[company.ent_type]}, GB/T 4754 industry {company.industry_code}",
            title="market_regulation: register a company",
        )
    )
    start = node.delivery_offsets(settings, topology)
    trace_start = node.trace_offsets(settings)
    register(settings, company)
    uscc = company.credit_code
    with console.status("waiting for the deliveries"):
        deliveries = node.collect_deliveries(
            settings, topology, "enterprise", uscc, "registered", start
        )
    node.show_deliveries(console, deliveries, f"who received the registration of {uscc}")

    with console.status("waiting for the tax sink"):
        assigned = node.poll(lambda: tax_types(settings, uscc), bool)
    table = Table(title=f"tax database: tax types of {uscc} (税种认定)")
    table.add_column("tax type")
    table.add_column("assigned by")
    for tax_type, basis in assigned:
        table.add_row(tax_type, basis)
    console.print(table)
    with console.status("waiting for the social security sink"):
        account = node.poll(lambda: employer_account(settings, uscc), lambda a: a is not None)
    console.print(
        "social security database: employer account "
        + (f"{account[0]} {account[1]}" if account else "not opened")
    )
    ok = (
        {d.topic for d in deliveries} == node.expected_topics(topology, "enterprise")
        and bool(assigned)
        and account is not None
        and account[1] == "open"
    )
    ok = node.show_trace(settings, console, topology, deliveries, trace_start) and ok
    return node.finish(console, ok, "market_regulation")
