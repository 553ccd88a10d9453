"""The index database: a ``govsync`` database in the stack's PostgreSQL, owned by a role
of its own (``govsync_index``, the indexer's), readable by ``govsync_reader`` (the
command line and the monitor). Its schema is in docs/architecture.md, section 5.

It reflects the trail (``govsync.trace``, ``govsync.audit``), the dead-letter queue
(``govsync.dlq``, ``govsync.dlq.closed``) and, as counters only, the change topics
(``changes.<entity>``: how many cdc records normalize turned into change events), and the
current state of every entity (``master.<entity>``) for look-ups (`govsync api`).

Every table but ``verified`` and ``rebuild`` is a projection of topics; ``position``
holds, per topic partition, the next offset the tables do not reflect yet, written in the
same transaction as the rows. That is what makes the index exactly-once with the topics:
a batch is in the tables together with its position, or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from govsync.errors import OperationFailed
from streams.config.settings import Settings
from streams.contract.topics import (
    AUDIT_TOPIC,
    CHANGES_PREFIX,
    DLQ_CLOSED_TOPIC,
    DLQ_TOPIC,
    MASTER_PREFIX,
    TRACE_TOPIC,
)

DATABASE = "govsync"
WRITER = "govsync_index"
READER = "govsync_reader"
# One writer at a time (the indexer, or a rebuild): both hold this session lock.
WRITER_LOCK = 0x6776_5F69  # "gv_i"

SCHEMA = """
CREATE TABLE IF NOT EXISTS position (
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
-- govsync.trace: one row per lineage hop, at its position on the trace.
CREATE TABLE IF NOT EXISTS hop (
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    event_id text NOT NULL,
    stage text NOT NULL,
    kind text NOT NULL,
    entity text NOT NULL,
    entity_key text NOT NULL,
    department text,
    subscription text,
    topic text NOT NULL,
    topic_partition integer NOT NULL,
    topic_offset bigint NOT NULL,
    at_ms bigint NOT NULL,
    source_ts_ms bigint NOT NULL,
    outcome text,
    reason text,
    PRIMARY KEY (partition, "offset")
);
CREATE INDEX IF NOT EXISTS hop_by_event ON hop (event_id);
CREATE INDEX IF NOT EXISTS hop_by_key ON hop (entity_key);
-- govsync.audit: one row per chain link that names an entity (deliveries, receipts).
CREATE TABLE IF NOT EXISTS audit_entry (
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    seq bigint NOT NULL,
    kind text NOT NULL,
    at_ms bigint NOT NULL,
    actor text NOT NULL,
    event_id text,
    entity text,
    entity_key text NOT NULL,
    department text,
    subscription text,
    fields text[] NOT NULL,
    approval jsonb NOT NULL,
    detail jsonb NOT NULL,
    prev_sha256 text NOT NULL,
    sha256 text NOT NULL,
    PRIMARY KEY (partition, "offset")
);
CREATE INDEX IF NOT EXISTS audit_entry_by_key ON audit_entry (entity_key, department);
-- Objections (使用—评价) and their answers, for `govsync objection` and the rates per source.
CREATE INDEX IF NOT EXISTS audit_entry_objections
    ON audit_entry ((detail->>'objection')) WHERE kind = 'objection';
-- Deliveries without a receipt yet: a row per delivered hop until its receipt hop is
-- indexed (in either order: they come from different topics).
CREATE TABLE IF NOT EXISTS awaited (
    subscription text NOT NULL,
    event_id text NOT NULL,
    department text NOT NULL,
    entity_key text NOT NULL,
    delivered_at_ms bigint NOT NULL,
    PRIMARY KEY (subscription, event_id)
);
CREATE INDEX IF NOT EXISTS awaited_by_age ON awaited (subscription, delivered_at_ms);
-- Records the indexer could not decode: where they are and why (they are not lost: the
-- topic holds them; the indexer read on).
CREATE TABLE IF NOT EXISTS unindexed (
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);
-- govsync.dlq: one row per held record (the bytes stay on the topic).
CREATE TABLE IF NOT EXISTS dead_letter (
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    error_code text NOT NULL,
    error_message text NOT NULL,
    source_topic text NOT NULL,
    source_partition integer NOT NULL,
    source_offset bigint NOT NULL,
    dead_lettered_at_ms bigint,
    PRIMARY KEY (partition, "offset")
);
CREATE INDEX IF NOT EXISTS dead_letter_by_source
    ON dead_letter (source_topic, source_partition, source_offset);
-- govsync.dlq.closed (compacted): the latest closure of a held record, by its position.
CREATE TABLE IF NOT EXISTS closure (
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    outcome text NOT NULL,
    closed_at text NOT NULL,
    reprocess_id text NOT NULL,
    event_id text,
    PRIMARY KEY (partition, "offset")
);
-- changes.<entity>, counted: per cdc partition, the change events normalize made from
-- it, and the lowest cdc offset among them (where the count, and the accounting, begin).
CREATE TABLE IF NOT EXISTS normalized (
    source_topic text NOT NULL,
    source_partition integer NOT NULL,
    records bigint NOT NULL,
    first_offset bigint NOT NULL,
    PRIMARY KEY (source_topic, source_partition)
);
-- master.<entity> (compacted): each entity's current state and the change it reflects.
CREATE TABLE IF NOT EXISTS entity_state (
    entity text NOT NULL,
    entity_key text NOT NULL,
    state jsonb NOT NULL,
    event_id text NOT NULL,
    source_ts_ms bigint NOT NULL,
    PRIMARY KEY (entity, entity_key)
);
-- Per audit chain, the last checkpoint a full or incremental `audit verify` found
-- intact up to: where `audit verify --incremental` starts. Not a projection of a topic,
-- so a rebuild keeps it.
CREATE TABLE IF NOT EXISTS verified (
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    seq bigint NOT NULL,
    prev_sha256 text NOT NULL,
    verified_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
-- A rebuild under way: its start, until it reached the ends it was aiming at.
CREATE TABLE IF NOT EXISTS rebuild (
    started_at timestamptz NOT NULL,
    target jsonb NOT NULL,
    finished_at timestamptz
);
"""
# The columns the indexer copies rows into, in COPY order.
HOP_COLUMNS = (
    "partition",
    "offset",
    "event_id",
    "stage",
    "kind",
    "entity",
    "entity_key",
    "department",
    "subscription",
    "topic",
    "topic_partition",
    "topic_offset",
    "at_ms",
    "source_ts_ms",
    "outcome",
    "reason",
)
AUDIT_COLUMNS = (
    "partition",
    "offset",
    "seq",
    "kind",
    "at_ms",
    "actor",
    "event_id",
    "entity",
    "entity_key",
    "department",
    "subscription",
    "fields",
    "approval",
    "detail",
    "prev_sha256",
    "sha256",
)
DEAD_LETTER_COLUMNS = (
    "partition",
    "offset",
    "error_code",
    "error_message",
    "source_topic",
    "source_partition",
    "source_offset",
    "dead_lettered_at_ms",
)

TABLES = (
    "hop",
    "audit_entry",
    "awaited",
    "dead_letter",
    "closure",
    "normalized",
    "entity_state",
    "unindexed",
    "position",
)


@dataclass(frozen=True)
class Index:
    """Where an index lives and which topics it reflects: the stack's (``LIVE``), or a
    test's or benchmark's scratch copy."""

    database: str = DATABASE
    trace: str = TRACE_TOPIC
    audit: str = AUDIT_TOPIC
    dlq: str = DLQ_TOPIC
    dlq_closed: str = DLQ_CLOSED_TOPIC
    changes_prefix: str = CHANGES_PREFIX
    master_prefix: str = MASTER_PREFIX

    @classmethod
    def scratch(cls, database: str, prefix: str) -> Index:
        """An index of topics of its own, ``<prefix>.trace`` and so on, in ``database``."""
        return cls(
            database=database,
            trace=f"{prefix}.trace",
            audit=f"{prefix}.audit",
            dlq=f"{prefix}.dlq",
            dlq_closed=f"{prefix}.dlq.closed",
            changes_prefix=f"{prefix}.changes.",
            master_prefix=f"{prefix}.master.",
        )

    @property
    def trail(self) -> tuple[str, str]:
        return (self.trace, self.audit)

    @property
    def dead_letters(self) -> tuple[str, str]:
        return (self.dlq, self.dlq_closed)

    def covers(self, topic: str) -> bool:
        return topic in (*self.trail, *self.dead_letters) or topic.startswith(
            (self.changes_prefix, self.master_prefix)
        )

    def topics(self, existing: Iterable[str]) -> tuple[str, ...]:
        """Of the ``existing`` topics, those this index reflects, sorted."""
        return tuple(sorted(t for t in existing if self.covers(t)))


LIVE = Index()


class IndexUnavailable(RuntimeError):
    """The index database cannot be reached or is not set up (`govsync up` creates it)."""


class WriterBusy(OperationFailed):
    """Another process holds the index's writer lock."""


def conninfo(settings: Settings, role: str, index: Index = LIVE) -> str:
    return f"host={settings.pg_address} port={settings.pg_port} user={role} dbname={index.database}"


def ensure(settings: Settings, index: Index = LIVE) -> None:
    """Create the roles, the database and its tables if missing; idempotent."""
    with psycopg.connect(settings.pg_conninfo("postgres"), autocommit=True) as conn:
        roles = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles")}
        for role in (WRITER, READER):
            if role not in roles:
                conn.execute(f'CREATE ROLE "{role}" LOGIN')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (index.database,))
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{index.database}" OWNER "{WRITER}"')
    with psycopg.connect(conninfo(settings, WRITER, index), autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute(f'GRANT CONNECT ON DATABASE "{index.database}" TO "{READER}"')
        conn.execute(f'GRANT USAGE ON SCHEMA public TO "{READER}"')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{READER}"')


@contextmanager
def reading(settings: Settings, index: Index = LIVE) -> Iterator[psycopg.Connection]:
    """A read-only connection, as the reader role."""
    try:
        conn = psycopg.connect(conninfo(settings, READER, index), autocommit=True)
    except psycopg.OperationalError as exc:
        raise IndexUnavailable(
            f"the index database {index.database!r} is unreachable ({exc}); `govsync up` creates it"
        ) from exc
    with conn:
        yield conn


def prune_hops(conn: psycopg.Connection, starts: dict[int, int], limit: int) -> int:
    """Delete the lineage rows of records retention has removed from the trace topic
    (below each partition's log start in ``starts``), from at most ``limit`` offsets per
    partition; how many. The topics are the record: without this the lineage index keeps
    every day its topic no longer holds. Each partition's window is a range of the
    primary key from its lowest row, so a step costs the rows it deletes, never a scan of
    the table. Idempotent, and small enough that indexing goes on between steps."""
    deleted = 0
    for partition, start in sorted(starts.items()):
        with conn.transaction():
            deleted += conn.execute(
                'DELETE FROM hop WHERE partition = %(p)s AND "offset" < LEAST(%(start)s,'
                ' (SELECT min("offset") FROM hop WHERE partition = %(p)s) + %(limit)s)',
                {"p": partition, "start": start, "limit": limit},
            ).rowcount
    return deleted


def positions(
    conn: psycopg.Connection, topics: tuple[str, ...] | None = None
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the next offset the index does not reflect yet (of every
    topic it has read, or of ``topics``)."""
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM position WHERE %s::text[] IS NULL"
        " OR topic = ANY(%s)",
        (None if topics is None else list(topics),) * 2,
    )
    return {(topic, partition): offset for topic, partition, offset in rows}
