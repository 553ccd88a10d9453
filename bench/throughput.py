"""Throughput of the backbone on the running stack, side by side with what bounds it.

A burst of ``--changes`` changes by SQL (``UPDATE enterprise SET reg_capital =
reg_capital + 1`` over the table's rows, statement after statement until that many rows
changed). Once every topic has been quiet for a while, each hop's rate is the number of
records it got divided by the time from the first commit to its last record's timestamp:
Debezium's (the cdc topic), normalize's (changes), route's (master and every delivery
topic of an enterprise subscription), the sinks' (receipts) and the ledger's (trace).
A subscription whose fields the burst does not touch gets nothing; a change the pipeline
refuses (e.g. a company with an invalid credit code) is counted on the DLQ.

In the same run, the floor: a plain transactional consume -> produce loop over the
burst's own cdc records (raw bytes, batches of 1,000, one thread, into a scratch topic),
what one Python stage could move on this machine if it did no work. Then each worker stage
alone drains the burst's records from its inputs again (bench/drain.py: its own group,
outputs to a scratch topic, empty state), so a stage's rate is seen apart from the
others' and from the CPU the rest of the stack takes. Ratios to Debezium's rate and to
the floor hold on any machine; the absolute rates do not.

With ``--sustained RATE``, instead: RATE changes a second for ``--minutes`` (default 5),
commit -> delivery and commit -> receipt percentiles, the pipeline's lag every 30 s and
the worker's memory (bench/sustained.py).

Usage: .venv/bin/python bench/throughput.py [--changes 30000] [--quiet 10] [--no-stages]
       .venv/bin/python bench/throughput.py --sustained 1000 [--minutes 5]
Prints a table and one JSON line for bench/baselines/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime

import cpu
import psycopg
import sustained
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from drain import drain  # bench/drain.py: a script's own directory is on the path

from streams.config.settings import Settings
from streams.contract.topics import (
    DLQ_TOPIC,
    RECEIPTS_TOPIC,
    TRACE_TOPIC,
    changes_topic,
    delivery_topic,
    master_topic,
)
from streams.kafka import admin, applied, clients, topic_reader
from streams.worker.process import STAGES

SOURCE = "market_regulation.enterprise"
FLOOR_BATCH = 1000


def burst(settings: Settings, changes: int) -> float:
    """Commit ``changes`` row changes; the wall-clock time of the first commit (epoch s)."""
    first: float | None = None
    done = 0
    with psycopg.connect(settings.pg_conninfo("market_regulation"), autocommit=True) as db:
        rows = db.execute("SELECT count(*) FROM enterprise").fetchone()[0]
        if rows == 0:
            raise SystemExit("no enterprises in market_regulation: run `make demo` first")
        while done < changes:
            limit = min(rows, changes - done)
            started = time.time()
            db.execute(
                "UPDATE enterprise SET reg_capital = reg_capital + 1, updated_at = now()"
                " WHERE id IN (SELECT id FROM enterprise ORDER BY id LIMIT %s)",
                (limit,),
            )
            first = first if first is not None else started
            done += limit
    assert first is not None
    return first


def arrivals(settings: Settings, start: topic_reader.Offsets) -> dict[str, tuple[int, int]]:
    """Per topic: (records since ``start``, the newest record's timestamp in ms)."""
    found: dict[str, tuple[int, int]] = {t: (0, 0) for t, _ in start}
    for message in topic_reader.messages(settings.bootstrap, start, timeout=600):
        count, newest = found[message.topic()]
        found[message.topic()] = (count + 1, max(newest, message.timestamp()[1]))
    return found


def floor(settings: Settings, topic: str, start: topic_reader.Offsets) -> tuple[int, float]:
    """A transactional consume -> produce pass over ``topic`` from ``start`` to its end
    now: (records moved, seconds)."""
    run = uuid.uuid4().hex[:8]
    scratch = f"govsync.bench.floor-{run}"
    partitions = [p for t, p in start if t == topic]
    client = admin.admin_client(settings.bootstrap)  # kept: its futures die with it
    client.create_topics([NewTopic(scratch, len(partitions), 1)])[scratch].result()
    ends = topic_reader.end_offsets(settings.bootstrap, [topic])
    consumer = Consumer(
        clients.config(
            settings.bootstrap,
            **{
                "group.id": f"govsync-bench-floor-{run}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
    )
    producer = Producer(
        clients.config(
            settings.bootstrap, **{"transactional.id": f"govsync-bench-floor-{run}", "linger.ms": 5}
        )
    )
    producer.init_transactions(30)
    consumer.assign([TopicPartition(topic, p, start[(topic, p)]) for p in partitions])
    remaining = {p for p in partitions if start[(topic, p)] < ends[(topic, p)]}
    moved = 0
    began = time.monotonic()
    try:
        while remaining:
            batch = []
            for message in consumer.consume(FLOOR_BATCH, 1.0):
                if message.error() is None:
                    batch.append(message)
                else:
                    remaining.discard(message.partition())
            if not batch:
                continue
            producer.begin_transaction()
            offsets: dict[int, int] = {}
            for message in batch:
                producer.produce(scratch, message.value(), message.key(), message.partition())
                offsets[message.partition()] = message.offset() + 1
            producer.send_offsets_to_transaction(
                [TopicPartition(topic, p, o) for p, o in offsets.items()],
                consumer.consumer_group_metadata(),
                30,
            )
            producer.commit_transaction(30)
            moved += len(batch)
        return moved, time.monotonic() - began
    finally:
        consumer.close()
        client.delete_topics([scratch])[scratch].result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=30_000)
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds without a record")
    parser.add_argument(
        "--sustained",
        type=int,
        metavar="RATE",
        help="instead of a burst: RATE changes a second for --minutes (bench/sustained.py)",
    )
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument(
        "--no-stages", action="store_true", help="skip the stage-alone drains (burst only)"
    )
    args = parser.parse_args()

    settings = Settings.from_env()
    topology = applied.in_force(settings).topology
    source = topology.source(SOURCE)
    subscriptions = topology.active_subscriptions(source.entity, datetime.now(UTC))
    hops = {
        source.cdc_topic: "Debezium",
        changes_topic(source.entity): "normalize",
        DLQ_TOPIC: "refused",  # with changes, every captured change: nothing dropped
        master_topic(source.entity): "route",
        **{delivery_topic(s): "route" for s in subscriptions},
        RECEIPTS_TOPIC: "sinks",
        TRACE_TOPIC: "ledger",
    }
    if args.sustained:
        # Every hop with a source_ts header, so the latency is seen to build up stage by stage.
        measured = [t for t, by in hops.items() if by in ("normalize", "route")]
        meter = cpu.Meter(settings)
        report = sustained.run(settings, topology, measured, args.sustained, args.minutes * 60)
        changes = int(args.sustained * args.minutes * 60)
        report["cpu_us_per_change"] = cpu.per_change(meter.stop(), changes)
        for topic, summary in report["commit_to"].items():
            print(f"commit -> {topic}: {summary}")
        print(f"pipeline lag every {sustained.LAG_EVERY_S:.0f}s: {report['pipeline_lag']['total']}")
        print(f"worker RSS (KiB): {report['worker_rss_kib']}")
        print(f"CPU us per change: {report['cpu_us_per_change']}")
        print(json.dumps({"mode": "sustained", **report}, ensure_ascii=False))
        return
    topics = list(hops)
    inputs = [*topics, *(delivery_topic(s) for s in topology.subscriptions)]
    start = topic_reader.end_offsets(settings.bootstrap, list(dict.fromkeys(inputs)))
    meter = cpu.Meter(settings)
    first_commit = burst(settings, args.changes)
    committed_s = time.time() - first_commit
    sustained.until_quiet(settings, topics, args.quiet)
    cpu_us = cpu.per_change(meter.stop(), args.changes)
    found = arrivals(settings, {k: v for k, v in start.items() if k[0] in hops})
    moved, floor_s = floor(settings, source.cdc_topic, start)

    def rate(topic: str) -> tuple[int, float, float]:
        count, newest_ms = found[topic]
        seconds = max(newest_ms / 1000 - first_commit, 1e-3) if count else 0.0
        return count, round(seconds, 2), round(count / seconds, 1) if count else 0.0

    debezium = rate(source.cdc_topic)[2]
    floor_rate = round(moved / floor_s, 1) if floor_s else 0.0
    rows = {}
    print(f"{args.changes} changes committed in {committed_s:.1f}s; floor {floor_rate}/s")
    print(f"{'topic':<44} {'by':<10} {'records':>8} {'after s':>8} {'rate/s':>9} {'x cdc':>6}")
    for topic, by in hops.items():
        count, seconds, per_s = rate(topic)
        ratio = round(per_s / debezium, 2) if debezium else 0.0
        rows[topic] = {"by": by, "records": count, "seconds": seconds, "rate": per_s}
        rows[topic]["x_debezium"] = ratio
        print(f"{topic:<44} {by:<10} {count:>8} {seconds:>8} {per_s:>9} {ratio:>6}")
    bound = cpu.bound(cpu_us["total"])
    print(f"CPU per change (us): {cpu_us}")
    print(f"the cores allow {bound}/s at that cost; the slowest delivery topic ran at", end=" ")
    slowest = min(
        (r["rate"] for t, r in rows.items() if t.startswith("deliver.") and r["records"]),
        default=0.0,
    )
    print(f"{round(slowest / bound, 2)} x that")
    stages = {}
    for name in () if args.no_stages else STAGES:
        drained = drain(settings, topology, name, start)
        ratio = round(drained.rate / floor_rate, 2) if floor_rate else 0.0
        stages[name] = {
            "records": drained.records,
            "seconds": drained.seconds,
            "rate": drained.rate,
            "x_floor": ratio,
        }
        print(
            f"{name} alone: {drained.records} records in {drained.seconds}s, {drained.rate}/s"
            f" ({ratio} x floor)"
        )
    print(
        json.dumps(
            {
                "changes": args.changes,
                "committed_s": round(committed_s, 2),
                "debezium_rate": debezium,
                "floor": {"records": moved, "seconds": round(floor_s, 2), "rate": floor_rate},
                "hops": rows,
                "cpu_us_per_change": cpu_us,
                "cpu_bound_rate": bound,
                "stages": stages,
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
