"""Second-hand house transfer (二手房转移登记): real-estate registration owns the title; tax
and public security follow it. Every department sees a transfer at the same version, in
its push and in its look-up; a second transfer made against the old version is refused by
the registry's own rule, and the refusal is delivered and traced like any change."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from urllib.parse import quote

import pytest

from connectors.sinks.tax import DEED_TAX_RATE
from tests.integration.companies import WAIT, govsync, wait_for
from tests.integration.conftest import Stack
from tests.integration.test_api import look_up_version

pytestmark = pytest.mark.stack

TITLES = ("deliver.tax.title", "deliver.public_security.title")
TRANSFERS = "deliver.tax.transfer"
PRICE = Decimal("3200000.00")


def residents(stack: Stack, count: int) -> list[tuple[str, str]]:
    return [
        (str(i), str(n))
        for i, n in stack.sql(
            "public_security",
            "SELECT id_no, full_name FROM household_registration WHERE hukou_status = '1'"
            " ORDER BY random() LIMIT %s",
            (count,),
        )
    ]


def transfer(stack: Stack, title_no: str, against: int, buyer: tuple[str, str]) -> tuple[str, str]:
    """(application number, the registry's outcome: R registered, X refused)."""
    application = f"ZY{uuid.uuid4().int % 10**12:012d}"
    [(outcome,)] = stack.sql(
        "real_estate",
        "SELECT transfer_title(%s, %s, %s, %s, %s, %s)",
        (application, title_no, against, buyer[0], buyer[1], PRICE),
    )
    return application, str(outcome)


def test_a_transfer_is_seen_at_one_version_and_a_stale_one_is_refused_and_traced(
    stack: Stack,
) -> None:
    seller, buyer, late_buyer = residents(stack, 3)
    title_no = f"京(2026)海淀区不动产权第{uuid.uuid4().int % 10**7:07d}号"
    start = stack.offsets(*TITLES, TRANSFERS)
    stack.sql(
        "real_estate",
        "INSERT INTO property_title (title_no, address, area_m2, owner_id_no, owner_name)"
        " VALUES (%s, '北京市海淀区学府路8号3单元501', 89.50, %s, %s)",
        (title_no, *seller),
    )
    stack.read_until(
        start,
        lambda rs: {r.topic for r in rs if r.key == title_no} >= set(TITLES),
        timeout=WAIT,
    )

    # Two buyers, both against version 1: the registry registers the first, refuses the
    # second, in its own database, whatever the pipeline does.
    start = stack.offsets(*TITLES, TRANSFERS)
    registered, outcome = transfer(stack, title_no, 1, buyer)
    assert outcome == "R"
    refused, outcome = transfer(stack, title_no, 1, late_buyer)
    assert outcome == "X"
    records = stack.read_until(
        start,
        lambda rs: all(any(r.topic == t and r.key == title_no for r in rs) for t in TITLES)
        and {r.key for r in rs if r.topic == TRANSFERS} >= {registered, refused},
        timeout=WAIT,
    )
    # Every department sees the title at version 2, owned by the first buyer; nobody sees
    # a version 3.
    pushes = {}
    for topic in TITLES:
        [push] = [r for r in records if r.topic == topic and r.key == title_no]
        assert push.value is not None
        assert push.value["after"]["version"] == 2, topic
        assert push.value["after"]["owner_id"] == buyer[0], topic
        pushes[topic] = push
    assert len({p.headers["event_id"] for p in pushes.values()}) == 1

    # A look-up agrees with the push, department by department.
    for topic, push in pushes.items():
        department = topic.split(".")[1]
        found = look_up_version(
            stack, department, f"/v1/title/{quote(title_no)}", push.headers["event_id"]
        )
        assert found["state"]["version"] == 2
        assert found["state"] == push.value["after"]

    [(version, owner)] = stack.sql(
        "real_estate",
        "SELECT version, owner_id_no FROM property_title WHERE title_no = %s",
        (title_no,),
    )
    assert (version, owner) == (2, buyer[0])
    [refusal] = [r.value for r in records if r.topic == TRANSFERS and r.key == refused]
    assert refusal is not None
    assert refusal["after"]["outcome"] == "refused"
    assert refusal["after"]["from_version"] == 1
    assert "is at version 2" in refusal["after"]["reason"]

    def assessed() -> list[tuple]:
        return stack.sql(
            "tax", "SELECT application_no, amount FROM deed_tax WHERE title_no = %s", (title_no,)
        )

    wait_for(lambda: bool(assessed()), f"tax to assess deed tax on {registered}")
    assert assessed() == [(registered, (PRICE * DEED_TAX_RATE).quantize(Decimal("0.01")))]
    for database, table in (
        ("tax", "property_register"),
        ("public_security", "residence_property"),
    ):
        wait_for(
            lambda d=database, t=table: stack.sql(
                d, f"SELECT version, owner_id FROM {t} WHERE title_no = %s", (title_no,)
            )
            == [(2, buyer[0])],
            f"{database} to hold {title_no} at version 2",
        )

    # The refusal's trace: committed at the registry, captured, normalized, delivered to
    # tax and received there.
    def traced() -> dict:
        """The one change of the refused application (its key), as `govsync trace` shows it."""
        shown = govsync("trace", refused, "--json")
        found = json.loads(shown.stdout) if shown.returncode == 0 else []
        return found[0] if found else {}

    wait_for(
        lambda: any(s["stage"] == "receipt" for s in traced().get("steps", [])),
        f"the refusal {refused} to be received and traced",
    )
    stages = [s["stage"] for s in traced()["steps"]]
    assert stages[:3] == ["committed", "captured", "normalized"]
    assert {"delivered", "receipt"} <= set(stages)
