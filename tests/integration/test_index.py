"""The operations indexes on the real stack: they hold exactly what the trail topics hold
(nothing twice, nothing skipped, even when the indexer is killed mid-stream), `trace`,
`who-received` and `receipts overdue` answer from them the same as a read of the topics
would, and a rebuild (interrupted, then resumed) recreates the same rows."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import fastavro
import psycopg
import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from govsync.index import freshness, indexer, queries, rebuild, store
from govsync.stack import background
from streams.contract import headers, schemas
from streams.contract.records import Closure
from streams.contract.topics import AUDIT_TOPIC, TRACE_TOPIC
from streams.kafka import admin, clients, serde, topic_reader
from streams.trail import audit, lineage
from tests.integration.companies import GOVSYNC, TAX, govsync, insert, new_company, update
from tests.integration.conftest import Stack
from tests.integration.programs import kill_9

CHANGES = 60


def run_json(*args: str) -> object:
    result = govsync(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def index(stack: Stack) -> Iterator[psycopg.Connection]:
    with store.reading(stack.settings) as conn:
        yield conn


def caught_up(stack: Stack, conn: psycopg.Connection, timeout: float = 120.0) -> None:
    missing = freshness.wait_for(stack.settings, conn, timeout)
    assert missing == 0, f"the index is still {missing} records behind"


def positions_on_topic(
    stack: Stack, start: topic_reader.Offsets
) -> dict[str, set[tuple[int, int]]]:
    """(partition, offset) of every record on the trail topics from ``start``."""
    found: dict[str, set[tuple[int, int]]] = {TRACE_TOPIC: set(), AUDIT_TOPIC: set()}
    for message in topic_reader.messages(stack.settings.bootstrap, start, timeout=300):
        found[message.topic()].add((message.partition(), message.offset()))
    return found


def positions_indexed(
    conn: psycopg.Connection, start: topic_reader.Offsets
) -> dict[str, set[tuple[int, int]]]:
    """The same, as the index holds them: hop rows, audit rows and the records the
    indexer could not read (audit links naming no entity are read but not kept)."""

    def rows(sql: str, topic: str) -> set[tuple[int, int]]:
        return {
            (partition, offset)
            for partition, offset in conn.execute(sql)
            if offset >= start.get((topic, partition), 0)
        }

    return {
        TRACE_TOPIC: rows('SELECT partition, "offset" FROM hop', TRACE_TOPIC)
        | rows(
            f"SELECT partition, \"offset\" FROM unindexed WHERE topic = '{TRACE_TOPIC}'",
            TRACE_TOPIC,
        ),
        AUDIT_TOPIC: rows('SELECT partition, "offset" FROM audit_entry', AUDIT_TOPIC),
    }


def changing(stack: Stack, uscc: str, count: int) -> threading.Thread:
    def run() -> None:
        for n in range(count):
            update(stack, uscc, "reg_capital = %s", (1_000_001 + n,))
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_indexer_killed_mid_stream_indexes_every_trail_record_once(
    stack: Stack, index: psycopg.Connection
) -> None:
    company = new_company()
    insert(stack, company)
    start = stack.offsets(TRACE_TOPIC, AUDIT_TOPIC)
    thread = changing(stack, company.credit_code, CHANGES)
    time.sleep(1.0)
    kill_9(stack, background.INDEXER_PROGRAM)
    thread.join(60)
    # Every change answered by its receipt: the trail holds all it will for them.
    receipts = "SELECT count(*) FROM hop WHERE entity_key = %s AND stage = 'receipt'"
    deadline = time.monotonic() + 120
    while True:
        caught_up(stack, index)
        row = index.execute(receipts, (company.credit_code,)).fetchone()
        if row is not None and row[0] >= CHANGES:
            break
        assert time.monotonic() < deadline, f"{row} receipts indexed of {CHANGES} changes"
        time.sleep(1)
    on_topic, indexed = positions_on_topic(stack, start), positions_indexed(index, start)
    assert indexed[TRACE_TOPIC] == on_topic[TRACE_TOPIC]
    # Audit links that name no entity (topology changes, replays, checkpoints) are not kept.
    assert indexed[AUDIT_TOPIC] <= on_topic[AUDIT_TOPIC]
    assert len(on_topic[AUDIT_TOPIC] - indexed[AUDIT_TOPIC]) < len(on_topic[AUDIT_TOPIC]) / 10


def test_trace_and_who_received_answer_from_the_index_as_the_topics_would(
    stack: Stack, index: psycopg.Connection
) -> None:
    company = new_company()
    start = stack.offsets(TRACE_TOPIC, AUDIT_TOPIC)
    insert(stack, company)
    update(stack, company.credit_code, "reg_status = '4'")
    uscc = company.credit_code

    def receipted() -> bool:
        return any(
            sum(s["stage"] == "receipt" for s in trace["steps"]) == 2
            and trace["kind"] == "deregistered"
            for trace in run_json("trace", uscc)  # type: ignore[union-attr]
        )

    deadline = time.monotonic() + 120
    while not receipted():
        assert time.monotonic() < deadline, f"no complete deregistration trace of {uscc}"
        time.sleep(1)
    caught_up(stack, index)
    # The company is new: everything about it is on the topics after ``start``.
    trace_from = {tp: o for tp, o in start.items() if tp[0] == TRACE_TOPIC}
    audit_from = {tp: o for tp, o in start.items() if tp[0] == AUDIT_TOPIC}
    from_topic = lineage.read(stack.settings, query=uscc, start=trace_from)
    from_index = queries.hops(index, uscc)
    assert sorted(from_index, key=lambda h: h.position) == sorted(
        from_topic, key=lambda h: h.position
    )
    received = audit.who_received(audit.read(stack.settings, key=uscc, start=audit_from), uscc)
    assert [r.model_dump() for r in received] == run_json("audit", "who-received", uscc)
    assert {r.department for r in received} == {"tax", "social_security"}


def test_receipts_awaited_follow_the_sink(stack: Stack, index: psycopg.Connection) -> None:
    """A delivery is awaited while the tax sink is stopped, and answered once it runs."""
    from govsync.stack import supervision

    company = new_company()
    supervision.stop(stack.settings, "tax-sink")
    try:
        insert(stack, company)
        start = stack.offsets(TAX)
        stack.read_until(start, lambda rs: any(r.key == company.credit_code for r in rs))
        caught_up(stack, index)
        awaited = run_json("receipts", "overdue", "--all")
        assert any(w["entity_key"] == company.credit_code for w in awaited)  # type: ignore[union-attr]
    finally:
        background.start_app_process(stack.settings, "tax-sink", ["sink", "tax"])
    deadline = time.monotonic() + 120
    while any(
        w["entity_key"] == company.credit_code  # type: ignore[index]
        for w in run_json("receipts", "overdue", "--all")  # type: ignore[union-attr]
    ):
        assert time.monotonic() < deadline, "the receipt never answered the delivery"
        time.sleep(1)


def fingerprint(conn: psycopg.Connection, below: topic_reader.Offsets) -> tuple[int, str]:
    """Count and hash of the hop and audit rows before ``below`` (what a rebuild targets)."""
    limits = json.dumps({f"{t}/{p}": o for (t, p), o in below.items()})
    row = conn.execute(
        """
        WITH limits AS (SELECT key, value::bigint AS below FROM jsonb_each_text(%s::jsonb)),
        rows AS (
            SELECT 'h' || h.partition || '/' || h."offset" || h.event_id || h.stage
                || coalesce(h.department, '') AS r
            FROM hop h JOIN limits l ON l.key = %s || '/' || h.partition
            WHERE h."offset" < l.below
            UNION ALL
            SELECT 'a' || a.partition || '/' || a."offset" || a.sha256
            FROM audit_entry a JOIN limits l ON l.key = %s || '/' || a.partition
            WHERE a."offset" < l.below
        )
        SELECT count(*), coalesce(md5(string_agg(r, ',' ORDER BY r)), '') FROM rows
        """,
        (limits, TRACE_TOPIC, AUDIT_TOPIC),
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def test_a_rebuild_interrupted_and_resumed_recreates_the_same_index(
    stack: Stack, index: psycopg.Connection
) -> None:
    caught_up(stack, index)
    target = stack.offsets(TRACE_TOPIC, AUDIT_TOPIC)
    caught_up(stack, index)
    before = fingerprint(index, target)
    assert before[0] > 0
    interrupted = subprocess.Popen(
        [str(GOVSYNC), "index", "rebuild", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # The rebuild's row and the emptied tables commit together: once its row shows,
        # any hop is one the rebuild wrote.
        started = (
            "SELECT EXISTS (SELECT 1 FROM rebuild WHERE finished_at IS NULL)"
            " AND EXISTS (SELECT 1 FROM hop)"
        )
        deadline = time.monotonic() + 60
        while not index.execute(started).fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline and interrupted.poll() is None
            time.sleep(0.1)
    finally:
        interrupted.send_signal(signal.SIGKILL)
        interrupted.wait(30)
    status = run_json("index", "status")
    assert status["rebuilding"] is True  # type: ignore[index]
    resumed = run_json("index", "rebuild")
    assert resumed["resumed"] is True  # type: ignore[index]
    assert run_json("index", "status")["rebuilding"] is False  # type: ignore[index]
    background.start_indexer(stack.settings)  # the killed rebuild could not start it again
    caught_up(stack, index)
    assert fingerprint(index, target) == before


@pytest.fixture
def scratch(stack: Stack) -> Iterator[psycopg.Connection]:
    """An index database of its own (same schema), dropped afterwards."""
    index = store.Index(database=f"govsync_test_{uuid.uuid4().hex[:8]}")
    store.ensure(stack.settings, index)
    try:
        with indexer.writer_connection(stack.settings, index=index) as conn:
            yield conn
    finally:
        with psycopg.connect(stack.settings.pg_conninfo("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{index.database}" WITH (FORCE)')


def hop_batch(*hops: tuple[str, str, str], at: int = 0) -> indexer.Batch:
    """Hops (stage, event_id, subscription) at consecutive trace offsets from ``at``."""
    batch = indexer.Batch()
    for n, (stage, event_id, subscription) in enumerate(hops):
        indexer._hop(
            batch,
            0,
            at + n,
            {
                "event_id": event_id,
                "stage": stage,
                "kind": "updated",
                "entity": "enterprise",
                "entity_key": "91310000MA1FL8XQ30",
                "department": subscription.split(".")[0],
                "subscription": subscription,
                "topic": "t",
                "partition": 0,
                "offset": n,
                "at_ms": 1_700_000_000_000 + n,
                "source_ts_ms": 1_700_000_000_000,
                "outcome": "applied" if stage == "receipt" else None,
                "reason": None,
            },
        )
    batch.next_offsets[(TRACE_TOPIC, 0)] = at + len(hops)
    return batch


def awaited(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return sorted(conn.execute("SELECT event_id, subscription FROM awaited").fetchall())


def test_a_delivery_is_awaited_until_its_receipt_whatever_the_order(
    scratch: psycopg.Connection, stack: Stack
) -> None:
    tax, social = "tax.enterprise", "social_security.enterprise"
    indexer.write(scratch, hop_batch(("delivered", "e1", tax), ("delivered", "e1", social)))
    assert awaited(scratch) == [("e1", social), ("e1", tax)]
    # A receipt answers its own subscription's delivery only.
    indexer.write(scratch, hop_batch(("receipt", "e1", tax), at=2))
    assert awaited(scratch) == [("e1", social)]
    # A receipt indexed before its delivery (another topic, another order): never awaited,
    # not even when the delivery is seen again; nor is a delivery and its receipt in one batch.
    indexer.write(scratch, hop_batch(("receipt", "e2", tax), at=3))
    indexer.write(scratch, hop_batch(("delivered", "e2", tax), ("delivered", "e2", tax), at=4))
    indexer.write(scratch, hop_batch(("delivered", "e3", tax), ("receipt", "e3", tax), at=6))
    assert awaited(scratch) == [("e1", social)]
    # The monitor and `receipts overdue` list only subscriptions still in the topology.
    found = queries.unanswered(scratch, stack.topology, 1_700_000_000_000 + 3_600_000)
    assert [(w.event_id, w.subscription) for w in found] == [("e1", social)]
    assert store.positions(scratch, (TRACE_TOPIC,)) == {(TRACE_TOPIC, 0): 8}


@pytest.fixture
def scratch_trail(stack: Stack) -> Iterator[store.Index]:
    """Trail topics of their own (one partition each) and an index database reflecting
    them, deleted afterwards."""
    run = uuid.uuid4().hex[:8]
    index = store.Index.scratch(f"govsync_test_{run}", f"govsync.test.{run}")
    client = admin.admin_client(stack.settings.bootstrap)
    for name in index.trail:
        client.create_topics([NewTopic(name, 1, 1)])[name].result()
    try:
        yield index
    finally:
        for name in index.trail:
            client.delete_topics([name])[name].result()
        with psycopg.connect(stack.settings.pg_conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{index.database}" WITH (FORCE)')


def hop_bodies(*event_ids: str) -> list[bytes]:
    """Delivered hops of those changes, Avro as the ledger writes them (without framing)."""
    schema = fastavro.parse_schema(schemas.lineage_schema())
    bodies = []
    for event_id in event_ids:
        hop = hop_batch(("delivered", event_id, "tax.enterprise")).hops[0]
        good = dict(zip(store.HOP_COLUMNS, hop, strict=True))
        body = io.BytesIO()
        fastavro.schemaless_writer(
            body,
            schema,
            {
                **{k: good[k] for k in store.HOP_COLUMNS[2:9]},
                "topic": good["topic"],
                "partition": good["topic_partition"],
                "offset": good["topic_offset"],
                "at_ms": good["at_ms"],
                "source_ts_ms": good["source_ts_ms"],
                "outcome": None,
                "reason": None,
            },
        )
        bodies.append(body.getvalue())
    return bodies


def trace_schema_id(stack: Stack) -> int:
    found = serde.registered_id(
        serde.registry_client(stack.settings), TRACE_TOPIC, schemas.lineage_schema()
    )
    assert found is not None
    return found


def test_an_undecodable_trail_record_is_set_aside_and_the_rest_indexed(
    stack: Stack, scratch_trail: store.Index
) -> None:
    """On trail topics of its own: bytes that are not Avro and a record naming a schema
    the registry does not know go to ``unindexed`` with the reason; the hop after them
    is indexed all the same."""
    index = scratch_trail
    [body] = hop_bodies("e1")
    producer = Producer(clients.config(stack.settings.bootstrap))
    producer.produce(index.trace, b"not avro at all", b"x")
    producer.produce(index.trace, serde.frame(999_999_999, body), b"y")
    producer.produce(index.trace, serde.frame(trace_schema_id(stack), body), b"e1")
    assert producer.flush(30) == 0
    done = rebuild.rebuild(stack.settings, index=index)
    assert done.records == 3
    with store.reading(stack.settings, index) as conn:
        unreadable = conn.execute(
            'SELECT "offset", reason FROM unindexed ORDER BY "offset"'
        ).fetchall()
        assert [offset for offset, _ in unreadable] == [0, 1]
        assert "too short" in unreadable[0][1] or "magic" in unreadable[0][1]
        assert "unknown writer schema" in unreadable[1][1]
        assert [h.event_id for h in queries.hops(conn, "e1")] == ["e1"]
    assert rebuild.status(stack.settings, index).unindexed == 2


def test_lineage_rows_of_records_retention_removed_are_dropped(
    stack: Stack, scratch_trail: store.Index
) -> None:
    """The trace topic deletes after its retention (30 days); the lineage index follows
    it instead of keeping every day the topic no longer holds, a bounded step at a time."""
    index = scratch_trail
    trace_id = trace_schema_id(stack)
    producer = Producer(clients.config(stack.settings.bootstrap))
    for n, body in enumerate(hop_bodies("e0", "e1", "e2", "e3", "e4")):
        producer.produce(index.trace, serde.frame(trace_id, body), f"e{n}".encode())
    assert producer.flush(30) == 0
    assert rebuild.rebuild(stack.settings, index=index).records == 5
    client = admin.admin_client(stack.settings.bootstrap)
    [removed] = client.delete_records([TopicPartition(index.trace, 0, 3)]).values()
    assert removed.result().low_watermark == 3  # the new log start: e0..e2 are gone from the topic
    with indexer.writer_connection(stack.settings, index=index) as conn:
        pruning = indexer.Indexer(stack.settings, conn, index)
        try:
            pruning.assign()
            assert pruning.prune(limit=2) == 2  # a step's worth of offsets at once
            assert pruning.prune(limit=2) == 1
            assert pruning.prune(limit=2) == 0  # and again changes nothing
        finally:
            pruning.close()
    with store.reading(stack.settings, index) as conn:
        left = queries.hops(conn, "91310000MA1FL8XQ30")  # every hop_batch hop's entity
        assert sorted(h.event_id for h in left) == ["e3", "e4"]
        assert store.positions(conn, (index.trace,)) == {(index.trace, 0): 5}


def test_the_dead_letter_queue_and_the_change_topics_are_counted(stack: Stack) -> None:
    """On a queue and a change topic of their own: held records with their closures (the
    latest per position wins), change events counted per cdc partition from their
    captured header (control records and reprocessed held records are not), and a
    closure that is not one set aside in ``unindexed``."""
    run = uuid.uuid4().hex[:8]
    index = store.Index.scratch(f"govsync_test_{run}", f"govsync.test.{run}")
    changes = f"{index.changes_prefix}enterprise"
    cdc = f"cdc.test.{run}"
    client = admin.admin_client(stack.settings.bootstrap)
    topics = [*index.dead_letters, changes]
    for name in topics:
        client.create_topics([NewTopic(name, 1, 1)])[name].result()
    try:
        producer = Producer(clients.config(stack.settings.bootstrap))
        for offset in (11, 10, 13):
            producer.produce(changes, b"{}", b"k", headers=[headers.captured(cdc, 0, offset, 1)])
        producer.produce(changes, b"{}", b"k", headers=[(headers.CONTROL, b"replay")])
        producer.produce(changes, b"{}", b"k", headers=[(headers.REPROCESSED, b"r1")])
        for source_offset in (12, 14, 5):  # held at 0:0, 0:1, 0:2; 5 is before the count
            producer.produce(
                index.dlq,
                b"original bytes",
                headers=[
                    ("error_code", b"invalid_uscc"),
                    ("error_message", b"check character"),
                    ("source_topic", cdc.encode()),
                    ("source_partition", b"0"),
                    ("source_offset", str(source_offset).encode()),
                    ("dead_lettered_at", b"1700000000000"),
                ],
            )
        for outcome in ("superseded", "reprocessed"):
            closure = Closure(outcome=outcome, closed_at="now", reprocess_id="r1", event_id="e")
            producer.produce(index.dlq_closed, closure.model_dump_json().encode(), b"0:0")
        producer.produce(index.dlq_closed, b"{}", b"not a position")
        assert producer.flush(30) == 0

        assert rebuild.rebuild(stack.settings, index=index).records == 5 + 3 + 3
        with store.reading(stack.settings, index) as conn:
            assert queries.outcomes(conn, [cdc]) == {
                (cdc, 0): queries.Outcomes(
                    normalized=3,
                    first_offset=10,
                    dead_lettered=2,
                    first_dead_letter=5,
                    held=3,
                    held_open=2,
                    reprocessed=1,
                )
            }
            assert [r.position for r in queries.held(conn)] == ["0:1", "0:2"]
            everything = queries.held(conn, closed_too=True)
            assert everything[0].closure is not None
            assert everything[0].closure.outcome == "reprocessed"
            assert (everything[0].source_offset, everything[0].error_code) == (12, "invalid_uscc")
            [(reason,)] = conn.execute("SELECT reason FROM unindexed").fetchall()
            assert "not a position" in reason or "invalid literal" in reason
        assert rebuild.status(stack.settings, index).behind == dict.fromkeys(sorted(topics), 0)
    finally:
        for name in topics:
            client.delete_topics([name])[name].result()
        with psycopg.connect(stack.settings.pg_conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{index.database}" WITH (FORCE)')
