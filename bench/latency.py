"""Per-hop latency of the backbone on the running embedded stack.

Commits N single-row UPDATEs (one every ``--interval`` seconds, so each change travels
alone) to enterprises in the market_regulation database and reads every hop's record
timestamp back from Kafka:

    commit (Debezium source.ts_ms)
      -> cdc.market_regulation.public.enterprise   (Connect + Debezium)
      -> changes.enterprise                        (worker: normalize)
      -> deliver.<department>.enterprise           (worker: route)

Usage: .venv/bin/python bench/latency.py [--changes 50] [--interval 0.5]
Prints p50 / p95 / max per hop and end to end, and one JSON line for baselines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime

import psycopg

from streams.config.settings import Settings
from streams.contract.topics import changes_topic, delivery_topic
from streams.kafka import applied, topic_reader
from streams.kafka.serde import ValueDeserializer, registry_client


def percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()

    settings = Settings.from_env()
    topology = applied.in_force(settings).topology
    source = topology.source("market_regulation.enterprise")
    # Only the subscriptions these changes reach (person subscriptions never see them).
    deliveries = [
        delivery_topic(s) for s in topology.active_subscriptions(source.entity, datetime.now(UTC))
    ]
    topics = [source.cdc_topic, changes_topic("enterprise"), *deliveries]
    start = topic_reader.end_offsets(settings.bootstrap, topics)
    marker = f"bench-{int(time.time())}"

    with psycopg.connect(settings.pg_conninfo("market_regulation"), autocommit=True) as db:
        companies = [
            row[0]
            for row in db.execute(
                "SELECT credit_code FROM enterprise WHERE reg_status = '1'"
                " ORDER BY random() LIMIT %s",
                (args.changes,),
            )
        ]
        for n, uscc in enumerate(companies):
            db.execute(
                # Replace, not accumulate, the marker of earlier runs.
                "UPDATE enterprise SET ent_name = regexp_replace(ent_name, '·bench-.*$', '') || %s,"
                " updated_at = now() WHERE credit_code = %s",
                (f"·{marker}-{n}", uscc),
            )
            time.sleep(args.interval)

    decode = ValueDeserializer(registry_client(settings))
    wanted = set(companies)
    arrivals: dict[str, dict[str, int]] = {uscc: {} for uscc in companies}
    commit_ms: dict[str, int] = {}

    def complete(_: list[topic_reader.Record]) -> bool:
        return all(len(hops) == len(topics) for hops in arrivals.values())

    for record in topic_reader.read(settings.bootstrap, decode, start, until=complete, timeout=120):
        value = record.value or {}
        if record.topic == source.cdc_topic:
            after = value.get("after") or {}
            uscc = after.get("credit_code")
            if uscc in wanted and marker in (after.get("ent_name") or ""):
                commit_ms[uscc] = value["source"]["ts_ms"]
                arrivals[uscc][record.topic] = record.timestamp_ms
        elif record.key in wanted and marker in ((value.get("after") or {}).get("name") or ""):
            arrivals[record.key][record.topic] = record.timestamp_ms

    complete_rows = [u for u in companies if len(arrivals[u]) == len(topics) and u in commit_ms]
    hops = {
        "commit -> cdc (Debezium)": [arrivals[u][topics[0]] - commit_ms[u] for u in complete_rows],
        "cdc -> changes (normalize)": [
            arrivals[u][topics[1]] - arrivals[u][topics[0]] for u in complete_rows
        ],
    }
    for topic in deliveries:
        hops[f"changes -> {topic} (route)"] = [
            arrivals[u][topic] - arrivals[u][topics[1]] for u in complete_rows
        ]
        hops[f"commit -> {topic} (end to end)"] = [
            arrivals[u][topic] - commit_ms[u] for u in complete_rows
        ]

    print(f"{len(complete_rows)}/{len(companies)} changes seen on every hop")
    print(f"{'hop':<62} {'p50':>6} {'p95':>6} {'max':>6}  (ms)")
    summary = {}
    for name, values in hops.items():
        if not values:
            continue
        row = {
            "p50": int(statistics.median(values)),
            "p95": percentile(values, 0.95),
            "max": max(values),
        }
        summary[name] = row
        print(f"{name:<62} {row['p50']:>6} {row['p95']:>6} {row['max']:>6}")
    print(
        json.dumps({"changes": len(complete_rows), "interval_s": args.interval, "hops_ms": summary})
    )


if __name__ == "__main__":
    main()
