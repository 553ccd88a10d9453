"""The audit chains' witness: every checkpoint (a chain's seq and head hash, every 1,000
records) copied, as it appears on the trail, into a database the pipeline cannot write.

A chain verifies against itself only: whoever can write ``govsync.audit`` could cut off
its tail, or rewrite it and hash it again, and a walk would find the new chain intact.
The witness remembers what the chain looked like when each checkpoint was first seen, so
``govsync audit verify`` names a tail that was cut off (the witness saw a later
checkpoint than the chain now reaches) or re-hashed (a checkpoint's hash differs from the
witnessed one).

Where: the database ``govsync_witness``, owned by the role ``govsync_auditor``, the only
role that may write it and the only one PostgreSQL asks for a password
(``scram-sha-256``, pg_hba.conf; every other loopback login is trusted). The Kafka
principals that write the trail (worker, ledger) have no database login at all. The
indexer exports the checkpoints as it reads ``govsync.audit`` (it decodes every record
anyway) over a connection of its own as the auditor; a row once written is never
changed (``ON CONFLICT DO NOTHING``): the first sighting is the testimony.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from govsync.index import store
from streams.config.secrets import private_secret
from streams.config.settings import Settings

DATABASE = "govsync_witness"
AUDITOR = "govsync_auditor"

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoint (
    topic text NOT NULL,
    partition integer NOT NULL,
    seq bigint NOT NULL,
    sha256 text NOT NULL,
    "offset" bigint NOT NULL,
    witnessed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, seq)
);
"""

Checkpoint = tuple[int, int, int, str]  # partition, seq, offset, sha256


def password(settings: Settings) -> str:
    return private_secret(settings.path("secrets"), f"pg-{AUDITOR}.password")


def conninfo(settings: Settings) -> str:
    return (
        f"host={settings.pg_address} port={settings.pg_port} user={AUDITOR} dbname={DATABASE} "
        f"password={password(settings)}"
    )


def ensure(settings: Settings) -> None:
    """The auditor role (with its password), its database and table; idempotent."""
    with psycopg.connect(settings.pg_conninfo("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (AUDITOR,))
        verb = "ALTER" if exists.fetchone() else "CREATE"
        # The password is a generated hex string: safe to inline (DDL takes no parameters).
        conn.execute(f"{verb} ROLE \"{AUDITOR}\" LOGIN PASSWORD '{password(settings)}'")
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if found.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}" OWNER "{AUDITOR}"')
            conn.execute(f'REVOKE ALL ON DATABASE "{DATABASE}" FROM PUBLIC')
    with psycopg.connect(conninfo(settings), autocommit=True) as conn:
        conn.execute(SCHEMA)


def connect(settings: Settings) -> psycopg.Connection:
    try:
        return psycopg.connect(conninfo(settings), autocommit=True)
    except psycopg.OperationalError as exc:
        raise store.IndexUnavailable(
            f"the audit witness {DATABASE!r} is unreachable ({exc}); `govsync up` creates it"
        ) from exc


def testify(conn: psycopg.Connection, topic: str, checkpoints: Iterable[Checkpoint]) -> None:
    """Record checkpoints of ``topic`` first seen now; ones seen before keep their row."""
    conn.cursor().executemany(
        'INSERT INTO checkpoint (topic, partition, seq, "offset", sha256)'
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        [(topic, partition, seq, offset, sha) for partition, seq, offset, sha in checkpoints],
    )


def witnessed(settings: Settings, topic: str) -> dict[int, dict[int, str]]:
    """Partition -> seq -> the checkpoint's hash as first seen (one row per 1,000 records,
    so a chain of 10 M records has 10,000)."""
    found: dict[int, dict[int, str]] = {}
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT partition, seq, sha256 FROM checkpoint WHERE topic = %s", (topic,)
        )
        for partition, seq, sha in rows:
            found.setdefault(partition, {})[seq] = sha
    return found


def forget(settings: Settings, topic: str) -> None:
    """Drop a scratch topic's testimony (tests and benchmarks; never the live trail's)."""
    with connect(settings) as conn:
        conn.execute("DELETE FROM checkpoint WHERE topic = %s", (topic,))
