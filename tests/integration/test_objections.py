"""使用—评价 on the real stack: tax objects to a record it was delivered (数据异议); the
finding reaches market regulation, the source, carrying the record, on a topic only it (of
the departments) may read; market regulation resolves it with a reason; every step is on
the audit trail under the principal that signed it, and the rates per source count it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from streams.contract.objections import Step
from streams.contract.topics import AUDIT_TOPIC, objections_topic
from tests.integration.companies import TAX, deliver, govsync, new_company
from tests.integration.conftest import Stack
from tests.integration.test_access import DENIED, first_read_error

pytestmark = pytest.mark.stack

SOURCE_DEPARTMENT, SOURCE = "market_regulation", "market_regulation.enterprise"
REFUSED = 4
INDEXED_WITHIN_S = 60.0


def listed(objection: str) -> dict[str, Any] | None:
    result = govsync("objection", "list", "--json")
    assert result.returncode == 0, result.stderr
    return next((o for o in json.loads(result.stdout) if o["id"] == objection), None)


def until_listed(objection: str, answered: bool = False) -> dict[str, Any]:
    deadline = time.monotonic() + INDEXED_WITHIN_S
    while time.monotonic() < deadline:
        found = listed(objection)
        if found is not None and (found["answer"] is not None) == answered:
            return found
        time.sleep(1)
    raise AssertionError(f"objection {objection} not on the indexed trail within the limit")


def test_an_objection_reaches_the_source_and_its_answer_closes_the_loop(stack: Stack) -> None:
    audit_from = stack.offsets(AUDIT_TOPIC)
    company = new_company()
    (delivered,) = deliver(stack, [company], TAX)
    event_id = delivered.value["event_id"]

    stranger = govsync(
        "objection", "raise", event_id, "--reason", "不是我的", "--as", "medical_insurance"
    )
    assert stranger.returncode == REFUSED and "was not delivered to" in stranger.stderr

    raised = govsync(
        "objection", "raise", event_id, "--reason", "注册资本有误", "--as", "tax", "--json"
    )
    assert raised.returncode == 0, raised.stdout + raised.stderr
    objection = json.loads(raised.stdout)
    assert objection["source"] == SOURCE_DEPARTMENT and objection["source_id"] == SOURCE
    assert objection["record"]["key"] == company.credit_code
    state = until_listed(objection["id"])
    assert state["department"] == "tax" and state["answer"] is None

    # The finding, with the record, as the source reads it; tax may not read that topic.
    shown = govsync("objection", "show", objection["id"], "--as", SOURCE_DEPARTMENT, "--json")
    assert shown.returncode == 0, shown.stderr
    finding = json.loads(shown.stdout)
    assert finding["record"]["key"] == company.credit_code and finding["reason"] == "注册资本有误"
    topic = objections_topic(SOURCE_DEPARTMENT)
    assert first_read_error(stack, "tax", topic, "tax-probe") in DENIED

    # Only the source answers.
    wrong = govsync("objection", "resolve", objection["id"], "--reason", "x", "--as", "tax")
    assert wrong.returncode == REFUSED and "answered by market_regulation" in wrong.stderr
    resolved = govsync(
        "objection",
        "resolve",
        objection["id"],
        "--reason",
        "已按营业执照更正",
        "--as",
        SOURCE_DEPARTMENT,
    )
    assert resolved.returncode == 0, resolved.stderr
    closed = until_listed(objection["id"], answered=True)
    assert closed["answer"] == Step.RESOLVED and closed["answer_reason"] == "已按营业执照更正"
    again = govsync(
        "objection", "reject", objection["id"], "--reason", "y", "--as", SOURCE_DEPARTMENT
    )
    assert again.returncode == REFUSED and "already answered" in again.stderr

    trail = stack.read_until(
        audit_from,
        lambda rs: len(steps(rs, objection["id"])) == 2,
        timeout=INDEXED_WITHIN_S,
    )
    first, second = steps(trail, objection["id"])
    assert (first["actor"], first["detail"]["step"]) == ("tax", "raised")
    assert first["event_id"] == event_id and first["entity_key"] == company.credit_code
    assert (second["actor"], second["detail"]["step"]) == (SOURCE_DEPARTMENT, "resolved")

    rates = govsync("quality", "--rates", "--json")
    assert rates.returncode == 0, rates.stderr
    market = next(q for q in json.loads(rates.stdout) if q["source"] == SOURCE)
    assert market["objections"] >= 1 and market["resolved"] >= 1
    assert market["objection_rate"] is not None and market["error_rate"] is not None


def steps(records: list[Any], objection: str) -> list[dict[str, Any]]:
    return [
        r.value
        for r in records
        if r.value
        and r.value["kind"] == "objection"
        and r.value["detail"]["objection"] == objection
    ]
