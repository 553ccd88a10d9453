"""The source databases share one PostgreSQL cluster, so one WAL: a quiet source's
replication slot must not hold on to the WAL the busy databases write (it held 24 GB in
a day before Debezium's driver keepalive flush was turned on, until the disk filled)."""

from __future__ import annotations

import time

from tests.integration.conftest import Stack

SLOTS_PASS_WITHIN_S = 120.0


def test_every_slot_moves_past_wal_written_elsewhere(stack: Stack) -> None:
    # About 30 MB of WAL in a database no connector captures.
    stack.sql("postgres", "CREATE TABLE IF NOT EXISTS wal_probe (n integer, pad text)")
    stack.sql(
        "postgres",
        "INSERT INTO wal_probe SELECT n, repeat('x', 200) FROM generate_series(1, 100000) n",
    )
    stack.sql("postgres", "DROP TABLE wal_probe")
    [(written,)] = stack.sql("postgres", "SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + SLOTS_PASS_WITHIN_S
    while True:
        behind = stack.sql(
            "postgres",
            "SELECT slot_name, confirmed_flush_lsn::text FROM pg_replication_slots"
            " WHERE slot_name LIKE 'govsync_%%' AND confirmed_flush_lsn < %s::pg_lsn",
            (written,),
        )
        if not behind or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert stack.sql("postgres", "SELECT count(*) FROM pg_replication_slots")[0][0] > 0
    assert behind == [], f"slots still before {written}: {behind}"
