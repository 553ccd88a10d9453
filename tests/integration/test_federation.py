"""Federation on one machine: the suite's stack is the city node; a province node runs
beside it with its own Kafka, registry, PostgreSQL, worker and state directory
(deploy/federation/province.yaml), and MirrorMaker 2 copies what the city delivers to the
province's department ``province`` into the province.

The city's authority approves the province's request; companies registered and
deregistered in the city reach the province's market supervision bureau, each change once,
even though the mirror is killed with SIGKILL mid-stream (a re-mirrored copy is dropped by
the province's dedup by event_id). Both trails record the hop: the city audits a delivery
to ``province``, the province audits what it received, and its trace shows the city's
capture and sending before its own hops.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from streams.config.settings import REPO_ROOT
from tests.integration.companies import STATUS, govsync, insert_many, new_company, update
from tests.integration.conftest import Stack
from tests.integration.nodes import Node, until

pytestmark = pytest.mark.stack

NODE = "province"  # the city's department for the province node
SUBSCRIPTION = f"{NODE}.enterprise"
CITY_TOPIC = f"deliver.{SUBSCRIPTION}"
MIRRORED = f"city.{CITY_TOPIC}"
PROVINCIAL = "deliver.provincial_market_supervision.enterprise"
AUTHORITY = "data_resource_bureau"
COMPANIES = 40
UPDATES = 5  # per company, around the kill
TIMEOUT = 240.0
DEREGISTERED = next(code for code, symbol in STATUS.items() if symbol == "deregistered")

# Other ports than the city's and test_tls's scratch broker, and below Linux's ephemeral
# range (32768-60999): an outgoing connection may hold one there.
PROVINCE_TOPOLOGY = REPO_ROOT / "deploy" / "federation" / "province.yaml"
PROVINCE_ENV = {
    "GOVSYNC_PG_PORT": "24432",
    "GOVSYNC_MARIADB_PORT": "24306",
    "GOVSYNC_KAFKA_PORT": "24092",
    "GOVSYNC_CONTROLLER_PORT": "24093",
    "GOVSYNC_CONNECT_PORT": "24083",
    "GOVSYNC_REGISTRY_PORT": "24080",
    "GOVSYNC_WORKER_PORT": "24066",
    "GOVSYNC_MONITOR_PORT": "24070",
    "GOVSYNC_API_PORT": "24081",
    "GOVSYNC_KAFKA_HEAP": "384m",
    "GOVSYNC_CONNECT_HEAP": "384m",
    "GOVSYNC_REGISTRY_HEAP": "384m",
}

UP = """
from govsync.stack import embedded
from govsync.stack.background import start_worker
from streams.config.settings import Settings
from streams.model.topology import load_topology

settings = Settings.from_env()
embedded.up(settings)
embedded.apply_topology(
    load_topology(settings.topology), settings, settings.topology.read_text(), as_authority=True
)
start_worker(settings)
"""

KILL = """
from govsync.stack import supervision
from streams.config.settings import Settings
print(supervision.kill(Settings.from_env(), "mirror"))
"""


@pytest.fixture(scope="module")
def province(stack: Stack) -> Iterator[Node]:
    """The province node, up with its worker and MirrorMaker; stopped afterwards. Its
    state lives inside the city's, which PostgreSQL's OS user can reach."""
    state = stack.settings.path("nodes", "province")
    if state.exists():  # an earlier run's: started afresh
        Node({**os.environ, **PROVINCE_ENV, "GOVSYNC_STATE_DIR": str(state)}).govsync("down")
        shutil.rmtree(state)
    (state / "secrets").mkdir(parents=True, mode=0o700)
    (state / "dist").symlink_to(stack.settings.dist_dir)
    # The city's operator hands the province the logins it issued to department province.
    city = stack.settings.path("secrets")
    for service, issued in (
        ("kafka", f"kafka-{NODE}.password"),
        ("registry", f"registry-{NODE}.password"),
    ):
        shutil.copyfile(city / issued, state / "secrets" / f"peer-city-{service}.password")
    # The province's topology, pointed at wherever the suite's city stack listens.
    topology = state / "province.yaml"
    topology.write_text(
        PROVINCE_TOPOLOGY.read_text(encoding="utf-8")
        .replace("bootstrap: 127.0.0.1:19092", f"bootstrap: {stack.settings.bootstrap}")
        .replace(
            "registry: http://127.0.0.1:18080", f"registry: {stack.settings.registry_base_url}"
        ),
        encoding="utf-8",
    )
    env = {
        **os.environ,
        **PROVINCE_ENV,
        "GOVSYNC_STATE_DIR": str(state),
        "GOVSYNC_TOPOLOGY": str(topology),
    }
    node = Node(env)
    try:
        node.run(UP, timeout=900)
        yield node
    finally:
        stopped = node.govsync("down")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture(scope="module")
def approved(stack: Stack) -> Iterator[None]:
    """The city's authority approves the province's request; revoked afterwards, so the
    rest of the suite runs as the file says."""
    if _state()["state"] in ("approved", "suspended"):  # left by an earlier run
        assert _decide("revoke", "--reason", "测试前复位").returncode == 0
    asked = govsync(
        "subscription",
        "request",
        SUBSCRIPTION,
        "--as",
        NODE,
        "--purpose",
        "汇聚全省法人基础信息库",
        "--legal-basis",
        "《政务信息资源共享管理暂行办法》第十条",
        "--until",
        "2027-12-31",
        "--json",
    )
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert _decide("approve").returncode == 0
    until(lambda: _state()["active"], "the approval in force", TIMEOUT)
    try:
        yield
    finally:
        assert _decide("revoke", "--reason", "测试结束").returncode == 0


def _state() -> dict[str, Any]:
    listed = govsync("subscription", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return next(s for s in json.loads(listed.stdout) if s["subscription"] == SUBSCRIPTION)


def _decide(action: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return govsync("subscription", action, SUBSCRIPTION, "--as", AUTHORITY, "--json", *extra)


def _event_ids(rows: list[dict[str, Any]], keys: set[str]) -> list[str]:
    return [row["headers"]["event_id"] for row in rows if row["key"] in keys]


def test_city_changes_reach_the_province_once_through_a_killed_mirror(
    stack: Stack, province: Node, approved: None
) -> None:
    companies = [new_company() for _ in range(COMPANIES)]
    keys = {c.credit_code for c in companies}
    insert_many(stack, companies)
    for round_ in range(UPDATES):
        for company in companies:
            update(stack, company.credit_code, "reg_capital = reg_capital + %s", (round_ + 1,))
        if round_ == 0:
            # Mid-stream: once the mirror has copied some, while the rest still flow.
            until(
                lambda: len(province.records(MIRRORED, decode=False)) >= COMPANIES,
                "the mirror's first copies",
                TIMEOUT,
            )
            killed = int(province.run(KILL).strip())
            assert killed > 0
    gone = companies[0].credit_code
    update(stack, gone, "reg_status = %s", (DEREGISTERED,))
    expected = COMPANIES * (1 + UPDATES) + 1

    # Everything the city delivered to the province node...
    city_rows: list[dict[str, Any]] = []

    def city_done() -> bool:
        city_rows[:] = stack_rows(stack, keys)
        return len(city_rows) >= expected

    until(city_done, f"{expected} deliveries to {NODE} in the city", TIMEOUT)
    sent = _event_ids(city_rows, keys)
    assert len(sent) == len(set(sent)) == expected

    # ...reaches the provincial subscriber exactly once, in the city's order per company.
    rows: list[dict[str, Any]] = []

    def province_done() -> bool:
        rows[:] = [r for r in province.records(PROVINCIAL) if r["key"] in keys]
        return len({r["headers"]["event_id"] for r in rows}) >= expected

    until(province_done, f"{expected} provincial deliveries", TIMEOUT)
    received = _event_ids(rows, keys)
    duplicated = [e for e, n in Counter(received).items() if n > 1]
    assert not duplicated, f"{len(duplicated)} changes delivered twice in the province"
    assert set(received) == set(sent)
    for key in keys:
        city_order = [r["headers"]["event_id"] for r in city_rows if r["key"] == key]
        province_order = [r["headers"]["event_id"] for r in rows if r["key"] == key]
        assert province_order == city_order, key
    # The headers crossed: one trace id and one commit time on both nodes.
    city_headers = {r["headers"]["event_id"]: r["headers"] for r in city_rows}
    for row in rows:
        city = city_headers[row["headers"]["event_id"]]
        assert row["headers"]["source_ts"] == city["source_ts"]
        assert row["headers"]["traceparent"].split("-")[1] == city["traceparent"].split("-")[1]
    last = next(r for r in reversed(rows) if r["key"] == gone)
    assert last["value"]["kind"] == "deregistered"
    assert last["value"]["after"]["status"] == "deregistered"
    # The province's subscription gets only its fields: no legal representative.
    assert "legal_rep_name" not in last["value"]["after"]

    # The mirror may have copied some records twice after the kill; never fewer.
    mirrored = _event_ids(province.records(MIRRORED, decode=False), keys)
    assert set(mirrored) == set(sent)
    print(
        f"federation: {expected} changes sent, {len(mirrored)} mirrored records "
        f"({len(mirrored) - len(set(mirrored))} copies), {len(received)} delivered once each"
    )

    # The province's trace shows the city's hops, then its own.
    trace = _trace(province, gone)
    stages = [(step["stage"], step.get("department")) for step in trace["steps"]]
    assert stages[:4] == [
        ("committed", None),
        ("captured", None),
        ("sent", "city"),
        ("normalized", None),
    ], stages
    assert ("delivered", "provincial_market_supervision") in stages
    captured = next(s for s in trace["steps"] if s["stage"] == "captured")
    assert captured["position"].startswith("city:cdc.market_regulation.public.enterprise")
    assert trace["event_id"] == last["headers"]["event_id"]

    # Each node audits its side: the city a delivery to the province, the province receipt.
    city_audit = govsync("audit", "who-received", gone, "--json")
    assert city_audit.returncode == 0, city_audit.stderr
    assert NODE in {entry["department"] for entry in json.loads(city_audit.stdout)}
    received_audit = [
        row["value"]
        for row in province.records("govsync.audit")
        if row["value"]["kind"] == "received" and row["value"]["entity_key"] == gone
    ]
    assert received_audit and {r["actor"] for r in received_audit} == {"city"}


def stack_rows(stack: Stack, keys: set[str]) -> list[dict[str, Any]]:
    return [
        {"key": r.key, "headers": r.headers} for r in stack.read_all(CITY_TOPIC) if r.key in keys
    ]


def _trace(province: Node, key: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def answered() -> bool:
        result = province.govsync("trace", key, "--json")
        if result.returncode != 0:
            return False
        traces = json.loads(result.stdout)
        found[:] = traces if isinstance(traces, list) else [traces]
        newest = found[0] if found else None
        return newest is not None and any(s["stage"] == "delivered" for s in newest["steps"])

    until(answered, f"the province's trace of {key}", timeout=120)
    return found[0]
