"""The audit witness on the real stack: the indexer copies each chain checkpoint into
``govsync_witness`` (a database only the auditor role may write, with a password), and
`govsync audit verify` names a chain whose tail was cut off or rewritten and hashed again,
which a walk of the chain alone finds intact.

On an audit topic of its own (one partition), written exactly as the ledger writes
``govsync.audit``, with the ledger's own :class:`Chain`.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator

import fastavro
import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from govsync.index import rebuild, store, witness
from streams.contract import schemas
from streams.contract.records import AuditRecord
from streams.contract.topics import AUDIT_TOPIC
from streams.kafka import admin, clients, serde
from streams.trail.audit import Chain
from tests.integration.companies import govsync
from tests.integration.conftest import Stack

EVERY = 1000  # the ledger's checkpoint rhythm: checkpoints at seq 1000 and 2001


def chain(records: int, forged_from: int | None = None) -> list[AuditRecord]:
    """``records`` links (and their checkpoints); from seq ``forged_from`` on, a forger's
    rewrite of the same chain, hashed again."""
    original = Chain(checkpoint_every=EVERY)
    out: list[AuditRecord] = []
    for i in range(records):
        actor = "forger" if forged_from is not None and original.next_seq >= forged_from else "tax"
        out += original.append("receipt", 1_700_000_000_000 + i, actor, event_id=f"e{i}")
    return out


def publish(stack: Stack, topic: str, records: list[AuditRecord]) -> None:
    """The records on a fresh ``topic`` (deleted first if it exists)."""
    client = admin.admin_client(stack.settings.bootstrap)
    if topic in client.list_topics(timeout=10).topics:
        client.delete_topics([topic])[topic].result()
        deadline = time.monotonic() + 60
        while topic in client.list_topics(timeout=10).topics:
            assert time.monotonic() < deadline, f"{topic} was not deleted"
            time.sleep(0.5)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_topics([NewTopic(topic, 1, 1)])[topic].result()
            break
        except Exception:  # marked for deletion a moment longer
            assert time.monotonic() < deadline, f"{topic} could not be created again"
            time.sleep(0.5)
    schema_id = serde.registered_id(
        serde.registry_client(stack.settings), AUDIT_TOPIC, schemas.audit_schema()
    )
    assert schema_id is not None
    parsed = fastavro.parse_schema(schemas.audit_schema())
    producer = Producer(clients.config(stack.settings.bootstrap))
    for record in records:
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parsed, record.model_dump())
        producer.produce(topic, serde.frame(schema_id, body.getvalue()), b"chain")
    assert producer.flush(30) == 0


def verified(topic: str) -> tuple[int, dict]:
    result = govsync("audit", "verify", "--topic", topic, "--json")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)["chains"]["0"]


@pytest.fixture
def scratch(stack: Stack) -> Iterator[store.Index]:
    run = uuid.uuid4().hex[:8]
    index = store.Index.scratch(f"govsync_test_{run}", f"govsync.test.{run}")
    client = admin.admin_client(stack.settings.bootstrap)
    client.create_topics([NewTopic(index.trace, 1, 1)])[index.trace].result()
    try:
        yield index
    finally:
        existing = client.list_topics(timeout=10).topics
        for name in [n for n in index.trail if n in existing]:
            client.delete_topics([name])[name].result()
        witness.forget(stack.settings, index.audit)
        with psycopg.connect(stack.settings.pg_conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{index.database}" WITH (FORCE)')
        with psycopg.connect(store.conninfo(stack.settings, store.WRITER)) as conn:
            conn.execute("DELETE FROM verified WHERE topic = %s", (index.audit,))


def test_a_chain_cut_off_or_rehashed_is_named_against_the_witness(
    stack: Stack, scratch: store.Index
) -> None:
    original = chain(2_500)
    checkpoints = {r.seq: r.sha256 for r in original if r.kind == "checkpoint"}
    assert set(checkpoints) == {1000, 2001}
    publish(stack, scratch.audit, original)
    rebuild.rebuild(stack.settings, index=scratch)  # the indexer, on these topics
    assert witness.witnessed(stack.settings, scratch.audit) == {0: checkpoints}

    code, found = verified(scratch.audit)
    assert (code, found["intact"], found["witnessed"]) == (0, True, 2)

    # The tail rewritten from seq 1500 and hashed again: intact on its own.
    publish(stack, scratch.audit, chain(2_500, forged_from=1500))
    code, found = verified(scratch.audit)
    assert code == 1 and not found["intact"]
    assert [(f["problem"], f["seq"]) for f in found["findings"]] == [("rehashed", 2001)]

    # The tail cut off after seq 1499: intact on its own as well.
    publish(stack, scratch.audit, original[:1501])
    code, found = verified(scratch.audit)
    assert code == 1
    assert [(f["problem"], f["seq"]) for f in found["findings"]] == [("truncated", 1501)]

    # What the witness saw first stands: reading the rewrite changed none of it.
    assert witness.witnessed(stack.settings, scratch.audit) == {0: checkpoints}


def test_only_the_auditor_writes_the_witness_and_only_with_its_password(stack: Stack) -> None:
    settings = stack.settings
    # As the index's role (trusted on loopback): no right to the witness's database.
    as_index = store.conninfo(settings, store.WRITER).replace(
        f"dbname={store.DATABASE}", f"dbname={witness.DATABASE}"
    )
    with pytest.raises(psycopg.OperationalError, match=r"permission denied|not permitted"):
        psycopg.connect(as_index).close()
    # As the auditor without its password (every other role is trusted): refused.
    nameless = witness.conninfo(settings).split(" password=")[0]
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(nameless).close()
    with witness.connect(settings) as conn:
        assert conn.execute("SELECT count(*) >= 0 FROM checkpoint").fetchone() == (True,)
