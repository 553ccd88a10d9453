"""Traceable end to end on the real stack: a deregistration's trace shows every hop, the
audit trail's hash chains verify, tampering with a copy is caught where it happened, and
who-received names exactly the departments that got an entity and the fields they got."""

from __future__ import annotations

import io
import json
import os
import struct
import uuid
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from connectors.sinks import process_name
from govsync.ops.monitor import Refresher
from govsync.stack import supervision
from govsync.stack.background import restart_worker as restart_worker_instance
from govsync.stack.background import start_app_process
from streams.contract import headers, schemas
from streams.contract.records import AuditRecord
from streams.contract.topics import AUDIT_TOPIC, TRACE_TOPIC
from streams.kafka import admin, clients, topic_reader
from streams.trail import tracing
from tests.integration.companies import (
    SOCIAL,
    TAX,
    TRACEPARENT,
    WAIT,
    deliver,
    govsync,
    insert,
    new_company,
    update,
    wait_for,
)
from tests.integration.conftest import Stack
from tests.integration.topologies import edited
from tests.otlp import collector

COPIED = 400  # records of one chain copied for the tampering tests


def run_json(*args: str) -> Any:
    result = govsync(*args, "--json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def deregistered_company(stack: Stack) -> tuple[str, list[topic_reader.Record]]:
    """A new company, registered then deregistered; the deregistration's two deliveries."""
    company = new_company()
    insert(stack, company)
    start = stack.offsets(TAX, SOCIAL)
    update(stack, company.credit_code, "reg_status = '4'")

    def both(records: list[topic_reader.Record]) -> bool:
        mine = [r for r in records if r.key == company.credit_code and r.value]
        return {r.topic for r in mine if r.value["kind"] == "deregistered"} == {TAX, SOCIAL}

    records = stack.read_until(start, both, timeout=WAIT)
    return company.credit_code, [
        r for r in records if r.key == company.credit_code and r.value["kind"] == "deregistered"
    ]


@pytest.fixture(scope="module")
def deregistration(stack: Stack) -> tuple[str, list[topic_reader.Record]]:
    return deregistered_company(stack)


def complete_trace(event_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def receipted() -> bool:
        found[:] = run_json("trace", event_id)
        return bool(found) and sum(s["stage"] == "receipt" for s in found[0]["steps"]) == 2

    wait_for(receipted, f"both receipts of {event_id} on {TRACE_TOPIC}")
    return found[0]


def test_the_trace_of_a_deregistration_shows_every_hop_in_order(
    stack: Stack, deregistration: tuple[str, list[topic_reader.Record]]
) -> None:
    uscc, deliveries = deregistration
    event_id = deliveries[0].value["event_id"]
    assert TRACEPARENT.fullmatch(deliveries[0].headers["traceparent"])
    trace = complete_trace(event_id)
    assert trace["complete"] and trace["missing"] == []
    assert (trace["entity_key"], trace["kind"]) == (uscc, "deregistered")
    steps = trace["steps"]
    assert [(s["stage"], s["department"]) for s in steps] == [
        ("committed", None),
        ("captured", None),
        ("normalized", None),
        ("delivered", "social_security"),
        ("receipt", "social_security"),
        ("delivered", "tax"),
        ("receipt", "tax"),
    ]
    for earlier, later in pairwise(steps[:4]):
        assert earlier["at_ms"] <= later["at_ms"], (earlier, later)
    commit = steps[0]["at_ms"]
    for step in steps[1:]:
        assert 0 <= step["since_commit_ms"] < 60_000, step  # plausible: within a minute
        assert step["since_commit_ms"] == step["at_ms"] - commit
        assert step["hop_ms"] >= 0, step
    # Every position names the real record of that hop.
    by_topic = {d.topic: d for d in deliveries}
    for step in steps:
        if step["stage"] == "delivered":
            record = by_topic[f"deliver.{step['department']}.enterprise"]
            assert step["position"] == f"{record.topic}[{record.partition}]@{record.offset}"
    receipt = next(s for s in steps if s["stage"] == "receipt")
    topic, rest = receipt["position"].split("[")
    partition, offset = int(rest.split("]")[0]), int(rest.split("@")[1])
    answer = stack.read_until({(topic, partition): offset}, bool, timeout=WAIT)[0]
    assert answer.value["event_id"] == event_id and answer.value["outcome"] == "applied"
    assert (
        answer.headers["traceparent"].split("-")[1]
        == (deliveries[0].headers["traceparent"].split("-")[1])
    )  # one trace id from normalize to the receipt


def test_an_entity_key_lists_its_changes_newest_first(
    stack: Stack, deregistration: tuple[str, list[topic_reader.Record]]
) -> None:
    uscc, deliveries = deregistration
    complete_trace(deliveries[0].value["event_id"])
    traces = run_json("trace", uscc)
    assert [t["kind"] for t in traces] == ["deregistered", "registered"]
    assert traces[0]["source_ts_ms"] >= traces[1]["source_ts_ms"]


def test_an_unknown_change_is_a_clear_failure(stack: Stack) -> None:
    result = govsync("trace", "no-such-event")
    assert result.returncode == 1
    assert "no change with event_id or entity key 'no-such-event'" in result.stderr


def test_who_received_names_exactly_the_departments_and_the_fields_they_got(
    stack: Stack, deregistration: tuple[str, list[topic_reader.Record]]
) -> None:
    uscc, deliveries = deregistration
    complete_trace(deliveries[0].value["event_id"])
    received = run_json("audit", "who-received", uscc)
    latest = {r["department"]: r for r in received if r["kind"] == "deregistered"}
    assert set(latest) == {"tax", "social_security"}
    assert {r["department"] for r in received} == {"tax", "social_security"}
    for delivery in deliveries:
        department = delivery.topic.split(".")[1]
        got = sorted(k for k, v in delivery.value["after"].items() if v is not None)
        entry = latest[department]
        assert entry["fields"] == got
        assert entry["event_id"] == delivery.value["event_id"]
        assert entry["receipt"] == "applied"
        subscription = stack.topology.subscription(f"{department}.enterprise")
        assert set(got) <= set(subscription.fields)
        assert entry["masked"] == {f: m.rule for f, m in subscription.mask.items() if f in got}
        assert entry["approval"]["state"] == "approved"
        assert entry["approval"]["by"] == subscription.approval.by
        assert entry["approval"]["legal_basis"] == subscription.approval.legal_basis
    assert latest["social_security"]["masked"] == {
        "legal_rep_id": "partial",
        "legal_rep_name": "hash",
    }


def test_the_audit_trail_verifies_intact(
    stack: Stack, deregistration: tuple[str, list[topic_reader.Record]]
) -> None:
    complete_trace(deregistration[1][0].value["event_id"])
    report = run_json("audit", "verify")
    assert report["intact"], report
    assert sum(chain["records"] for chain in report["chains"].values()) > 0
    # Again from the last checkpoint each chain was found intact up to.
    again = run_json("audit", "verify", "--incremental")
    assert again["intact"], again
    for partition, chain in report["chains"].items():
        resumed = again["chains"][partition]
        expected = chain["checkpoint"]["offset"] if chain["checkpoint"] else 0
        assert resumed["from_offset"] == expected, (partition, chain, resumed)
        assert resumed["records"] <= chain["records"]


# --- tampering with a copy --------------------------------------------------------------


def chain_prefix(stack: Stack) -> list[tuple[bytes | None, bytes]]:
    """The first records of the longest chain on govsync.audit, as raw (key, value)."""
    ends = stack.offsets(AUDIT_TOPIC)
    (_, partition), _ = max(ends.items(), key=lambda item: item[1])
    copied: list[tuple[bytes | None, bytes]] = []
    for message in topic_reader.messages(
        stack.settings.bootstrap, {(AUDIT_TOPIC, partition): 0}, timeout=60
    ):
        copied.append((message.key(), message.value()))
        if len(copied) == COPIED:
            break
    assert len(copied) == COPIED, f"the audit trail has only {len(copied)} records"
    return copied


def rewritten(value: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """The same record with ``change`` applied, re-encoded under its own schema id and its
    stored sha256 untouched: what someone editing the topic's data would produce."""
    schema = fastavro.parse_schema(schemas.audit_schema())
    record = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)
    change(record)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return value[:5] + out.getvalue()


@pytest.fixture()
def scratch_topic(stack: Stack) -> Iterator[str]:
    name = f"test.audit-copy.{uuid.uuid4().hex[:8]}"
    client = admin.admin_client(stack.settings.bootstrap)
    client.create_topics([NewTopic(name, 1, 1)])[name].result()
    yield name
    client.delete_topics([name])[name].result()


def publish(stack: Stack, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer(clients.config(stack.settings.bootstrap))
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def seq_of(value: bytes) -> int:
    schema = fastavro.parse_schema(schemas.audit_schema())
    return AuditRecord.model_validate(fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)).seq


def test_verify_catches_an_altered_a_removed_and_a_reordered_record(
    stack: Stack, scratch_topic: str
) -> None:
    original = chain_prefix(stack)
    assert struct.unpack(">bI", original[0][1][:5])[0] == 0  # Confluent wire format

    def who(record: dict[str, Any]) -> None:
        record["department"] = "public_security"  # claim another department got it

    tampered = list(original)
    tampered[50] = (original[50][0], rewritten(original[50][1], who))  # altered at offset 50
    del tampered[150]  # removed: seq 150 (offsets shift by one from here)
    tampered[299], tampered[300] = tampered[300], tampered[299]  # reordered: seqs 301, 300
    publish(stack, scratch_topic, tampered)

    report = run_json("audit", "verify", "--topic", scratch_topic)
    findings = report["chains"]["0"]["findings"]
    assert not report["intact"]
    problems = {(f["problem"], f["seq"]) for f in findings}
    assert ("altered", seq_of(original[50][1])) in problems
    assert ("removed", seq_of(original[150][1])) in problems
    assert any(p == "reordered" and s in (300, 301) for p, s in problems), findings
    assert len(findings) <= 4, findings  # one finding per tampering, no cascade
    altered = next(f for f in findings if f["problem"] == "altered")
    assert altered["offset"] == 50


def test_verify_passes_an_untouched_copy(stack: Stack, scratch_topic: str) -> None:
    publish(stack, scratch_topic, chain_prefix(stack))
    report = run_json("audit", "verify", "--topic", scratch_topic)
    assert report["intact"], report
    assert report["chains"]["0"]["records"] == COPIED


# --- the receipt SLA ---------------------------------------------------------------------


def overdue_gauge(refresher: Refresher, subscription: str) -> int:
    """The monitor's govsync_receipts_overdue for ``subscription``, freshly measured."""
    refresher.refresh()
    return next(r.overdue for r in refresher.state.receipts if r.subscription == subscription)


def test_a_delivery_left_unanswered_past_receipt_within_is_counted_and_listed(
    stack: Stack, tmp_path: Path
) -> None:
    def strict_receipts(data: dict[str, Any]) -> None:
        tax = next(s for s in data["subscriptions"] if s["id"] == "tax.enterprise")
        tax["sla"]["receipt_within"] = "2s"

    strict = edited(tmp_path, strict_receipts)
    sink = process_name("tax")
    supervision.stop(stack.settings, sink)
    try:
        assert govsync("topology", "apply", "--file", str(strict)).returncode == 0
        (delivery,) = deliver(stack, [new_company()])
        event_id = delivery.value["event_id"]

        def listed() -> bool:
            return any(
                w["event_id"] == event_id and w["overdue"] for w in run_json("receipts", "overdue")
            )

        wait_for(listed, "the unanswered delivery listed as overdue")
        refresher = Refresher(stack.settings)
        wait_for(lambda: overdue_gauge(refresher, "tax.enterprise") >= 1, "the overdue gauge")
        (trace,) = run_json("trace", event_id)
        assert any("no receipt from tax" in m and "overdue" in m for m in trace["missing"])
    finally:
        start_app_process(stack.settings, sink, ["sink", "tax"])
        assert govsync("topology", "apply").returncode == 0
    wait_for(lambda: not listed(), "the tax sink's receipt to answer it")
    assert run_json("trace", event_id)[0]["complete"]


# --- OpenTelemetry ------------------------------------------------------------------------


def restart_worker(stack: Stack, **env: str | None) -> None:
    """The worker again, with ``env`` changed in what it inherits."""
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    restart_worker_instance(stack.settings, 0)


def test_with_an_otlp_endpoint_the_worker_exports_a_span_per_hop(stack: Stack) -> None:
    with collector() as otlp:
        restart_worker(stack, **{tracing.ENDPOINT_VARIABLE: otlp.url})
        try:
            (delivery,) = deliver(stack, [new_company()])
            trace_id = bytes.fromhex(headers.trace_id(delivery.value["event_id"]))

            def names() -> set[str]:
                return {span.name for _, span in otlp.spans() if span.trace_id == trace_id}

            expected = {"captured", "normalized", "delivered tax", "receipt tax"}
            wait_for(lambda: expected <= names(), f"spans {sorted(expected)}")
        finally:
            restart_worker(stack, **{tracing.ENDPOINT_VARIABLE: None})
    commit = delivery.value["source_ts_ms"] * 1_000_000
    for _, span in otlp.spans():
        if span.trace_id == trace_id:
            assert span.start_time_unix_nano == commit
            assert span.end_time_unix_nano >= commit
