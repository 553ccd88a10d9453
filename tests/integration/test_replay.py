"""Backfilling a new subscription on the real stack: a new department subscribes to a
topology holding 10,000 enterprises, `govsync replay snapshot` fills it while changes keep
flowing, and its topic ends with exactly the current state, every later change once, and
nothing for anyone else."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from streams.config.settings import REPO_ROOT
from streams.contract import headers
from streams.contract.topics import delivery_topic, master_topic
from streams.kafka import topic_reader
from streams.trail import audit
from streams.transform.masking import partial
from tests.integration.companies import (
    GOVSYNC,
    STATUS,
    TAX,
    deliver,
    govsync,
    insert,
    insert_many,
    new_company,
    wait_for,
)
from tests.integration.conftest import Stack
from tests.integration.topologies import edited

ENTITIES = 10_000
NEW = "civil_affairs.enterprise"
TOPIC = "deliver.civil_affairs.enterprise"
FIELDS = ["uscc", "name", "status", "registered_capital"]
KEEP = 2  # civil affairs sees company names partially


def with_civil_affairs(tmp_path: Path) -> Path:
    return edited(tmp_path, add_civil_affairs)


def add_civil_affairs(data: dict[str, Any]) -> None:
    data["departments"]["civil_affairs"] = {"name": "民政局", "clearance": "internal"}
    data["subscriptions"].append(
        {
            "id": NEW,
            "department": "civil_affairs",
            "entity": "enterprise",
            "fields": FIELDS,
            "mask": {"name": {"rule": "partial", "keep": KEEP}},
            "approval": {
                "state": "approved",
                "by": "数据资源局",
                "at": "2026-11-01",
                "purpose": "社会组织与企业信息核验",
                "legal_basis": "《社会组织登记管理条例》",
                "expires": "2027-12-31",
            },
            "sla": {"deliver_within": "5s", "receipt_within": "4h"},
        }
    )


def top_up(stack: Stack) -> None:
    """At least ENTITIES enterprises in master, captured and routed (some rows at market
    regulation are invalid on purpose, held on the dead-letter queue: a margin covers them)."""
    have = stack.sql("market_regulation", "SELECT count(*) FROM enterprise")[0][0]
    missing = [new_company() for _ in range(max(0, ENTITIES + 100 - have))]
    insert_many(stack, missing)
    wait_for(lambda: route_caught_up(stack), "the route stage to catch up", timeout=300)


def route_caught_up(stack: Stack) -> bool:
    report = json.loads(govsync("lag", "--json").stdout)
    return all(g["lag"] == 0 for g in report["pipeline"] if not g["name"].startswith("ledger"))


def master_state(stack: Stack) -> dict[str, dict[str, Any]]:
    """The current canonical state of every enterprise (compacted: the last record wins)."""
    state: dict[str, dict[str, Any]] = {}
    for record in stack.read_all(master_topic("enterprise")):
        if record.value is None:
            state.pop(record.key or "", None)
        else:
            state[record.key or ""] = record.value
    return state


def serves_new_subscription(stack: Stack) -> bool:
    """Whether a company registered now reaches the new subscription: one committed before
    the worker took the applied topology was routed without it, so each try is a new one."""
    try:
        deliver(stack, [new_company()], topic=TOPIC, timeout=5)
    except AssertionError:
        return False
    return True


def keep_changing(
    stack: Stack, codes: list[str], stop: threading.Event, made: list[tuple[str, str]]
) -> None:
    """Status changes on random enterprises of ``codes``, a few a second, until ``stop``."""
    rng = random.Random(7)
    with psycopg.connect(stack.settings.pg_conninfo("market_regulation"), autocommit=True) as conn:
        while not stop.is_set():
            uscc, code = rng.choice(codes), rng.choice("123")
            conn.execute(
                "UPDATE enterprise SET reg_status = %s, updated_at = now()"
                " WHERE credit_code = %s AND reg_status <> %s",
                (code, uscc, code),
            )
            made.append((uscc, STATUS[code]))
            stop.wait(0.05)


def test_a_new_subscription_is_backfilled_with_the_current_state_then_every_change_once(
    stack: Stack, tmp_path: Path
) -> None:
    top_up(stack)
    others = [delivery_topic(s) for s in stack.topology.subscriptions]
    before_others = stack.offsets(*others)
    stop, made = threading.Event(), []
    try:
        applied = govsync(
            "topology", "apply", "--as-authority", "--file", str(with_civil_affairs(tmp_path))
        )
        assert applied.returncode == 0, applied.stderr
        wait_for(lambda: serves_new_subscription(stack), "the worker to serve the new subscription")
        # Enterprises in master only: market regulation also holds companies with invalid
        # credit codes (on the dead-letter queue on purpose), which no subscription gets.
        codes = sorted(master_state(stack))
        changing = threading.Thread(target=keep_changing, args=(stack, codes, stop, made))
        changing.start()
        time.sleep(1)  # changes in flight before, during and after the request
        started = time.monotonic()
        result = govsync("replay", "snapshot", "--subscription", NEW, "--json")
        backfill_s = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        done = json.loads(result.stdout)
        time.sleep(2)
        stop.set()
        changing.join()
        wait_for(lambda: route_caught_up(stack), "the route stage to catch up", timeout=120)

        records = stack.read_all(TOPIC)
        expected = {
            key: {f: value.get(f) for f in FIELDS} for key, value in master_state(stack).items()
        }
        for state in expected.values():
            state["name"] = partial(state["name"], KEEP) if state["name"] else None
        assert len(expected) >= ENTITIES

        final: dict[str, dict[str, Any] | None] = {}
        for record in records:
            final[record.key or ""] = record.value["after"] if record.value else None
        final = {k: v for k, v in final.items() if v is not None}
        assert final == expected  # exactly the current state, masked as subscribed

        replayed = [r for r in records if r.headers.get(headers.REPLAY) == done["replay_id"]]
        assert len(replayed) == done["records"] >= ENTITIES - 50
        assert {r.value["kind"] for r in replayed} == {"snapshot"}
        counts = Counter(r.value["event_id"] for r in records)
        assert [e for e, n in counts.items() if n > 1] == []  # every change once
        assert made, "no changes were made during the backfill"
        # Per key, the last word is the latest change, never an older snapshot.
        for uscc, _ in made:
            last = [r for r in records if r.key == uscc][-1]
            assert last.value["after"]["status"] == expected[uscc]["status"]
        # Nobody else saw the snapshot.
        for record in topic_reader.read(
            stack.settings.bootstrap, stack.decode, before_others, timeout=120
        ):
            assert record.headers.get(headers.REPLAY) != done["replay_id"], record.topic
        print(
            f"\nbackfill of {done['records']} enterprises: {backfill_s:.1f}s end to end "
            f"(route {done['seconds']:.1f}s after the request); {len(made)} changes made "
            "during it"
        )
    finally:
        stop.set()
        restored = govsync("topology", "apply", "--as-authority")
        assert restored.returncode == 0, restored.stderr

    def audited() -> bool:
        chains = audit.read(stack.settings, key=NEW)
        return any(
            r.kind == "replay" and r.detail.get("replay_id") == done["replay_id"]
            for chain in chains.values()
            for _, r in chain
        )

    wait_for(audited, "the replay on the audit trail")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_a_time_range_is_re_sent_once_to_one_subscription_marked_and_resumable(
    stack: Stack,
) -> None:
    since = int(time.time() * 1000)
    originals = deliver(stack, [new_company() for _ in range(5)])
    until = max(r.timestamp_ms for r in originals) + 1
    time.sleep(1)
    insert(stack, new_company())  # after the range: not re-sent
    window = ["--subscription", "tax.enterprise", "--from", iso(since), "--to", iso(until)]

    dry = json.loads(govsync("replay", "range", *window, "--dry-run", "--json").stdout)
    assert dry["dry_run"] and dry["replayed"] == 0 and dry["in_range"] == len(originals)
    assert dry["skipped_earlier_approval"] == 0

    others = [delivery_topic(s) for s in stack.topology.subscriptions]
    before = stack.offsets(*others)
    slow = subprocess.Popen(
        [str(GOVSYNC), "replay", "range", *window, "--rate", "1", "--json"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    # Interrupted once it has re-sent something (its start-up alone can take seconds).
    stack.read_until(
        before, lambda records: any(r.headers.get("replay") for r in records), timeout=120
    )
    slow.send_signal(signal.SIGINT)
    interrupted = json.loads(slow.communicate(timeout=60)[0])
    assert slow.returncode == 1 and not interrupted["done"]
    assert 1 <= interrupted["replayed"] < len(originals)
    replay_id = interrupted["request"]["replay_id"]

    resumed = json.loads(govsync("replay", "range", "--resume", replay_id, "--json").stdout)
    assert resumed["done"] and resumed["replayed"] == len(originals)

    marker = ("replay", replay_id)
    again = [
        r
        for r in topic_reader.read(stack.settings.bootstrap, stack.decode, before, timeout=60)
        if r.headers.get(marker[0]) == replay_id
    ]
    assert {r.topic for r in again} == {TAX}  # nobody else
    assert sorted(r.value["event_id"] for r in again) == sorted(
        r.value["event_id"] for r in originals
    )  # each once, as delivered
    by_event = {r.value["event_id"]: r for r in originals}
    for record in again:
        assert record.value == by_event[record.value["event_id"]].value
        assert record.key == by_event[record.value["event_id"]].key

    def audited() -> bool:
        chains = audit.read(stack.settings, key="tax.enterprise")
        return any(
            r.kind == "replay"
            and r.detail.get("replay_id") == replay_id
            and r.detail.get("what") == "range"
            for chain in chains.values()
            for _, r in chain
        )

    wait_for(audited, "the range replay on the audit trail")
