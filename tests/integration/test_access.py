"""Least privilege on the real stack: only approved, unexpired subscriptions receive data;
approval changes take effect in the running worker within seconds of `topology apply`;
masks hold on every record ever delivered; invalid topologies change nothing."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from connectors.sources import debezium
from govsync.stack.background import worker_name
from govsync.stack.supervision import status
from streams.contract.topics import changes_topic, delivery_topic
from streams.kafka import admin, applied, clients, topic_reader
from streams.kafka.topic_reader import Record
from streams.transform.masking import MASK_CHAR
from tests.integration.companies import (
    SOCIAL,
    TAX,
    WAIT,
    govsync,
    insert,
    new_company,
    new_resident_id,
)
from tests.integration.conftest import Stack
from tests.integration.test_api import client as api_client
from tests.integration.topologies import TOPOLOGY, edited

HEX64 = re.compile(r"[0-9a-f]{64}")


def of(records: list[Record], topic: str, key: str) -> list[Record]:
    return [r for r in records if r.topic == topic and r.key == key]


def tax(data: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in data["subscriptions"] if s["id"] == "tax.enterprise")


def apply(path: Path) -> None:
    result = govsync("topology", "apply", "--as-authority", "--file", str(path), "--json")
    assert result.returncode == 0, result.stdout + result.stderr


@contextmanager
def applied_topology(path: Path) -> Iterator[float]:
    """Apply ``path``; yields when the apply returned; the real topology is re-applied after."""
    try:
        apply(path)
        yield time.monotonic()
    finally:
        apply(TOPOLOGY)


def delivered_to(stack: Stack) -> tuple[str, list[Record]]:
    """Register a company and return what the two enterprise subscriptions got for it once
    social security's delivery (written in the same transaction as tax's) is visible."""
    company = new_company()
    start = stack.offsets(TAX, SOCIAL)
    insert(stack, company)
    stack.read_until(start, lambda rs: bool(of(rs, SOCIAL, company.credit_code)), timeout=WAIT)
    # Committed together: everything up to the current end now includes tax's record, if any.
    records = list(topic_reader.read(stack.settings.bootstrap, stack.decode, start))
    return company.credit_code, records


def wait_until_tax_receives(stack: Stack, expect: bool, timeout: float = 20.0) -> float:
    """Seconds until a new company's delivery to tax is (or is no longer) made."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        key, records = delivered_to(stack)
        if bool(of(records, TAX, key)) == expect:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"tax {'still did not receive' if expect else 'kept receiving'}")


@pytest.mark.parametrize(
    ("case", "edit"),
    [
        ("revoked", lambda a: a.update(state="revoked")),
        ("suspended", lambda a: a.update(state="suspended")),
        ("requested", lambda a: a.update(state="requested")),
        ("expired", lambda a: a.update(at="2025-01-01", expires="2025-12-31")),
    ],
)
def test_only_an_approved_unexpired_subscription_receives_and_changes_apply_live(
    stack: Stack, tmp_path: Path, case: str, edit: Callable[[dict[str, Any]], object]
) -> None:
    worker_pid = status(stack.settings, worker_name(0)).pid
    with applied_topology(edited(tmp_path, lambda d: edit(tax(d)["approval"]))):
        stopped_after = wait_until_tax_receives(stack, expect=False)
        key, records = delivered_to(stack)
        assert of(records, TAX, key) == [], f"a {case} subscription received {key}"
        print(f"{case}: tax stopped receiving {stopped_after:.1f}s after the apply")
        # The query API refuses too, naming the state (it follows the applied topology).
        refused = look_up_until(stack, key, lambda r: r.status_code == 403)
        assert refused.json()["reason"] == case, refused.text
        # And Kafka closes the topic (the ACLs follow the state): tax cannot read it.
        assert first_read_error(stack, "tax", TAX, "tax-probe") in DENIED
    assert first_read_error(stack, "tax", TAX, "tax-probe") == "ok"
    resumed_after = wait_until_tax_receives(stack, expect=True)
    print(f"{case}: approved again, tax receiving {resumed_after:.1f}s after the apply")
    assert look_up_until(stack, key, lambda r: r.status_code == 200).json()["key"] == key
    assert status(stack.settings, worker_name(0)).pid == worker_pid, "the worker restarted"


DENIED = {"TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED"}


def test_a_consumer_that_was_reading_loses_the_topic_within_seconds_of_a_suspension(
    stack: Stack, tmp_path: Path
) -> None:
    consumer = Consumer(
        clients.config(
            stack.settings.bootstrap,
            principal="tax",
            **{
                "group.id": "tax-acl-probe",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
        )
    )
    consumer.subscribe([TAX])
    try:
        reading = poll_until(consumer, lambda name: name == "ok")
        assert reading == "ok"
        suspended = edited(tmp_path, lambda d: tax(d)["approval"].update(state="suspended"))
        with applied_topology(suspended) as applied_at:
            assert poll_until(consumer, lambda name: name in DENIED) in DENIED
            print(f"suspended: the reading consumer refused {time.monotonic() - applied_at:.1f}s")
    finally:
        consumer.close()


def poll_until(consumer: Consumer, done: Callable[[str], bool], timeout: float = 30.0) -> str:
    """Poll until an outcome (``ok``: a record or a partition's end; else the error's
    name) satisfies ``done``; that outcome."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        error = message.error()
        name = "ok" if error is None or error.code() == KafkaError._PARTITION_EOF else error.name()
        if done(name):
            return name
    raise AssertionError(f"no such outcome within {timeout:g}s")


def look_up_until(
    stack: Stack, key: str, done: Callable[[httpx.Response], bool], timeout: float = 20.0
) -> httpx.Response:
    """Tax's look-up of ``key`` once ``done`` holds for the answer."""
    deadline = time.monotonic() + timeout
    with api_client(stack, "tax") as api:
        while True:
            answer = api.get(f"/v1/enterprise/{key}")
            if done(answer):
                return answer
            assert time.monotonic() < deadline, f"{key}: {answer.status_code} {answer.text}"
            time.sleep(0.3)


def test_changed_fields_apply_live_and_the_change_is_recorded(stack: Stack, tmp_path: Path) -> None:
    def narrow(data: dict[str, Any]) -> None:
        tax(data)["fields"].remove("address")
        tax(data)["approval"]["by"] = "数据资源局（复核）"

    with applied_topology(edited(tmp_path, narrow)):
        deadline = time.monotonic() + 20
        while True:
            key, records = delivered_to(stack)
            [delivery] = [r.value for r in of(records, TAX, key)]
            assert delivery is not None
            if "address" not in delivery["after"] or time.monotonic() > deadline:
                break
        assert "address" not in delivery["after"]
        assert delivery["after"]["name"] is not None
        [latest, *_] = reversed(applied.history(stack.settings.bootstrap))
        paths = {c.path: c for c in latest.changes}
        fields = paths["subscriptions[tax.enterprise].fields"]
        assert "address" in fields.before and "address" not in fields.after
        assert fields.by == "数据资源局（复核）"
        assert paths["subscriptions[tax.enterprise].approval.by"].after == "数据资源局（复核）"
    result = govsync("topology", "history", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[-1]["sha256"] == applied.digest(
        TOPOLOGY.read_text(encoding="utf-8")
    )


INVALID = {
    "unknown field": lambda d: tax(d)["fields"].append("no_such_field"),
    "field above clearance": lambda d: tax(d)["fields"].append("legal_rep_id")
    or d["departments"]["tax"].update(clearance="internal"),
    "never_share field": lambda d: tax(d)["fields"].append("legal_rep_phone"),
    "duplicate subscription id": lambda d: d["subscriptions"].append(dict(tax(d))),
    "unknown department": lambda d: tax(d).update(department="customs"),
    "unknown entity": lambda d: tax(d).update(entity="vehicle"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_topology_is_refused_and_changes_nothing(
    stack: Stack, tmp_path: Path, case: str
) -> None:
    client = admin.admin_client(stack.settings.bootstrap)
    topics_before = admin.existing_topics(client)
    applied_before = applied.latest(stack.settings.bootstrap)
    result = govsync("topology", "apply", "--file", str(edited(tmp_path, INVALID[case])))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "subscriptions[" in result.stderr or "departments" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert admin.existing_topics(client) == topics_before
    after = applied.latest(stack.settings.bootstrap)
    assert after is not None and applied_before is not None
    assert after.sha256 == applied_before.sha256


RELOAD_GRACE_MS = 10_000


def masks_in_force_since_ms(stack: Stack, subscription_id: str) -> int:
    """When the subscription's current masks were applied (the first apply, or the last
    one that changed them), plus the seconds the worker may take to follow."""
    since = 0
    for record in applied.history(stack.settings.bootstrap):
        paths = {c.path for c in record.changes}
        if paths & {"<topology>", f"subscriptions[{subscription_id}].mask"}:
            since = int(record.applied_at.timestamp() * 1000)
    return since + RELOAD_GRACE_MS if since else 0


def test_no_masked_field_is_ever_delivered_in_clear(stack: Stack) -> None:
    """Every record of every delivery topic: a hashed field is a 64-hex HMAC, a partial one
    shows only its ends, a dropped one is absent, and no masked value equals any clear
    value that field ever had for that key."""
    topology = stack.topology
    # At least one fresh phone number for tax's partial mask to hide.
    company = new_company()
    insert(stack, company)
    start = stack.offsets(TAX)
    stack.sql(
        "district_services",
        "INSERT INTO enterprise_contact (credit_code, company_name, address, contact_phone)"
        " VALUES (%s, %s, %s, '13912345678')",
        (company.credit_code, company.ent_name, company.address),
    )
    stack.read_until(
        start,
        lambda rs: any(
            r.value and r.value["after"]["contact_phone"] for r in of(rs, TAX, company.credit_code)
        ),
        timeout=WAIT,
    )
    # And a person for social security's dropped name.
    person_topic = "deliver.social_security.person"
    person_start = stack.offsets(person_topic)
    resident_id = new_resident_id()
    stack.sql(
        "public_security",
        "INSERT INTO household_registration (id_no, full_name, birth_date, domicile)"
        " VALUES (%s, '测试掩码', '1970-01-01', '北京市海淀区学府路2号')",
        (resident_id,),
    )
    stack.read_until(person_start, lambda rs: bool(of(rs, person_topic, resident_id)), WAIT)
    clear: dict[tuple[str, str, str], set[str]] = {}
    for record in stack.read_all(*(changes_topic(e) for e in topology.entities)):
        for state in (record.value or {}).get("before"), (record.value or {}).get("after"):
            for name, value in (state or {}).items():
                if value is not None and record.key is not None:
                    clear.setdefault((record.value["entity"], record.key, name), set()).add(
                        str(value)
                    )
    checked: dict[str, int] = {}
    for subscription in (s for s in topology.subscriptions if s.mask):
        checked[subscription.id] = 0
        since_ms = masks_in_force_since_ms(stack, subscription.id)
        for record in stack.read_all(delivery_topic(subscription)):
            assert record.value is not None and record.key is not None
            if record.timestamp_ms < since_ms:
                continue  # delivered under an earlier topology, before these masks
            for state in (record.value["before"], record.value["after"]):
                for name, mask in subscription.mask.items():
                    if state is None:
                        continue
                    if mask.rule == "drop":
                        assert name not in state, (subscription.id, record.offset)
                        checked[subscription.id] += 1
                        continue
                    value = state[name]
                    if value is None:
                        continue
                    checked[subscription.id] += 1
                    known = clear.get((subscription.entity, record.key, name), set())
                    assert value not in known, f"{subscription.id} {name} in clear: {record}"
                    if mask.rule == "hash":
                        assert HEX64.fullmatch(value), (subscription.id, name, value)
                    else:
                        assert MASK_CHAR in value, (subscription.id, name, value)
    assert all(checked.values()), f"no masked values found to check: {checked}"
    print(f"masked values checked on the delivery topics, none in clear: {checked}")


def first_read_error(stack: Stack, principal: str, topic: str, group: str) -> str:
    """Read ``topic`` as ``principal`` in ``group``: ``ok`` if records (or its end) come
    back, else the error's name, e.g. TOPIC_AUTHORIZATION_FAILED."""
    consumer = Consumer(
        clients.config(
            stack.settings.bootstrap,
            principal=principal,
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
        )
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is None or error.code() == KafkaError._PARTITION_EOF:
                return "ok"
            return error.name()
        return "timeout"
    finally:
        consumer.close()


def write_error(stack: Stack, principal: str, topic: str) -> str:
    producer = Producer(clients.config(stack.settings.bootstrap, principal=principal))
    outcome: list[str] = []
    producer.produce(
        topic,
        key=b"forged",
        value=b"forged",
        on_delivery=lambda err, _: outcome.append("ok" if err is None else err.name()),
    )
    producer.flush(20)
    return outcome[0] if outcome else "timeout"


DENIED_READS = [
    ("tax", "deliver.social_security.enterprise", "tax-probe"),
    ("tax", "deliver.medical_insurance.person", "tax-probe"),
    ("tax", "changes.enterprise", "tax-probe"),
    ("tax", "master.enterprise", "tax-probe"),
    ("tax", "cdc.market_regulation.public.enterprise", "tax-probe"),
    ("tax", "govsync.dlq", "tax-probe"),
    ("social_security", "deliver.tax.enterprise", "social_security-probe"),
    ("medical_insurance", "deliver.social_security.person", "medical_insurance-probe"),
    ("market_regulation", "deliver.tax.enterprise", "market_regulation-probe"),
    ("worker", "deliver.tax.enterprise", "govsync-probe"),
    ("connect", "changes.enterprise", "govsync-connect-probe"),
]


@pytest.mark.parametrize(("principal", "topic", "group"), DENIED_READS)
def test_a_principal_cannot_read_what_is_not_its_own(
    stack: Stack, principal: str, topic: str, group: str
) -> None:
    assert first_read_error(stack, principal, topic, group) in DENIED


def test_a_department_reads_its_own_deliveries_only_in_its_own_groups(stack: Stack) -> None:
    assert first_read_error(stack, "tax", TAX, "tax-probe") == "ok"
    assert (
        first_read_error(stack, "tax", TAX, "social_security-sink") == "GROUP_AUTHORIZATION_FAILED"
    )


@pytest.mark.parametrize(
    ("principal", "topic"),
    [
        ("tax", "deliver.tax.enterprise"),  # no forging deliveries to oneself
        ("tax", "deliver.social_security.enterprise"),
        ("tax", "master.enterprise"),
        ("social_security", "cdc.market_regulation.public.enterprise"),
        ("worker", "govsync.audit"),  # the trail is the ledger's alone
        ("worker", "govsync.trace"),
        ("worker", "govsync.queries"),
        ("api", "govsync.audit"),
    ],
)
def test_a_principal_cannot_write_what_is_not_its_output(
    stack: Stack, principal: str, topic: str
) -> None:
    assert write_error(stack, principal, topic) == "TOPIC_AUTHORIZATION_FAILED"


def test_without_the_right_password_nothing_connects(stack: Stack) -> None:
    settings = stack.settings
    wrong = {
        **clients.config(settings.bootstrap, principal="tax"),
        "sasl.password": "not-the-password",
        "log_level": 0,
    }
    errors: list[str] = []
    admin_client = AdminClient({**wrong, "error_cb": lambda e: errors.append(e.name())})
    with pytest.raises(KafkaException):
        admin_client.list_topics(timeout=5)
    admin_client.poll(2)  # error callbacks are served here
    assert "_AUTHENTICATION" in errors


def test_connects_rest_api_requires_a_login(stack: Stack) -> None:
    url = f"{stack.settings.connect_url}/connectors"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, auth=("admin", "not-the-password"), timeout=10).status_code == 401
    with debezium.rest(stack.settings, timeout=10) as connect:
        assert connect.get("/connectors").status_code == 200


def test_credentials_are_private_files_and_never_printed(stack: Stack) -> None:
    secrets = stack.settings.path("secrets")
    files = sorted(secrets.iterdir())
    assert any(p.name == "kafka-tax.password" for p in files)
    for path in [*files, *stack.settings.path().glob("client-*.properties")]:
        assert path.stat().st_mode & 0o777 == 0o600, path
    passwords = [p.read_text().strip() for p in files if p.name.endswith(".password")]
    assert any(p.name == "registry-tax.password" for p in files)
    status = govsync("status", "--json")
    logs = "".join(p.read_text(errors="replace") for p in stack.settings.path("logs").iterdir())
    for secret in passwords:
        assert secret not in status.stdout + status.stderr
        assert secret not in logs
