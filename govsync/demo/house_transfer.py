"""`govsync demo house-transfer` (二手房转移登记): the real-estate registry transfers a title;
tax and public security see it at the same version, tax assesses deed tax; a second buyer's
transfer, made against the old version, is refused by the registry's own rule, and that
refusal is delivered and traced like any change."""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg
from rich.console import Console
from rich.panel import Panel

from govsync.demo import node
from govsync.stack.process import StackError
from streams.config.settings import Settings

PRICE = Decimal("3200000.00")
# Where each subscriber keeps its copy of a title, with the version it holds.
COPIES = (("tax", "property_register"), ("public_security", "residence_property"))


def pick_title(settings: Settings) -> tuple[str, int, str]:
    """(title number, version, owner) of a seeded title, and two other residents."""
    with psycopg.connect(settings.pg_conninfo("real_estate")) as conn:
        row = conn.execute(
            "SELECT title_no, version, owner_id_no FROM property_title ORDER BY random() LIMIT 1"
        ).fetchone()
    if row is None:
        raise StackError("the real-estate seed has no property title")
    return str(row[0]), int(row[1]), str(row[2])


def buyers(settings: Settings, owner: str) -> list[tuple[str, str]]:
    with psycopg.connect(settings.pg_conninfo("public_security")) as conn:
        rows = conn.execute(
            "SELECT id_no, full_name FROM household_registration"
            " WHERE hukou_status = '1' AND id_no <> %s ORDER BY random() LIMIT 2",
            (owner,),
        ).fetchall()
    return [(str(i), str(n)) for i, n in rows]


def transfer(
    settings: Settings, title_no: str, against: int, buyer: tuple[str, str]
) -> tuple[str, str]:
    application = f"ZY{uuid.uuid4().int % 10**12:012d}"
    with psycopg.connect(settings.pg_conninfo("real_estate")) as conn:
        row = conn.execute(
            "SELECT transfer_title(%s, %s, %s, %s, %s, %s)",
            (application, title_no, against, buyer[0], buyer[1], PRICE),
        ).fetchone()
    return application, str(row[0]) if row else "?"


def refusal_reason(settings: Settings, application: str) -> str | None:
    with psycopg.connect(settings.pg_conninfo("real_estate")) as conn:
        row = conn.execute(
            "SELECT reason FROM transfer_application WHERE application_no = %s AND outcome = 'X'",
            (application,),
        ).fetchone()
    return str(row[0]) if row else None


def held_version(settings: Settings, database: str, table: str, title_no: str) -> int | None:
    with psycopg.connect(settings.pg_conninfo(database)) as conn:
        row = conn.execute(
            f"SELECT version FROM {table} WHERE title_no = %s",  # table: one of COPIES
            (title_no,),
        ).fetchone()
    return int(row[0]) if row else None


def run(settings: Settings, console: Console) -> bool:
    topology = node.bring_up(settings, console)
    title_no, version, owner = pick_title(settings)
    first, second = buyers(settings, owner)
    with console.status("waiting for the registry's snapshot to reach tax"):
        node.poll(
            lambda: held_version(settings, "tax", "property_register", title_no),
            lambda v: v is not None,
            node.PIPELINE_READY_TIMEOUT,
        )
    start = node.delivery_offsets(settings, topology)
    trace_start = node.trace_offsets(settings)
    registered, outcome = transfer(settings, title_no, version, first)
    refused, late = transfer(settings, title_no, version, second)
    console.print(
        Panel.fit(
            f"SELECT transfer_title('{registered}', '{title_no}', {version}, '{first[0]}', ...)"
            f"  -> {outcome}\n"
            f"SELECT transfer_title('{refused}', '{title_no}', {version}, '{second[0]}', ...)"
            f"  -> {late}\n"
            "-- R: registered (version +1); X: refused, made against a version no longer current",
            title="real_estate: two buyers, one title",
        )
    )
    with console.status("waiting for the deliveries"):
        titles = node.collect_deliveries(settings, topology, "title", title_no, "updated", start)
        refusal = node.collect_deliveries(
            settings, topology, "transfer", refused, "registered", start
        )
    node.show_deliveries(console, titles, f"who received title {title_no}")
    node.show_deliveries(console, refusal, f"who received the refused transfer {refused}")
    reason = refusal_reason(settings, refused)
    console.print(f"real_estate database: transfer {refused} refused: {reason}")
    held = {}
    for database, table in (
        ("tax", "property_register"),
        ("public_security", "residence_property"),
    ):
        with console.status(f"waiting for {database}"):
            held[database] = node.poll(
                lambda d=database, t=table: held_version(settings, d, t, title_no),
                lambda v: v == version + 1,
            )
        console.print(f"{database} database: {title_no} held at version {held[database]}")
    ok = (
        (outcome, late) == ("R", "X")
        and reason is not None
        and all(v == version + 1 for v in held.values())
        and {d.topic for d in titles} == node.expected_topics(topology, "title")
        and bool(refusal)
    )
    ok = node.show_trace(settings, console, topology, refusal, trace_start) and ok
    return node.finish(console, ok, "real_estate")
