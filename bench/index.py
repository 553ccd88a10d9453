"""The operations indexes (govsync/index) on a large history: rebuild time and the cost of
the questions they answer.

Why: `govsync trace`, `govsync audit who-received` and `govsync receipts overdue` answer from the
index;
its promise is that a question costs an index lookup however long the history is. Going
through SQL and Debezium, 10 M changes would take days, so the history is generated
straight into two scratch topics (``govsync.bench.<run>.trace``, ``govsync.bench.<run>.audit``,
6 partitions), exactly as the ledger writes ``govsync.trace`` and ``govsync.audit``: per
change a ``captured`` and a ``normalized`` hop, then one ``delivered`` hop per subscription
of the entity the change reaches (the first always, each other one with probability
0.4; the topology in force has two per entity), each followed by its ``receipt`` hop (one
delivery in 1,000 left without, so receipts are awaited), and an audit link per delivery
and per receipt, sealed by the ledger's own :class:`Chain` (checkpoints included, so the
scratch chains verify). Values are Avro framed with the schema ids registered for the live
trail topics, so the indexer decodes them as it does the real ones. Encoding is the cost,
so two processes generate, each writing its own partitions (entity ``k`` is on partition
``k mod 6`` of every topic, and an audit chain has one writer).

Then, on a scratch index database ``govsync_bench_<run>``:

- the rebuild from empty (``govsync.index.rebuild.rebuild``): seconds and records a second
  (target: 10 M records within 10 minutes);
- over a reader connection, 200 traces by event_id, 200 by entity key, 200 who-received
  by key (``queries.audit_entries`` + ``audit.who_received``) and 20 receipts-overdue
  (``queries.unanswered``): p50 / p99 / max ms (targets: 200 ms, 200 ms, 200 ms, 1 s).

The scratch topics and database are removed at the end, also after a failure, unless
``--keep``.

Usage: .venv/bin/python bench/index.py [--changes 10000000] [--entities 1000000] [--keep]
Prints a table (stderr) and one JSON line (stdout) for bench/baselines/index.json.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import NewTopic
from fastavro import parse_schema, schemaless_writer
from generate import resident_id, uscc
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from govsync.index import queries, rebuild, store, witness
from streams.config.settings import Settings
from streams.contract.schemas import audit_schema, lineage_schema
from streams.contract.topics import AUDIT_TOPIC, RECEIPTS_TOPIC, TRACE_TOPIC, changes_topic
from streams.kafka import admin, applied, clients, serde, topic_reader
from streams.model.topology import Topology
from streams.stages.ledger import WORKER_ACTOR, approval_of
from streams.trail import audit
from streams.transform.normalize import EVENT_ID_NAMESPACE

PARTITIONS = 6
WORKERS = 2
HISTORY_DAYS = 30
PERSON_EVERY = 10  # entity k is a person when k % 10 == 9: one in ten, the rest companies
OTHER_SUBSCRIPTION_P = 0.4  # a change reaches the entity's first subscription, others at this
UNANSWERED_P = 0.001  # deliveries left without a receipt
SAMPLE = 200
OVERDUE_RUNS = 20
RESERVOIR = 2_000  # (event_id, key) pairs each generator keeps for the queries
PROGRESS_EVERY = 5_000  # changes between a generator's progress reports
TARGETS_MS = {"trace_by_event": 200, "trace_by_key": 200, "who_received": 200, "overdue": 1000}
REBUILD_TARGET = {"records": 10_000_000, "seconds": 600}

CHANGE_KINDS = (("updated", 0.9), ("registered", 0.05), ("deregistered", 0.05))

err = Console(stderr=True)


# --- what is generated ------------------------------------------------------------------


@dataclass(frozen=True)
class Sub:
    """A subscription as the generator needs it (plain data: it crosses processes)."""

    id: str
    department: str
    topic: str
    received: tuple[tuple[str, ...], ...]  # sorted field lists a delivery carries
    masks: dict[str, str]
    approval: dict[str, str]


@dataclass(frozen=True)
class Shape:
    """Per entity: its cdc topic, its changes topic, its subscriptions."""

    cdc_topic: str
    changes_topic: str
    subscriptions: tuple[Sub, ...]


def shapes(topology: Topology) -> dict[str, Shape]:
    found: dict[str, Shape] = {}
    for entity in ("enterprise", "person"):
        source = next(s for s in topology.sources if s.entity == entity)
        subscriptions = []
        for s in topology.subscriptions:
            if s.entity != entity:
                continue
            every = tuple(sorted(s.fields))
            subscriptions.append(
                Sub(
                    id=s.id,
                    department=s.department,
                    topic=f"deliver.{s.department}.{s.entity}",
                    # a null value is not received: most deliveries lack one field
                    received=(every, every[:-1], tuple(f for f in every if f != every[0])),
                    masks={name: mask.rule for name, mask in s.mask.items()},
                    approval=approval_of(s),
                )
            )
        if not subscriptions:
            raise SystemExit(f"no subscription of {entity} in the topology in force")
        found[entity] = Shape(source.cdc_topic, changes_topic(entity), tuple(subscriptions))
    return found


@dataclass(frozen=True)
class Job:
    worker: int
    run: str
    changes: int
    entities: int
    trace_topic: str
    audit_topic: str
    trace_id: int
    audit_id: int
    start_ms: int
    span_ms: int
    shapes: dict[str, Shape]
    seed: int


@dataclass
class Generated:
    trace: int = 0
    audit: int = 0
    checkpoints: int = 0  # audit links without an entity: not indexed
    deliveries: int = 0
    awaited: int = 0
    bytes: int = 0
    failed: int = 0
    sample: list[tuple[str, str]] = field(default_factory=list)


_progress: SynchronizedArray[int] | None = None


def _init(progress: SynchronizedArray[int]) -> None:
    global _progress
    _progress = progress


def _encoder(schema: dict[str, Any], schema_id: int) -> Callable[[dict[str, Any]], bytes]:
    parsed, prefix = parse_schema(schema), serde.frame(schema_id, b"")

    def encode(record: dict[str, Any]) -> bytes:
        body = io.BytesIO()
        body.write(prefix)
        schemaless_writer(body, parsed, record)
        return body.getvalue()

    return encode


def generate(job: Job) -> Generated:
    """One generator process: ``job.changes`` changes of the entities on its partitions."""
    rng = random.Random(job.seed)
    mine = [p for p in range(PARTITIONS) if p % WORKERS == job.worker]
    # entity k is on partition k % PARTITIONS; those of partition p are p, p+6, ...
    keys = {
        p: [
            (resident_id(k // PERSON_EVERY), "person")
            if k % PERSON_EVERY == PERSON_EVERY - 1
            else (uscc(k), "enterprise")
            for k in range(p, job.entities, PARTITIONS)
        ]
        for p in mine
    }
    encode_hop = _encoder(lineage_schema(), job.trace_id)
    encode_link = _encoder(audit_schema(), job.audit_id)
    chains = {p: audit.Chain() for p in mine}
    offsets: dict[tuple[str, int], int] = {}
    out = Generated()

    def failed(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            out.failed += 1

    producer = Producer(
        clients.config(
            Settings.from_env().bootstrap,
            **{
                "linger.ms": 100,
                "batch.size": 1 << 20,
                "compression.type": "lz4",
                "acks": "all",
                "queue.buffering.max.messages": 500_000,
                "queue.buffering.max.kbytes": 262_144,
                "delivery.report.only.error": True,
                "on_delivery": failed,
            },
        )
    )

    def send(topic: str, key: bytes, value: bytes, **where: Any) -> None:
        out.bytes += len(key) + len(value)
        while True:
            try:
                producer.produce(topic, value, key, **where)
                return
            except BufferError:
                producer.poll(0.05)

    def trace(base: dict[str, Any], stage: str, topic: str, partition: int, **hop: Any) -> str:
        """Write the hop of ``base`` at the next offset of ``topic``; that position."""
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        record = {**base, "stage": stage, "topic": topic, "partition": partition}
        record.update(offset=offset, **hop)
        headers = [("entity_key", base["entity_key"].encode()), ("stage", stage.encode())]
        send(job.trace_topic, base["event_id"].encode(), encode_hop(record), headers=headers)
        out.trace += 1
        return f"{topic}[{partition}]@{offset}"

    def seal(partition: int, key: str, **record: Any) -> None:
        for sealed in chains[partition].seal(**record):
            send(job.audit_topic, key.encode(), encode_link(sealed), partition=partition)
            out.audit += 1
            out.checkpoints += sealed["kind"] == "checkpoint"

    kinds, weights = zip(*CHANGE_KINDS, strict=True)
    for i in range(job.changes):
        partition = rng.choice(mine)
        key, entity = rng.choice(keys[partition])
        shape = job.shapes[entity]
        event_id = str(uuid.uuid5(EVENT_ID_NAMESPACE, f"bench|{job.run}|{job.worker}|{i}"))
        kind = rng.choices(kinds, weights)[0]
        source_ts = job.start_ms + i * job.span_ms // job.changes
        change = {
            "event_id": event_id,
            "kind": kind,
            "entity": entity,
            "entity_key": key,
            "department": None,
            "subscription": None,
            "source_ts_ms": source_ts,
            "outcome": None,
            "reason": None,
        }
        at_ms = source_ts + rng.randint(80, 400)
        trace(change, "captured", shape.cdc_topic, partition, at_ms=at_ms)
        at_ms += rng.randint(20, 150)
        trace(change, "normalized", shape.changes_topic, partition, at_ms=at_ms)
        for n, sub in enumerate(shape.subscriptions):
            if n and rng.random() >= OTHER_SUBSCRIPTION_P:
                continue
            routed = {**change, "department": sub.department, "subscription": sub.id}
            delivered_at = at_ms + rng.randint(10, 300)
            where = trace(routed, "delivered", sub.topic, partition, at_ms=delivered_at)
            received = rng.choice(sub.received)
            detail = {"kind": kind, "position": where}
            masked = [f"{name}:{sub.masks[name]}" for name in received if name in sub.masks]
            if masked:
                detail["masked"] = ",".join(masked)
            link = {
                "event_id": event_id,
                "entity": entity,
                "entity_key": key,
                "department": sub.department,
                "subscription": sub.id,
            }
            seal(
                partition,
                key,
                kind="delivery",
                at_ms=delivered_at,
                actor=WORKER_ACTOR,
                fields=list(received),
                approval=sub.approval,
                detail=detail,
                **link,
            )
            out.deliveries += 1
            if rng.random() < UNANSWERED_P:
                out.awaited += 1
                continue
            applied_at = delivered_at + rng.randint(50, 3000)
            receipt = {**routed, "kind": "receipt"}
            trace(
                receipt, "receipt", RECEIPTS_TOPIC, partition, at_ms=applied_at, outcome="applied"
            )
            seal(
                partition,
                key,
                kind="receipt",
                at_ms=applied_at,
                actor=sub.department,
                detail={"outcome": "applied", "delivery": where},
                **link,
            )
        # reservoir sampling: changes to query later, uniformly over the history
        if len(out.sample) < RESERVOIR:
            out.sample.append((event_id, key))
        elif (slot := rng.randrange(i + 1)) < RESERVOIR:
            out.sample[slot] = (event_id, key)
        if i % PROGRESS_EVERY == 0:
            producer.poll(0)
            assert _progress is not None
            _progress[job.worker] = i
    assert _progress is not None
    _progress[job.worker] = job.changes
    unsent = producer.flush(600)
    if unsent or out.failed:
        raise RuntimeError(f"generator {job.worker}: {unsent} unsent, {out.failed} failed records")
    return out


def produce_history(
    settings: Settings, scratch: store.Index, args: argparse.Namespace, run: str
) -> tuple[Generated, float]:
    client = serde.registry_client(settings)
    ids = {
        topic: serde.registered_id(client, topic, schema)
        for topic, schema in ((TRACE_TOPIC, lineage_schema()), (AUDIT_TOPIC, audit_schema()))
    }
    missing = [topic for topic, found in ids.items() if found is None]
    if missing:
        raise SystemExit(f"no schema registered for {missing}: run `govsync topology apply`")
    forms = shapes(applied.in_force(settings).topology)
    now_ms = int(time.time() * 1000)
    span_ms = HISTORY_DAYS * 86_400_000
    jobs = [
        Job(
            worker=w,
            run=run,
            changes=args.changes // WORKERS + (1 if w < args.changes % WORKERS else 0),
            entities=args.entities,
            trace_topic=scratch.trace,
            audit_topic=scratch.audit,
            trace_id=ids[TRACE_TOPIC] or 0,
            audit_id=ids[AUDIT_TOPIC] or 0,
            start_ms=now_ms - span_ms,
            span_ms=span_ms - 60_000,  # the newest change a minute ago
            shapes=forms,
            seed=args.seed * 1000 + w,
        )
        for w in range(WORKERS)
    ]
    context = get_context("spawn")  # librdkafka's threads do not survive a fork
    counters = context.Array("q", WORKERS)
    began = time.monotonic()
    with (
        ProcessPoolExecutor(WORKERS, context, initializer=_init, initargs=(counters,)) as pool,
        Progress(console=err) as bar,
    ):
        task = bar.add_task("generating changes", total=args.changes)
        futures: list[Future[Generated]] = [pool.submit(generate, job) for job in jobs]
        while not all(f.done() for f in futures):
            bar.update(task, completed=sum(counters[:]))
            time.sleep(0.25)
        bar.update(task, completed=args.changes)
        parts = [f.result() for f in futures]
    seconds = time.monotonic() - began
    total = Generated()
    for part in parts:
        total.trace += part.trace
        total.audit += part.audit
        total.checkpoints += part.checkpoints
        total.deliveries += part.deliveries
        total.awaited += part.awaited
        total.bytes += part.bytes
        total.sample += part.sample
    ends = topic_reader.end_offsets(settings.bootstrap, scratch.trail)
    on_topics = sum(ends.values())
    if on_topics != total.trace + total.audit:
        raise RuntimeError(f"{total.trace + total.audit} records produced, {on_topics} on topics")
    return total, seconds


# --- measuring --------------------------------------------------------------------------


def summary(ms: Sequence[float], rows: Sequence[int]) -> dict[str, float]:
    ordered = sorted(ms)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "n": len(ordered),
        "p50": rank(0.5),
        "p99": rank(0.99),
        "max": round(ordered[-1], 2),
        "rows_mean": round(statistics.fmean(rows), 1),
    }


def timed(calls: Sequence[Callable[[], int]]) -> dict[str, float]:
    ms, rows = [], []
    for call in calls:
        began = time.perf_counter()
        rows.append(call())
        ms.append((time.perf_counter() - began) * 1000)
    return summary(ms, rows)


def measure_queries(
    settings: Settings, scratch: store.Index, sample: list[tuple[str, str]], seed: int
) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    event_ids = rng.sample([e for e, _ in sample], min(SAMPLE, len(sample)))
    keys = sorted({k for _, k in sample})
    by_key = rng.sample(keys, min(SAMPLE, len(keys)))
    who = rng.sample(keys, min(SAMPLE, len(keys)))
    topology = applied.in_force(settings).topology
    with store.reading(settings, scratch) as conn:

        def who_received(key: str) -> int:
            return len(audit.who_received(queries.audit_entries(conn, key), key))

        def overdue() -> int:
            return len(queries.unanswered(conn, topology, int(time.time() * 1000)))

        return {
            "trace_by_event": timed([lambda q=q: len(queries.hops(conn, q)) for q in event_ids]),
            "trace_by_key": timed([lambda q=q: len(queries.hops(conn, q)) for q in by_key]),
            "who_received": timed([lambda q=q: who_received(q) for q in who]),
            "overdue": timed([overdue] * OVERDUE_RUNS),
        }


def index_facts(settings: Settings, scratch: store.Index, generated: Generated) -> dict[str, Any]:
    """What the index holds, counted exactly, beside what was generated."""
    status = rebuild.status(settings, scratch)
    with psycopg.connect(settings.pg_conninfo(scratch.database), autocommit=True) as conn:

        def one(sql: str) -> int:
            row = conn.execute(sql).fetchone()
            return int(row[0]) if row else -1

        rows = {table: one(f"SELECT count(*) FROM {table}") for table in store.TABLES}
        size = one("SELECT pg_database_size(current_database())")
    expected = {
        "hop": generated.trace,
        "audit_entry": generated.audit - generated.checkpoints,
        "awaited": generated.awaited,
        "unindexed": 0,
    }
    wrong = {t: (rows[t], n) for t, n in expected.items() if rows[t] != n}
    if wrong or any(status.behind.values()):
        err.print(f"[red]the index does not match the topics: {wrong}, behind {status.behind}")
    return {
        "rows": rows,
        "matches_topics": not wrong and not any(status.behind.values()),
        "database_mib": round(size / 2**20),
    }


def drop(settings: Settings, scratch: store.Index, client: Any) -> None:
    """Remove the scratch topics and database; report, never raise (a finally's work)."""
    for topic, future in client.delete_topics(list(scratch.trail)).items():
        try:
            future.result()
        except Exception as exc:
            err.print(f"[yellow]could not delete topic {topic}: {exc}")
    try:
        with psycopg.connect(settings.pg_conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)')
    except psycopg.Error as exc:
        err.print(f"[yellow]could not drop database {scratch.database}: {exc}")
    try:
        witness.forget(settings, scratch.audit)  # the scratch chains' checkpoints
    except Exception as exc:
        err.print(f"[yellow]could not forget the witness's rows of {scratch.audit}: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=10_000_000)
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--keep", action="store_true", help="keep the scratch topics and database")
    args = parser.parse_args()
    if args.entities < PARTITIONS or args.changes < WORKERS:
        parser.error(f"at least {PARTITIONS} entities and {WORKERS} changes")

    settings = Settings.from_env()
    run = uuid.uuid4().hex[:8]
    scratch = store.Index.scratch(f"govsync_bench_{run}", f"govsync.bench.{run}")
    client = admin.admin_client(settings.bootstrap)  # kept: its futures die with it
    try:
        for future in client.create_topics(
            [NewTopic(topic, PARTITIONS, 1) for topic in scratch.trail]
        ).values():
            future.result()
        store.ensure(settings, scratch)

        generated, generate_s = produce_history(settings, scratch, args, run)
        records = generated.trace + generated.audit
        err.print(f"generated {records:,} records in {generate_s:.1f}s")

        with Progress(console=err) as bar:
            task = bar.add_task("rebuilding the index", total=None)
            began = time.monotonic()
            rebuilt = rebuild.rebuild(
                settings,
                lambda done, total: bar.update(task, completed=done, total=total),
                index=scratch,
            )
            rebuild_s = time.monotonic() - began
        facts = index_facts(settings, scratch, generated)
        timings = measure_queries(settings, scratch, generated.sample, args.seed)
    finally:
        if args.keep:
            err.print(f"kept {', '.join(scratch.trail)} and database {scratch.database}")
        else:
            drop(settings, scratch, client)

    report = {
        "changes": args.changes,
        "entities": args.entities,
        "partitions": PARTITIONS,
        "generated": {
            "seconds": round(generate_s, 1),
            "trace_records": generated.trace,
            "audit_records": generated.audit,
            "checkpoints": generated.checkpoints,
            "records": records,
            "records_per_s": round(records / generate_s),
            "records_per_change": round(records / args.changes, 2),
            "deliveries": generated.deliveries,
            "awaited": generated.awaited,
            "mib": round(generated.bytes / 2**20),
            "workers": WORKERS,
        },
        "rebuild": {
            "seconds": round(rebuild_s, 1),
            "records": rebuilt.records,
            "records_per_s": round(rebuilt.records / rebuild_s),
            "target": REBUILD_TARGET,
        },
        "index": facts,
        "queries_ms": timings,
        "targets_ms": TARGETS_MS,
    }
    table = Table(title=f"index bench: {args.changes:,} changes, {args.entities:,} entities")
    for column in ("what", "n", "p50 ms", "p99 ms", "max ms", "rows", "target ms"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for kind, row in timings.items():
        table.add_row(
            kind,
            *(str(row[c]) for c in ("n", "p50", "p99", "max", "rows_mean")),
            str(TARGETS_MS[kind]),
        )
    err.print(
        f"generated {records:,} records ({generated.trace:,} trace, {generated.audit:,} audit;"
        f" {generated.awaited} deliveries awaited) in {generate_s:.1f}s,"
        f" {records / generate_s:,.0f}/s"
    )
    err.print(
        f"rebuild: {rebuilt.records:,} records in {rebuild_s:.1f}s,"
        f" {rebuilt.records / rebuild_s:,.0f}/s; index {facts['database_mib']} MiB"
    )
    err.print(table)
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
