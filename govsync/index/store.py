"""The index database: a ``govsync`` database in the stack's PostgreSQL, owned by a role
of its own (``govsync_index``, the indexer's), readable by ``govsync_reader`` (the
command line and the monitor). Its schema is in docs/architecture.md, section 5.

Every table is a projection of a topic; ``position`` holds, per topic partition, the next
offset the tables do not reflect yet, written in the same transaction as the rows. That is
what makes the index exactly-once with the topics: a batch is in the tables together
with its position, or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from govsync.errors import OperationFailed
from streams.config.settings import Settings
from streams.contract.topics import AUDIT_TOPIC, TRACE_TOPIC

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
TABLES = ("hop", "audit_entry", "awaited", "unindexed", "position")


@dataclass(frozen=True)
class Index:
    """Where an index lives and which topics it reflects: the stack's (``LIVE``), or a
    benchmark's scratch copy."""

    database: str = DATABASE
    trace: str = TRACE_TOPIC
    audit: str = AUDIT_TOPIC

    @property
    def topics(self) -> tuple[str, str]:
        return (self.trace, self.audit)


LIVE = Index()


class IndexUnavailable(RuntimeError):
    """The index database cannot be reached or is not set up (`govsync up` creates it)."""


class WriterBusy(OperationFailed):
    """Another process holds the index's writer lock."""


def conninfo(settings: Settings, role: str, index: Index = LIVE) -> str:
    return f"host={settings.host} port={settings.pg_port} user={role} dbname={index.database}"


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


def positions(conn: psycopg.Connection, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the next offset the index does not reflect yet."""
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM position WHERE topic = ANY(%s)", (list(topics),)
    )
    return {(topic, partition): offset for topic, partition, offset in rows}
