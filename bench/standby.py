"""A standby node taking over under load: how long it takes, and that nothing is lost or
repeated across the move. Runs against a running stack (the primary); the standby is
made beside it on other ports (`govsync standby follow`, docs/operating.md).

The load is the fault tests' (tests/integration/load.py): numbered renames of brand-new
enterprises, ``--rate`` changes a second for ``--seconds``. At ``--kill-at`` the
primary's worker is killed -9 and held down; capture goes on at the primary and is
copied over. Once the standby holds all of it, `govsync standby promote` drains the
copy (every topic to its end, the offsets translated once more) and starts the
standby's worker.

Reported: the time to follow (one-off), to promote, from promote to the standby's first
delivery and until every change of the run is delivered there; whether each change
reached master.enterprise and every delivery topic on the standby exactly once and in
order per company; delivery audit records held twice on the standby's trail (should be
0); the route's restore and the inputs the ledger found already chained (its metrics).

Usage: .venv/bin/python bench/standby.py [--rate 200] [--seconds 60] [--kill-at 30]
Prints one JSON line for bench/baselines/standby.json. The primary's worker is started
again at the end, and the standby stopped unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from streams.config.settings import REPO_ROOT, Settings

sys.path.insert(0, str(REPO_ROOT))  # the fault tests' load generator and checker

from govsync.stack import supervision
from govsync.stack.background import start_worker, worker_name
from streams.contract.topics import AUDIT_TOPIC, delivery_topic
from streams.kafka import topic_reader
from streams.kafka.serde import ValueDeserializer, registry_client
from streams.model.topology import load_topology
from tests.integration import load
from tests.integration.companies import CDC_TOPIC, MASTER, SOURCE_ID
from tests.integration.conftest import Stack
from tests.integration.nodes import Node

PORTS = {  # the standby's: other ports than the primary's and test_standby's
    "pg_port": 57432,
    "mariadb_port": 57306,
    "kafka_port": 57092,
    "controller_port": 57093,
    "connect_port": 57083,
    "registry_port": 57080,
    "worker_port": 57066,
    "monitor_port": 57070,
    "api_port": 57081,
}


class Standby:
    """The standby node: its Settings for reading it here, its environment for commands."""

    def __init__(self, primary: Settings, state: Path) -> None:
        self.settings = primary.model_copy(update={"state_dir": state, **PORTS})
        self.env = {
            **os.environ,
            "GOVSYNC_STATE_DIR": str(state),
            "GOVSYNC_KAFKA_HEAP": "512m",
            "GOVSYNC_REGISTRY_HEAP": "384m",
            **{f"GOVSYNC_{name.upper()}": str(port) for name, port in PORTS.items()},
        }

    def govsync(self, *args: str) -> dict[str, Any]:
        done = Node(self.env).govsync(*args, "--json", timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"govsync {' '.join(args)}: {done.stdout}{done.stderr[-2000:]}")
        return json.loads(done.stdout)

    def down(self) -> None:
        Node(self.env).govsync("down")


def first_delivery_after(settings: Settings, topics: list[str], after_ms: float) -> float | None:
    """The timestamp (ms) of the first record written to ``topics`` at or after ``after_ms``."""
    start = topic_reader.since(settings.bootstrap, topics, int(after_ms))
    stamps = [
        m.timestamp()[1] for m in topic_reader.messages(settings.bootstrap, start, timeout=60)
    ]
    return min(stamps, default=None)


def audited_twice(settings: Settings, decode: Any, usccs: set[str], start: Any) -> int:
    """Delivery audit records of these companies' changes held more than once."""
    counts: Counter[tuple[str, str]] = Counter()
    for message in topic_reader.messages(settings.bootstrap, start, timeout=120):
        if (message.key() or b"").decode() not in usccs:
            continue
        record = decode(AUDIT_TOPIC, message.value())
        if record and record["kind"] == "delivery":
            counts[(record["event_id"], record["department"])] += 1
    return sum(n - 1 for n in counts.values() if n > 1)


def taken_over(settings: Settings) -> dict[str, Any]:
    """What the standby's worker did on taking over: the route's restore (its log) and the
    inputs the ledger found already chained (its metrics)."""
    text = settings.path("logs", f"{worker_name(0)}.log").read_text(errors="replace")
    restored = re.search(r"route: restored: (\d+) records in ([\d.]+)s", text)
    metrics = httpx.get(f"http://{settings.host}:{settings.worker_port}/metrics", timeout=10)
    skipped = {
        match.group(1): int(float(match.group(2)))
        for match in re.finditer(
            r'^govsync_audit_repeats_skipped_total\{kind="(\w+)"\} (\S+)$',
            metrics.text,
            re.MULTILINE,
        )
    }
    return {
        "route_restored_records": int(restored.group(1)) if restored else None,
        "route_restored_s": float(restored.group(2)) if restored else None,
        "audit_repeats_skipped": skipped,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    primary = Settings.from_env()
    topology = load_topology(primary.topology)
    stack = Stack(primary, topology, ValueDeserializer(registry_client(primary)))
    state = primary.path("nodes", "standby-bench")
    node = Standby(primary, state)
    if state.exists():
        node.down()
        shutil.rmtree(state)
    state.mkdir(parents=True)
    shutil.copytree(primary.path("secrets"), state / "secrets")  # the operators' hand-over
    (state / "dist").symlink_to(primary.dist_dir)

    began = time.monotonic()
    node.govsync(
        "standby",
        "follow",
        "--primary-bootstrap",
        primary.bootstrap,
        "--primary-registry",
        primary.registry_base_url,
    )
    follow_s = time.monotonic() - began
    print(f"following after {follow_s:.1f}s", flush=True)

    entity = topology.source(SOURCE_ID).entity
    delivered_to = [
        delivery_topic(s) for s in topology.active_subscriptions(entity, datetime.now(UTC))
    ]
    topics = [MASTER, *delivered_to]
    usccs = load.prepare(stack, args.companies)
    here = Stack(node.settings, topology, ValueDeserializer(registry_client(node.settings)))
    standby_start = here.offsets(*topics, AUDIT_TOPIC)
    total = int(args.rate * args.seconds)
    run_id = f"standby-{uuid.uuid4().hex[:8]}"
    worker = worker_name(0)
    try:
        thread = load.start_load(stack, usccs, total, run_id, batch=10, rate=args.rate)
        thread.progress.wait_for(args.kill_at / args.seconds)
        committed_at_kill = thread.progress.committed
        supervision.kill(primary, worker, hold=True)
        killed = time.time()
        print(f"primary's worker killed after {committed_at_kill} changes", flush=True)
        progress = thread.finish()
        print(f"load done: {progress.committed} changes committed", flush=True)
        while node.govsync("standby", "status")["capture_behind"].get(CDC_TOPIC, 1):
            time.sleep(1)
        copied_s = time.time() - killed
        promoting = time.time()
        node.govsync("standby", "promote")
        promote_s = time.time() - promoting
        report = load.check(
            here, usccs, run_id, total, timeout=900, start=standby_start, topics=topics
        )
        print(report, flush=True)
        complete_s = report.checked_at - promoting
        first = first_delivery_after(node.settings, delivered_to, promoting * 1000)
    finally:
        start_worker(primary)
    twice = audited_twice(
        node.settings,
        here.decode,
        set(usccs),
        {tp: o for tp, o in standby_start.items() if tp[0] == AUDIT_TOPIC},
    )
    result = {
        "rate": args.rate,
        "seconds": args.seconds,
        "committed": progress.committed,
        "committed_when_killed": committed_at_kill,
        "companies": len(usccs),
        "follow_s": round(follow_s, 1),
        "capture_copied_after_kill_s": round(copied_s, 1),
        "promote_command_s": round(promote_s, 1),
        "first_standby_delivery_after_promote_s": (
            round(first / 1000 - promoting, 1) if first else None
        ),
        "all_delivered_after_promote_s": round(complete_s, 1),
        "complete": report.complete,
        "exactly_once_in_order": all(report[t].exactly_once_in_order for t in topics),
        "topics": {t: report[t].summary() for t in topics},
        "deliveries_audited_twice": twice,
        **taken_over(node.settings),
    }
    if not args.keep:
        node.down()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--kill-at", type=float, default=30.0, help="seconds into the load")
    parser.add_argument("--companies", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="leave the standby running")
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
