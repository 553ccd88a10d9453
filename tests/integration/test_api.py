"""The query API on the running stack: a department sees an entity's current state as its
subscription delivers it (same fields, same masks, same version as the push), and is
refused, with problem details naming why, everything else."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from govsync.index import queries
from streams.kafka import credentials
from streams.kafka.topic_reader import Record
from streams.model.standards import legacy_resident_id
from tests.integration.companies import (
    GOVSYNC,
    SOCIAL,
    SUBSCRIPTION_OF,
    TAX,
    WAIT,
    govsync,
    insert,
    new_company,
    new_resident_id,
    with_wrong_check_character,
)
from tests.integration.conftest import Stack
from tests.integration.test_person import MEDICAL, register_person

PROBLEM = "application/problem+json"


def client(stack: Stack, department: str | None) -> httpx.Client:
    auth = (department, credentials.password(stack.settings, department)) if department else None
    return httpx.Client(
        base_url=f"http://{stack.settings.host}:{stack.settings.api_port}", auth=auth, timeout=10
    )


def look_up_version(
    stack: Stack, department: str, path: str, event_id: str, timeout: float = WAIT
) -> dict[str, Any]:
    """The look-up once it reflects ``event_id`` (the indexer materializes master)."""
    deadline = time.monotonic() + timeout
    with client(stack, department) as api:
        while True:
            response = api.get(path)
            if response.status_code == 200 and response.json()["version"]["event_id"] == event_id:
                return response.json()
            assert time.monotonic() < deadline, f"{path}: {response.status_code} {response.text}"
            time.sleep(0.2)


def pushed(stack: Stack, topic: str, key: str, write: Callable[[], None]) -> Record:
    """The record ``write`` (a commit at a source) makes on delivery topic ``topic``."""
    start = stack.offsets(topic)
    write()
    records = stack.read_until(start, lambda rs: any(r.key == key for r in rs))
    [record] = [r for r in records if r.key == key]
    return record


@pytest.mark.parametrize("topic", [TAX, SOCIAL])
def test_a_look_up_shows_what_the_push_delivered(stack: Stack, topic: str) -> None:
    company = new_company()
    push = pushed(stack, topic, company.credit_code, lambda: insert(stack, company))
    department = SUBSCRIPTION_OF[topic].split(".")[0]
    event_id = push.headers["event_id"]
    found = look_up_version(stack, department, f"/v1/enterprise/{company.credit_code}", event_id)
    assert found["subscription"] == SUBSCRIPTION_OF[topic]
    assert found["state"] == push.value["after"]  # same fields, same masks
    assert found["version"]["source_ts_ms"] == push.value["source_ts_ms"]
    # The key in lower case is the same USCC.
    with client(stack, department) as api:
        again = api.get(f"/v1/enterprise/{company.credit_code.lower()}")
    assert again.json()["state"] == found["state"]
    # Each answered look-up is on the audit trail, beside the delivery.
    deadline = time.monotonic() + WAIT
    while True:
        asked = govsync("audit", "who-received", company.credit_code, "--json")
        assert asked.returncode == 0, asked.stderr
        received = json.loads(asked.stdout)
        looked_up = [r for r in received if r["via"] == "query" and r["event_id"] == event_id]
        if looked_up or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert looked_up and {r["department"] for r in looked_up} == {department}
    assert set(looked_up[0]["fields"]) == set(found["state"])  # no field of theirs is dropped
    assert looked_up[0]["approval"]["state"] == "approved"
    assert any(r["via"] == "delivery" and r["department"] == department for r in received)


def test_a_15_digit_resident_id_is_looked_up_as_its_18_digit_form(stack: Stack) -> None:
    id18 = new_resident_id()  # born in the 20th century: it has a 15-digit form
    legacy = legacy_resident_id(id18)
    assert legacy is not None
    push = pushed(stack, MEDICAL, id18, lambda: register_person(stack, id18, "李四"))
    found = look_up_version(
        stack, "medical_insurance", f"/v1/person/{legacy}", push.headers["event_id"]
    )
    assert (found["key"], found["state"]) == (id18, push.value["after"])


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["type"].startswith("/problems/") and body["detail"]
    return body


def test_what_a_department_may_not_see_is_refused_with_the_reason(stack: Stack) -> None:
    known = stack.sql("market_regulation", "SELECT credit_code FROM enterprise LIMIT 1")[0][0]
    with client(stack, "public_security") as api:
        refused = problem(api.get(f"/v1/enterprise/{known}"), 403)
    assert refused["reason"] == "not_subscribed"
    # The refusal is on the audit trail too, by the department that asked.
    deadline = time.monotonic() + WAIT
    while True:
        with queries.current(stack.settings) as (conn, _):
            chains = queries.audit_entries(conn, known)
        asked = [
            r
            for chain in chains.values()
            for _, r in chain
            if r.kind == "query" and r.actor == "public_security"
        ]
        if asked or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert asked and asked[-1].detail == {"status": "403", "reason": "not_subscribed"}
    with client(stack, None) as anonymous:
        problem(anonymous.get(f"/v1/enterprise/{known}"), 401)
    with httpx.Client(
        base_url=f"http://{stack.settings.host}:{stack.settings.api_port}",
        auth=("tax", credentials.password(stack.settings, "social_security")),
    ) as impostor:
        problem(impostor.get(f"/v1/enterprise/{known}"), 401)
    with client(stack, "tax") as api:
        wrong = with_wrong_check_character(known)
        malformed = problem(api.get(f"/v1/enterprise/{wrong}"), 400)
        assert malformed["standard_code"] == "bad_check_character"
        assert wrong in malformed["detail"]
        problem(api.get(f"/v1/enterprise/{new_company().credit_code}"), 404)
        problem(api.get(f"/v1/building/{known}"), 404)


def test_status_names_the_api_and_it_serves_its_openapi_document(stack: Stack) -> None:
    status = govsync("status", "--json")
    assert status.returncode == 0, status.stderr
    api_status = json.loads(status.stdout)["components"]["api"]
    assert api_status["state"] == "up"
    document = httpx.get(f"{api_status['url']}openapi.json", timeout=10).json()
    assert {
        "/v1/{entity}/{key}",
        "/v1/{entity}:batchGet",
        "/v1/{entity}/{key}/history",
        "/v1/audit/who-received/{key}",
        "/v1/audit/trace/{query}",
    } <= set(document["paths"])


def test_a_batch_answers_each_key_and_history_lists_the_own_deliveries(stack: Stack) -> None:
    company = new_company()
    push = pushed(stack, TAX, company.credit_code, lambda: insert(stack, company))
    event_id = push.headers["event_id"]
    look_up_version(stack, "tax", f"/v1/enterprise/{company.credit_code}", event_id)
    unknown, malformed = new_company().credit_code, with_wrong_check_character(company.credit_code)
    with client(stack, "tax") as api:
        batch = api.post(
            "/v1/enterprise:batchGet", json={"keys": [company.credit_code, unknown, malformed]}
        )
        assert batch.status_code == 200, batch.text
        found, missing, bad = batch.json()["items"]
        assert found["found"]["state"] == push.value["after"]
        assert (missing["problem"]["status"], bad["problem"]["status"]) == (404, 400)
        assert bad["problem"]["standard_code"] == "bad_check_character"
        problem(api.post("/v1/enterprise:batchGet", json={"keys": [unknown] * 1001}), 400)

        deadline = time.monotonic() + WAIT
        while True:  # the lineage index has the delivery once the ledger traced it
            delivered = api.get(f"/v1/enterprise/{company.credit_code}/history").json()
            if delivered or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert [(d["event_id"], d["subscription"]) for d in delivered] == [(event_id, "tax.enterprise")]
    with client(stack, "public_security") as api:  # not its delivery: nothing to list
        assert api.get(f"/v1/enterprise/{company.credit_code}/history").json() == []


def test_the_authority_asks_who_received_and_trace_as_the_commands_answer(stack: Stack) -> None:
    """The audit questions from the resident API: the same answers as `govsync audit
    who-received` and `govsync trace`, only for the data authority, each on the trail."""
    company = new_company()
    push = pushed(stack, TAX, company.credit_code, lambda: insert(stack, company))
    event_id = push.headers["event_id"]
    authority = "data_resource_bureau"
    with client(stack, authority) as api:
        deadline = time.monotonic() + WAIT
        while True:  # audited, indexed, and every department's sink has answered
            asked = api.get(f"/v1/audit/who-received/{company.credit_code}?fresh=true")
            assert asked.status_code == 200, asked.text
            received = asked.json()["received"]
            answered = {r["department"] for r in received if r["receipt"]}
            if {"tax", "social_security"} <= answered or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        traced = api.get(f"/v1/audit/trace/{event_id}")
    assert traced.status_code == 200, traced.text
    commanded = govsync("audit", "who-received", company.credit_code, "--json")
    assert commanded.returncode == 0, commanded.stderr
    # The question itself is on the trail, but received nothing: both answers agree.
    assert received == json.loads(commanded.stdout)
    assert {("tax", event_id)} <= {(r["department"], r["event_id"]) for r in received}
    assert isinstance(asked.json()["index_lacking"], int)  # 0 unless the indexer is > 2 s late
    [trace] = traced.json()["traces"]
    assert (trace["event_id"], trace["entity_key"]) == (event_id, company.credit_code)
    assert any(s["stage"] == "delivered" and s["department"] == "tax" for s in trace["steps"])
    commanded = govsync("trace", event_id, "--json")
    assert commanded.returncode == 0, commanded.stderr
    [by_command] = json.loads(commanded.stdout)
    assert {s["stage"] for s in trace["steps"]} <= {s["stage"] for s in by_command["steps"]}

    with client(stack, "tax") as api:  # a department may not ask who else received
        refusal = problem(api.get(f"/v1/audit/who-received/{company.credit_code}"), 403)
    assert refusal["reason"] == "not_the_authority"
    with client(stack, None) as anonymous:
        problem(anonymous.get(f"/v1/audit/trace/{event_id}"), 401)

    deadline = time.monotonic() + WAIT
    while True:
        with queries.current(stack.settings) as (conn, _):
            chains = queries.audit_entries(conn, company.credit_code)
        questions = {
            (r.actor, r.detail.get("status"), r.detail.get("reason"))
            for chain in chains.values()
            for _, r in chain
            if r.kind == "query"
        }
        if len(questions) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert questions == {
        (authority, "200", "who-received"),
        ("tax", "403", "who-received: not_the_authority"),
    }


def test_a_department_over_its_rate_is_answered_429(stack: Stack) -> None:
    """On an API of its own with a rate of 3 requests a second."""
    with socket.socket() as probe:
        probe.bind((stack.settings.host, 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "GOVSYNC_API_RATE": "3"}
    server = subprocess.Popen(
        [str(GOVSYNC), "api", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://{stack.settings.host}:{port}"
        auth = ("tax", credentials.password(stack.settings, "tax"))
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.3)
        with httpx.Client(base_url=base, auth=auth, timeout=10) as api:
            answers = [api.get("/v1/enterprise/91350100M000100Y43") for _ in range(10)]
        limited = [a for a in answers if a.status_code == 429]
        assert limited and len(limited) < len(answers)
        assert problem(limited[0], 429)["type"] == "/problems/rate_limited"
        assert int(limited[0].headers["retry-after"]) >= 1
    finally:
        server.terminate()
        server.wait(30)


def test_min_version_waits_for_the_change_just_pushed(stack: Stack) -> None:
    """Read-your-writes: asked the moment the push arrived, a look-up with the pushed
    event_id as min_version answers that version (without it, it might still be the
    previous one, or unknown)."""
    company = new_company()
    push = pushed(stack, TAX, company.credit_code, lambda: insert(stack, company))
    event_id = push.headers["event_id"]
    with client(stack, "tax") as api:
        found = api.get(f"/v1/enterprise/{company.credit_code}", params={"min_version": event_id})
        assert found.status_code == 200, found.text
        assert found.json()["version"]["event_id"] == event_id
        never = api.get(
            f"/v1/enterprise/{company.credit_code}", params={"min_version": "no-such-change"}
        )
    assert problem(never, 504)["type"] == "/problems/version_not_reached"
