"""A standby node takes over mid-stream: the suite's stack is the primary; a standby with
its own Kafka, registry, PostgreSQL and state directory follows it (`govsync standby
follow`: MirrorMaker 2 with every topic and the groups' offsets, the primary's schemas
with their ids, the primary's secrets copied by hand).

The primary's worker is killed with SIGKILL while companies change and is kept down;
capture goes on at the primary and is copied over. `govsync standby promote` drains the
copy (every topic to its end, the offsets translated once more) and starts the standby's
worker, which resumes from MirrorMaker's translated offsets, so it reads a few seconds
of input again. Each change reaches the standby's delivery topics exactly once
and in order, the audit trail holds each delivery once, and its chains verify across the
take-over.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from govsync.stack import supervision
from govsync.stack.background import start_worker, worker_name
from govsync.stack.seed import Enterprise
from streams.contract.topics import STAGES, stage_group
from tests.integration.companies import SOCIAL, TAX, insert_many, new_company, update
from tests.integration.conftest import Stack
from tests.integration.nodes import Node, until

pytestmark = pytest.mark.stack

COMPANIES = 30
UPDATES = 4  # per company; the primary's worker dies after the first round
TIMEOUT = 240.0
CAPTURE = "cdc.market_regulation.public.enterprise"
STAGE_GROUPS = [stage_group(stage) for stage in STAGES]
# Other ports than the suite's stack, the province node's and the scratch brokers', and
# below Linux's ephemeral range (32768-60999): an outgoing connection may hold one there.
STANDBY_ENV = {
    "GOVSYNC_PG_PORT": "22432",
    "GOVSYNC_MARIADB_PORT": "22306",
    "GOVSYNC_KAFKA_PORT": "22092",
    "GOVSYNC_CONTROLLER_PORT": "22093",
    "GOVSYNC_CONNECT_PORT": "22083",
    "GOVSYNC_REGISTRY_PORT": "22080",
    "GOVSYNC_WORKER_PORT": "22066",
    "GOVSYNC_MONITOR_PORT": "22070",
    "GOVSYNC_API_PORT": "22081",
    "GOVSYNC_KAFKA_HEAP": "384m",
    "GOVSYNC_REGISTRY_HEAP": "384m",
}


@pytest.fixture(scope="module")
def standby(stack: Stack) -> Iterator[Node]:
    """The standby, following the suite's stack; stopped afterwards. Its state lives
    inside the primary's, which PostgreSQL's OS user can reach."""
    state = stack.settings.path("nodes", "standby")
    env = {**os.environ, **STANDBY_ENV, "GOVSYNC_STATE_DIR": str(state)}
    node = Node(env)
    if state.exists():  # an earlier run's: started afresh
        node.govsync("down")
        shutil.rmtree(state)
    state.mkdir(parents=True)
    # The operators copy the primary's secrets: the same logins and keys after a take-over.
    shutil.copytree(stack.settings.path("secrets"), state / "secrets")
    (state / "dist").symlink_to(stack.settings.dist_dir)
    began = time.monotonic()
    try:
        followed = node.govsync(
            "standby",
            "follow",
            "--primary-bootstrap",
            stack.settings.bootstrap,
            "--primary-registry",
            stack.settings.registry_base_url,
            "--json",
            timeout=900,
        )
        assert followed.returncode == 0, followed.stdout + followed.stderr[-3000:]
        print(f"standby: following after {time.monotonic() - began:.1f}s")
        yield node
    finally:
        stopped = node.govsync("down")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def _renamed(company: Enterprise, round_: int) -> str:
    return f"{company.ent_name}（第{round_ + 1}次更名）"


def _status(node: Node) -> dict[str, Any]:
    found = node.govsync("standby", "status", "--json")
    assert found.returncode == 0, found.stdout + found.stderr
    return json.loads(found.stdout)


def test_the_standby_takes_over_with_each_change_delivered_and_audited_once(
    stack: Stack, standby: Node
) -> None:
    companies = [new_company() for _ in range(COMPANIES)]
    keys = {c.credit_code for c in companies}
    start = stack.offsets(CAPTURE)
    insert_many(stack, companies)
    worker = worker_name(0)
    try:
        for round_ in range(UPDATES):
            if round_ == 1:
                # Mid-stream: once the standby holds some of the primary's deliveries.
                until(
                    lambda: len(standby.records(TAX, False, keys)) >= COMPANIES,
                    "the first deliveries copied to the standby",
                    TIMEOUT,
                )
                supervision.kill(stack.settings, worker, hold=True)
            for company in companies:  # a field every enterprise subscription has
                update(stack, company.credit_code, "ent_name = %s", (_renamed(company, round_),))
        expected = COMPANIES * (1 + UPDATES)

        # Capture went on at the primary; the standby copies it, and the groups' offsets
        # as the primary's worker last committed them.
        stack.read_until(
            start,
            lambda rs: sum(
                ((r.value or {}).get("after") or {}).get("credit_code") in keys for r in rs
            )
            >= expected,
            timeout=TIMEOUT,
        )
        until(
            lambda: all(_status(standby)["groups"].get(g) for g in STAGE_GROUPS),
            "the stages' offsets translated on the standby",
            TIMEOUT,
        )

        # The take-over drains first: every record the primary committed is copied (the
        # audit trail too, whose copy trails the deliveries' while the standby copies the
        # suite's whole history), then the offsets are translated once more.
        promoting = time.monotonic()
        promoted = standby.govsync("standby", "promote", "--json", timeout=600)
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        role = json.loads(promoted.stdout)
        assert role["promoted_at"] and role["drained"] is True, role
        print(f"standby: promoted (drained) after {time.monotonic() - promoting:.1f}s")

        for topic in (TAX, SOCIAL):
            rows: list[dict[str, Any]] = []

            def arrived(topic: str = topic, rows: list[dict[str, Any]] = rows) -> bool:
                rows[:] = standby.records(topic, keys=keys)
                return len({r["headers"]["event_id"] for r in rows}) >= expected

            until(arrived, f"{expected} changes on the standby's {topic}", TIMEOUT)
            print(f"standby: {topic} complete {time.monotonic() - promoting:.1f}s after promote")
            event_ids = [r["headers"]["event_id"] for r in rows]
            twice = [e for e, n in Counter(event_ids).items() if n > 1]
            assert not twice, f"{len(twice)} changes delivered twice on {topic}"
            assert len(event_ids) == expected
            for company in companies:  # in the order committed
                names = [
                    r["value"]["after"]["name"] for r in rows if r["key"] == company.credit_code
                ]
                assert names == [
                    company.ent_name,
                    *(_renamed(company, n) for n in range(UPDATES)),
                ], company.credit_code

        # The trail: each delivery audited once, the chains whole across the take-over.
        def audited(department: str) -> Counter[str]:
            return Counter(
                r["value"]["event_id"]
                for r in standby.records("govsync.audit", keys=keys)
                if r["value"]["kind"] == "delivery" and r["value"]["department"] == department
            )

        for department in ("tax", "social_security"):
            until(
                lambda d=department: len(audited(d)) >= expected,
                f"the standby's audit of {department}'s deliveries",
                TIMEOUT,
            )
            counts = audited(department)
            assert len(counts) == expected
            assert set(counts.values()) == {1}, department
        verified = standby.govsync("audit", "verify", "--json", timeout=600)
        assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
    finally:
        start_worker(stack.settings)
