"""Schema registry access on the real Apicurio: every request authenticates, departments and
the worker may only read, and only admin (apply) and Connect (Debezium) may register."""

from __future__ import annotations

import json
import subprocess
from functools import partial
from pathlib import Path

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryError

from connectors.sources import debezium
from govsync.stack import registry
from govsync.stack.supervision import status
from streams.config.settings import REPO_ROOT
from streams.contract.topics import delivery_topic
from streams.kafka import credentials
from streams.kafka.serde import registry_client, value_subject
from streams.kafka.topic_reader import Record
from tests.integration.companies import (
    GOVSYNC,
    TAX,
    WAIT,
    govsync,
    insert,
    new_company,
    wait_for,
)
from tests.integration.conftest import Stack
from tests.integration.topologies import edited

PROBE = json.dumps(
    {"type": "record", "name": "Probe", "fields": [{"name": "forged", "type": "string"}]}
)
READERS = ["tax", "social_security", "medical_insurance", "market_regulation", credentials.WORKER]


def delivered(key: str, records: list[Record]) -> bool:
    return any(r.key == key for r in records)


def status_of(error: SchemaRegistryError) -> int:
    return error.http_status_code


@pytest.mark.parametrize("principal", READERS)
def test_a_reader_reads_schemas_but_cannot_register_configure_or_delete(
    stack: Stack, principal: str
) -> None:
    client = registry_client(stack.settings, principal)
    own = value_subject(delivery_topic(stack.topology.subscriptions[0]))
    assert own in client.get_subjects()
    latest = client.get_latest_version(own)
    assert client.get_schema(latest.schema_id).schema_str  # what a deserializer needs
    assert client.lookup_schema(own, latest.schema).version == latest.version

    refused = {
        "register": lambda: client.register_schema(own, Schema(PROBE, "AVRO")),
        "register a new subject": lambda: client.register_schema(
            "probe-value", Schema(PROBE, "AVRO")
        ),
        "delete": lambda: client.delete_subject(own),
    }
    for what, attempt in refused.items():
        with pytest.raises(SchemaRegistryError) as denied:
            attempt()
        assert status_of(denied.value) == 403, what
    login = (principal, credentials.registry_password(stack.settings, principal))
    config = httpx.put(
        f"{stack.settings.registry_url}/config/{own}",
        json={"compatibility": "NONE"},
        auth=login,
        timeout=10,
    )
    assert config.status_code == 403
    assert client.get_latest_version(own).schema_id == latest.schema_id  # nothing changed


def test_without_a_login_or_with_a_wrong_password_nothing_is_answered(stack: Stack) -> None:
    url = f"{stack.settings.registry_url}/subjects"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, auth=("tax", "not-the-password"), timeout=10).status_code == 401
    native = stack.settings.registry_native_url
    assert httpx.get(f"{native}/search/artifacts", timeout=10).status_code == 401


def test_connect_registers_debeziums_schemas_and_admin_registers_govsyncs(stack: Stack) -> None:
    """The two writers: what Debezium captured has schemas, registered as connect."""
    subjects = registry_client(stack.settings, credentials.ADMIN).get_subjects()
    for source in stack.topology.sources:
        assert value_subject(source.cdc_topic) in subjects
    for subscription in stack.topology.subscriptions:
        assert value_subject(delivery_topic(subscription)) in subjects


def test_a_new_department_gets_a_read_only_login_and_capture_survives_the_restart(
    stack: Stack, tmp_path: Path
) -> None:
    """The registry's users are read at start-up, so apply restarts it for a new department,
    with capture paused meanwhile: a change committed then is captured once it resumes."""
    wider = edited(
        tmp_path,
        lambda data: data["departments"].update(
            civil_affairs={"name": "民政局", "clearance": "internal"}
        ),
    )
    registry_pid = status(stack.settings, registry.NAME).pid
    during = new_company()
    start = stack.offsets(TAX)
    try:
        applying = subprocess.Popen(
            [str(GOVSYNC), "topology", "apply", "--as-authority", "--file", str(wider), "--json"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: registry.version(stack.settings) is None, "the registry to stop")
        insert(stack, during)  # captured while the registry is down
        report = json.loads(applying.communicate(timeout=180)[0])
        assert applying.returncode == 0
        assert report["registry_users"] == "updated, registry restarted"
        assert status(stack.settings, registry.NAME).pid != registry_pid
        newcomer = registry_client(stack.settings, "civil_affairs")
        assert value_subject(TAX) in newcomer.get_subjects()
        with pytest.raises(SchemaRegistryError) as denied:
            newcomer.register_schema("probe-value", Schema(PROBE, "AVRO"))
        assert status_of(denied.value) == 403
        stack.read_until(start, partial(delivered, during.credit_code), timeout=WAIT)
        for name in debezium.render(stack.topology, stack.settings):
            assert debezium.is_running(stack.settings, name), name
    finally:
        restored = govsync("topology", "apply", "--as-authority", "--json")
        assert restored.returncode == 0, restored.stderr
    gone = httpx.get(
        f"{stack.settings.registry_url}/subjects",
        auth=("civil_affairs", credentials.registry_password(stack.settings, "civil_affairs")),
        timeout=10,
    )
    assert gone.status_code == 401  # a department removed from the topology loses its login
