"""Availability with three Kafka nodes: one killed -9 mid-run and held down, under a paced
load, on a running stack started with ``GOVSYNC_KAFKA_BROKERS=3``.

The load is the fault tests' (tests/integration/load.py): numbered renames of brand-new
enterprises in market_regulation, ``--rate`` changes a second for ``--seconds``. At
``--kill-at`` of the run the node leading most partitions of the enterprise's changes and
delivery topics (or ``--node``) is killed -9 and held down (supervisord is told not to
restart it) for ``--outage`` seconds, then started again.

Reported: whether every committed change reached the cdc topic, changes.enterprise,
master.enterprise and each delivery topic of enterprise exactly once and in order per
company (by event_id header and the change's number, read_committed), the outage window,
how many deliveries were made during it and the longest gap between deliveries, and
commit -> delivery p50 / p99 (the ``source_ts`` header to the record's timestamp) of the
changes committed before, during and after the outage.

Usage: GOVSYNC_KAFKA_BROKERS=3 .venv/bin/python bench/availability.py [--rate 50]
       [--seconds 150] [--kill-at 40] [--outage 45] [--node kafka-2]
Prints one line per phase and one JSON line for bench/baselines/availability.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sustained import Latencies  # bench/sustained.py: a script's own directory is on the path

from streams.config.settings import REPO_ROOT, Settings

sys.path.insert(0, str(REPO_ROOT))  # the fault tests' load generator and checker

from govsync.stack import kafka, supervision
from streams.contract.topics import delivery_topic
from streams.kafka import admin, topic_reader
from streams.kafka.serde import ValueDeserializer, registry_client
from streams.model.topology import Topology, load_topology
from tests.integration import load
from tests.integration.companies import CDC_TOPIC, CHANGES, MASTER, SOURCE_ID
from tests.integration.conftest import Stack

PHASES = ("before", "during", "after")


def deliveries(topology: Topology) -> list[str]:
    """Every delivery topic of the enterprises the load renames."""
    entity = topology.source(SOURCE_ID).entity
    return [delivery_topic(s) for s in topology.active_subscriptions(entity, datetime.now(UTC))]


def busiest_node(settings: Settings, topics: list[str]) -> kafka.Node:
    """The node leading most partitions of ``topics``: the one whose loss moves most."""
    metadata = admin.admin_client(settings.bootstrap).list_topics(timeout=10).topics
    leaders = Counter(p.leader for t in topics for p in metadata[t].partitions.values())
    most = leaders.most_common(1)[0][0]
    return next(n for n in kafka.nodes(settings) if n.id == most)


def phase(commit_ms: int, down_ms: float, back_ms: float) -> str:
    if commit_ms < down_ms:
        return "before"
    return "during" if commit_ms < back_ms else "after"


def latencies(
    settings: Settings, start: topic_reader.Offsets, down_ms: float, back_ms: float
) -> tuple[dict[str, dict[str, Latencies]], dict[str, int], dict[str, float]]:
    """Per delivery topic: commit -> delivery by the phase the change was committed in,
    the records delivered while the node was down, and the longest gap between
    deliveries from the kill on (seconds)."""
    found = {t: {p: Latencies() for p in PHASES} for t, _ in start}
    during = dict.fromkeys(found, 0)
    stamps: dict[str, list[int]] = {t: [] for t in found}
    for message in topic_reader.messages(settings.bootstrap, start, timeout=600):
        source_ts = dict(message.headers() or []).get("source_ts")
        if not source_ts:
            continue
        topic, delivered_ms = message.topic(), message.timestamp()[1]
        committed_ms = int(source_ts.decode())
        found[topic][phase(committed_ms, down_ms, back_ms)].samples_ms.append(
            delivered_ms - committed_ms
        )
        during[topic] += down_ms <= delivered_ms < back_ms
        stamps[topic].append(delivered_ms)
    gaps = {}
    for topic, times in stamps.items():
        after = sorted(t for t in times if t >= down_ms)
        longest = max((b - a for a, b in zip([down_ms, *after], after, strict=False)), default=0)
        gaps[topic] = round(longest / 1000, 1)
    return found, during, gaps


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.from_env()
    if settings.kafka_brokers != 3:
        raise SystemExit("start the stack with GOVSYNC_KAFKA_BROKERS=3 (and run this with it)")
    topology = load_topology(settings.topology)
    stack = Stack(settings, topology, ValueDeserializer(registry_client(settings)))
    delivered_to = deliveries(topology)
    topics = [CDC_TOPIC, CHANGES, MASTER, *delivered_to]
    usccs = load.prepare(stack, args.companies)
    victim = (
        next(n for n in kafka.nodes(settings) if n.name == args.node)
        if args.node
        else busiest_node(settings, [CHANGES, *delivered_to])
    )
    start = stack.offsets(*topics)
    total = int(args.rate * args.seconds)
    run_id = f"availability-{uuid.uuid4().hex[:8]}"
    thread = load.start_load(stack, usccs, total, run_id, batch=10, rate=args.rate)
    thread.progress.wait_for(args.kill_at / args.seconds)
    committed_at_kill = thread.progress.committed
    down_at = time.time()
    supervision.kill(settings, victim.name, hold=True)
    print(f"killed {victim.name} (node {victim.id}) after {committed_at_kill} changes", flush=True)
    time.sleep(max(0.0, down_at + args.outage - time.time()))
    alive = sorted(kafka.registered(settings))
    back_at = time.time()
    kafka.start(settings)
    rejoined_s = time.time() - back_at
    print(f"{victim.name} started again; registered after {rejoined_s:.1f}s", flush=True)
    progress = thread.finish()
    report = load.check(stack, usccs, run_id, total, timeout=600, start=start, topics=topics)
    print(report, flush=True)
    measured, during, gaps = latencies(
        settings,
        {tp: o for tp, o in start.items() if tp[0] in delivered_to},
        down_at * 1000,
        back_at * 1000,
    )
    return {
        "rate": args.rate,
        "seconds": args.seconds,
        "committed": progress.committed,
        "companies": len(usccs),
        "outage": {
            "node": victim.name,
            "killed_after_s": round(down_at - (progress.started_at or down_at), 1),
            "held_down_s": round(back_at - down_at, 1),
            "alive_meanwhile": alive,
            "registered_again_after_s": round(rejoined_s, 1),
            "committed_before": committed_at_kill,
        },
        "complete": report.complete,
        "exactly_once_in_order": all(report[t].exactly_once_in_order for t in topics),
        "topics": {t: report[t].summary() for t in topics},
        "delivered_during_outage": during,
        "longest_delivery_gap_from_kill_s": gaps,
        "commit_to_delivery_ms": {
            t: {p: measured[t][p].summary() for p in PHASES} for t in delivered_to
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--kill-at", type=float, default=40.0, help="seconds into the load")
    parser.add_argument("--outage", type=float, default=45.0, help="seconds held down")
    parser.add_argument("--companies", type=int, default=100)
    parser.add_argument("--node", choices=kafka.PROGRAMS, help="default: the busiest")
    args = parser.parse_args()
    result = run(args)
    for topic, phases in result["commit_to_delivery_ms"].items():
        for name, summary in phases.items():
            print(f"commit -> {topic} ({name} the outage): {summary}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
