"""`govsync demo newborn` (出生一件事): a hospital issues a birth certificate (health's
MariaDB database); public security registers the child under a new resident ID; that
registration enrols the child at medical insurance and applies for its social security
card; disease control opens its vaccination card; tax pre-fills the parents' infant-care
deduction; education expects a pupil six years on. Eight departments with the data
authority, and nobody queues at a counter."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

import psycopg
import pymysql
from rich.console import Console
from rich.panel import Panel

from govsync.demo import node
from govsync.stack.process import StackError
from streams.config import mariadb
from streams.config.settings import Settings
from streams.model.topology import CST

HOSPITAL = "北京大学第三医院"
NAMES = ("李", "王", "张", "刘", "陈")


def parents(settings: Settings) -> tuple[str, str]:
    """A living registered woman and man of the seed (the 17th digit's parity is sex)."""
    with psycopg.connect(settings.pg_conninfo("public_security")) as conn:
        found = [
            conn.execute(
                "SELECT id_no FROM household_registration WHERE hukou_status = '1'"
                " AND substr(id_no, 17, 1) = ANY(%s) AND birth_certificate_no IS NULL"
                " ORDER BY random() LIMIT 1",
                (list(digits),),
            ).fetchone()
            for digits in ("02468", "13579")
        ]
    if not all(found):
        raise StackError("the public security seed has no registered woman and man left")
    mother, father = (str(row[0]) for row in found if row)
    return mother, father


def issue_certificate(settings: Settings, mother: str, father: str) -> tuple[str, str, str]:
    """(certificate number, child's name, time of birth on the hospital's clock)."""
    rng = random.SystemRandom()
    certificate = f"Q{uuid.uuid4().int % 10**12:012d}"
    name = rng.choice(NAMES) + rng.choice(("小明", "小雨", "安", "一诺"))
    born_at = (datetime.now(CST) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S.000")
    with (
        pymysql.connect(**mariadb.connection_args(settings, "health")) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(
            "INSERT INTO birth_certificate (certificate_no, child_name, sex, born_at,"
            " mother_id, father_id, hospital) VALUES (%s, %s, '1', %s, %s, %s, %s)",
            (certificate, name, born_at, mother, father, HOSPITAL),
        )
        conn.commit()
    return certificate, name, born_at


def registered_child(settings: Settings, certificate: str) -> str | None:
    with psycopg.connect(settings.pg_conninfo("public_security")) as conn:
        row = conn.execute(
            "SELECT id_no FROM household_registration WHERE birth_certificate_no = %s",
            (certificate,),
        ).fetchone()
    return str(row[0]) if row else None


def count(settings: Settings, database: str, sql: str, key: str) -> int:
    with psycopg.connect(settings.pg_conninfo(database)) as conn:
        row = conn.execute(sql, (key,)).fetchone()
    return int(row[0]) if row else 0


def run(settings: Settings, console: Console) -> bool:
    topology = node.bring_up(settings, console)
    mother, father = parents(settings)
    start = node.delivery_offsets(settings, topology)
    trace_start = node.trace_offsets(settings)
    certificate, name, born_at = issue_certificate(settings, mother, father)
    console.print(
        Panel.fit(
            "INSERT INTO birth_certificate (certificate_no, child_name, sex, born_at,"
            " mother_id, father_id, hospital)\n"
            f"VALUES ('{certificate}', '{name}', '1', '{born_at}', '{mother}', '{father}',"
            f" '{HOSPITAL}')",
            title="health (MariaDB): the hospital issues a birth certificate",
        )
    )
    with console.status("waiting for the birth's deliveries"):
        births = node.collect_deliveries(
            settings, topology, "birth", certificate, "registered", start
        )
    node.show_deliveries(console, births, f"who received birth certificate {certificate}")

    with console.status("waiting for public security to register the child"):
        child = node.poll(lambda: registered_child(settings, certificate), bool)
    if child is None:
        console.print("[red]public security registered nobody[/red]")
        return node.finish(console, False, "public_security")
    console.print(f"public security database: {name} registered as resident {child}")
    with console.status("waiting for the registration's deliveries"):
        persons = node.collect_deliveries(settings, topology, "person", child, "registered", start)
    node.show_deliveries(console, persons, f"who received the registration of {child}")

    checks = {
        "medical insurance: enrolled": (
            "medical_insurance",
            "SELECT count(*) FROM insured_member WHERE id_no = %s AND status = 'active'",
            child,
        ),
        "social security: card applied for": (
            "social_security",
            "SELECT count(*) FROM card_application WHERE id_no = %s",
            child,
        ),
        "disease control: vaccinations due": (
            "disease_control",
            "SELECT count(*) FROM vaccination_due WHERE certificate_no = %s",
            certificate,
        ),
        "education: pupils expected": (
            "education",
            "SELECT count(*) FROM expected_pupil WHERE certificate_no = %s",
            certificate,
        ),
        "tax: parents' infant-care deductions": (
            "tax",
            "SELECT count(*) FROM infant_care_deduction WHERE certificate_no = %s",
            certificate,
        ),
    }
    ok = bool(births) and bool(persons)
    for label, (database, sql, key) in checks.items():
        with console.status(f"waiting for {label.split(':')[0]}"):
            found = node.poll(lambda d=database, s=sql, k=key: count(settings, d, s, k), bool)
        console.print(f"{label}: {found} row{'s' if found != 1 else ''}")
        ok = ok and found > 0
    ok = (
        ok
        and {d.topic for d in births} == node.expected_topics(topology, "birth")
        and {d.topic for d in persons} == node.expected_topics(topology, "person")
    )
    ok = node.show_trace(settings, console, topology, births, trace_start) and ok
    ok = node.show_trace(settings, console, topology, persons, trace_start) and ok
    return node.finish(console, ok, "public_security")
