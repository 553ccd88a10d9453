"""The reference department sink: ``deliver.tax.enterprise`` -> the tax bureau's database.

A deregistered company's taxpayer row is marked deregistered and its pending tax
reminders are cancelled — the headline scenario closes in a real database.

Each change is applied in one transaction together with a row in ``govsync_inbox``
keyed by event_id, so a redelivered or replayed change is recognised and never applied
twice. Offsets are committed only after the database commit: a crash re-reads, the
inbox absorbs the repeat.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Literal

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from streams import clients
from streams.headers import as_dict
from streams.serde import ValueDeserializer, registry_client
from streams.settings import Settings

TOPIC = "deliver.tax.enterprise"
GROUP = "tax-sink"
NEW_TAXPAYER_OFFICE = "待分配"  # assigned by the bureau after registration

log = logging.getLogger("govsync.tax_sink")

Outcome = Literal["applied", "duplicate"]

INBOX_DDL = """
CREATE TABLE IF NOT EXISTS govsync_inbox (
    event_id   text PRIMARY KEY,
    kind       text NOT NULL,
    entity_key text NOT NULL,
    topic      text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def apply_delivery(
    conn: psycopg.Connection, delivery: dict[str, Any], *, partition: int, offset: int
) -> Outcome:
    """Apply one delivery inside the caller's transaction; idempotent by event_id."""
    inserted = conn.execute(
        "INSERT INTO govsync_inbox"
        " (event_id, kind, entity_key, topic, kafka_partition, kafka_offset)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
        (delivery["event_id"], delivery["kind"], delivery["key"], TOPIC, partition, offset),
    ).rowcount
    if inserted == 0:
        return "duplicate"
    kind, uscc, after = delivery["kind"], delivery["key"], delivery["after"] or {}
    if kind == "deregistered":
        conn.execute(
            "UPDATE taxpayer SET status = 'deregistered',"
            " deregistered_at = to_timestamp(%s / 1000.0), updated_at = now() WHERE uscc = %s",
            (delivery["source_ts_ms"], uscc),
        )
        conn.execute(
            "UPDATE tax_reminder SET state = 'cancelled', cancelled_reason = %s, updated_at = now()"
            " WHERE uscc = %s AND state = 'pending'",
            (f"企业已注销 (event {delivery['event_id']})", uscc),
        )
    elif kind in ("registered", "snapshot", "updated") and after:
        conn.execute(
            "INSERT INTO taxpayer (uscc, name, status, tax_office, registered_on)"
            " VALUES (%(uscc)s, %(name)s, COALESCE(%(status)s, 'active'), %(office)s, current_date)"
            " ON CONFLICT (uscc) DO UPDATE SET"
            "  name = COALESCE(EXCLUDED.name, taxpayer.name),"
            "  status = COALESCE(%(status)s, taxpayer.status),"
            # A company back in business (e.g. a revoked deregistration) is no longer closed.
            "  deregistered_at = CASE WHEN COALESCE(%(status)s, taxpayer.status) = 'deregistered'"
            "    THEN taxpayer.deregistered_at END,"
            "  updated_at = now()",
            {
                "uscc": uscc,
                "name": after.get("name"),
                "status": after.get("status"),
                "office": NEW_TAXPAYER_OFFICE,
            },
        )
    # "deleted": the source row is gone; the bureau keeps its own records, the inbox notes it.
    return "applied"


def run(settings: Settings, stop: threading.Event | None = None) -> None:
    """Consume until ``stop`` is set (or SIGTERM/SIGINT when run as a process)."""
    stop = stop or _stop_on_signals()
    deserialize = ValueDeserializer(registry_client(settings.registry_url))
    consumer = Consumer(
        clients.config(
            settings.bootstrap,
            **{
                "group.id": GROUP,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )
    consumer.subscribe([TOPIC])
    with psycopg.connect(settings.pg_conninfo("tax")) as conn:
        conn.execute(INBOX_DDL)
        conn.commit()
        log.info("tax sink consuming %s", TOPIC)
        while not stop.is_set():
            messages = consumer.consume(num_messages=500, timeout=0.5)
            applied = [m for m in messages if _apply(conn, deserialize, m)]
            if applied:
                _commit(consumer)
    consumer.close()


def _apply(conn: psycopg.Connection, deserialize: ValueDeserializer, message: Message) -> bool:
    error = message.error()
    if error is not None:
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", error)
        return False
    delivery = deserialize(message.topic(), message.value())
    if delivery is None:
        return True
    with conn.transaction():
        outcome = apply_delivery(
            conn, delivery, partition=message.partition(), offset=message.offset()
        )
    log.info(
        "%s %s %s event_id=%s traceparent=%s",
        outcome,
        delivery["kind"],
        delivery["key"],
        delivery["event_id"],
        as_dict(message.headers()).get("traceparent"),
    )
    return True


def _commit(consumer: Consumer) -> None:
    """A failed offset commit is not fatal: the changes are in the database with their
    inbox rows, so a re-read after a restart is recognised and skipped."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        log.warning("offset commit failed (%s); will commit with the next batch", exc.args[0])


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
