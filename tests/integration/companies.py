"""Building blocks for the stack tests: the topics they read, and brand-new, valid
enterprises (fresh USCCs and resident IDs, unique names) written to the source database."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from govsync.stack.seed import DIVISIONS, Enterprise
from streams.config.settings import REPO_ROOT
from streams.contract.topics import changes_topic, master_topic
from streams.kafka import topic_reader
from streams.model.standards import (
    USCC_CHARSET,
    organization_code_check_character,
    resident_id_check_digit,
    uscc_check_character,
)
from streams.transform.masking import department_key
from tests.integration.conftest import Stack

SOURCE_ID = "market_regulation.enterprise"
CDC_TOPIC = "cdc.market_regulation.public.enterprise"
CHANGES = changes_topic("enterprise")
MASTER = master_topic("enterprise")
TAX = "deliver.tax.enterprise"
SOCIAL = "deliver.social_security.enterprise"
DELIVERIES = (TAX, SOCIAL)
SUBSCRIPTION_OF = {TAX: "tax.enterprise", SOCIAL: "social_security.enterprise"}
STATUS = {"1": "active", "2": "suspended", "3": "revoked", "4": "deregistered"}
ENTERPRISE_TYPE = {
    "1": "limited_company",
    "2": "joint_stock_company",
    "3": "partnership",
    "4": "sole_proprietorship",
}
TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")
WAIT = 60.0  # seconds; generous, the worker may be restarted by someone else meanwhile

_rng = random.SystemRandom()


GOVSYNC = Path(sys.executable).with_name("govsync")


def govsync(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it, in its own process."""
    return subprocess.run(
        [str(GOVSYNC), *args],
        capture_output=True,
        text=True,
        # A guard against a hang, not a time limit: `audit verify` walks every chain and
        # `receipts overdue` reads the trace's look-back window, both growing with the
        # history earlier tests left (answering from indexes is issue 14).
        timeout=600,
        cwd=REPO_ROOT,
        check=False,
    )


def mask_key(stack: Stack, topic: str) -> bytes:
    """The masking key of the department a delivery topic belongs to."""
    return department_key(stack.settings.path("secrets"), topic.split(".")[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- data factories ----------------------------------------------------------------------


def new_uscc() -> str:
    """A fresh, valid unified social credit code (GB 32100) with a random organization code."""
    division = _rng.choice(DIVISIONS)
    body = "MA" + "".join(_rng.choices(USCC_CHARSET, k=6))
    first17 = f"91{division.code}{body}{organization_code_check_character(body)}"
    return first17 + uscc_check_character(first17)


def with_wrong_check_character(uscc: str) -> str:
    """The same code with a check character that does not match (a typo at the source)."""
    wrong = _rng.choice([char for char in USCC_CHARSET if char != uscc[17]])
    return uscc[:17] + wrong


def new_resident_id(*, legacy: bool = False) -> str:
    """A valid resident ID number: 18 digits (GB 11643), or a legacy 15-digit one."""
    division = _rng.choice(DIVISIONS).code
    born = date(_rng.randint(1950, 1979), _rng.randint(1, 12), _rng.randint(1, 28))
    sequence = f"{_rng.randrange(1000):03d}"
    if legacy:
        return f"{division}{born:%y%m%d}{sequence}"
    first17 = f"{division}{born:%Y%m%d}{sequence}"
    return first17 + resident_id_check_digit(first17)


def unique_name(label: str = "科技") -> str:
    return f"集成测试{uuid.uuid4().hex[:10]}{label}有限公司"


def new_company(**overrides: Any) -> Enterprise:
    company = Enterprise(
        credit_code=new_uscc(),
        ent_name=unique_name(),
        reg_status="1",
        rep_name=_rng.choice("王李张刘陈杨") + _rng.choice(["伟", "芳", "建国", "秀英"]),
        rep_id_no=new_resident_id(),
        reg_capital=Decimal(_rng.choice([10, 50, 100, 500]) * 10_000).quantize(Decimal("0.01")),
        address=f"北京市海淀区学府路{_rng.randint(1, 999)}号",
        established_on=date(2020, _rng.randint(1, 12), _rng.randint(1, 28)),
        ent_type="1",
        industry_code=_rng.choice("CFIM"),
    )
    return replace(company, **overrides)


def insert(stack: Stack, company: Enterprise) -> None:
    insert_many(stack, [company])


def insert_many(stack: Stack, companies: list[Enterprise]) -> None:
    """New rows at market regulation, in one transaction."""
    with (
        psycopg.connect(stack.settings.pg_conninfo("market_regulation")) as conn,
        conn.cursor() as cursor,
    ):
        cursor.executemany(
            "INSERT INTO enterprise (credit_code, ent_name, reg_status, rep_name, rep_id_no,"
            " reg_capital, address, established_on, ent_type, industry_code)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    c.credit_code,
                    c.ent_name,
                    c.reg_status,
                    c.rep_name,
                    c.rep_id_no,
                    c.reg_capital,
                    c.address,
                    c.established_on,
                    c.ent_type,
                    c.industry_code,
                )
                for c in companies
            ],
        )


def deliver(
    stack: Stack, companies: list[Enterprise], topic: str = TAX, timeout: float = WAIT
) -> list[topic_reader.Record]:
    """Insert ``companies``; their records on ``topic`` once every one has arrived."""
    start = stack.offsets(topic)
    insert_many(stack, companies)
    keys = {c.credit_code for c in companies}
    records = stack.read_until(start, lambda rs: keys <= {r.key for r in rs}, timeout=timeout)
    return [r for r in records if r.key in keys]


def update(stack: Stack, uscc: str, assignments: str, params: tuple = ()) -> None:
    """One UPDATE of the company's row, committed in its own transaction."""
    stack.sql(
        "market_regulation",
        f"UPDATE enterprise SET {assignments}, updated_at = now() WHERE credit_code = %s",
        (*params, uscc),
    )
