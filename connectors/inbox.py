"""What every reference department sink shares: consume its delivery topics, apply each
change to the department's database exactly once.

Each change is applied in one transaction together with a row in ``govsync_inbox`` keyed
by event_id, so a redelivered or replayed change is recognised and never applied twice.
Offsets are committed only after the database commit: a crash re-reads, the inbox
absorbs the repeat. After each commit the sink answers on ``govsync.receipts``
(applied, or rejected with the reason). A department sink is then only its handlers:
topic -> how one delivery changes its tables.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from streams import clients, headers
from streams.access import RECEIPTS_TOPIC
from streams.headers import as_dict
from streams.schemas import receipt_schema
from streams.serde import ValueDeserializer, ValueSerializer, registry_client
from streams.settings import Settings

log = logging.getLogger("govsync.sink")

Outcome = Literal["applied", "rejected", "duplicate"]
Handler = Callable[[psycopg.Connection, dict[str, Any]], None]

INBOX_DDL = """
CREATE TABLE IF NOT EXISTS govsync_inbox (
    event_id   text PRIMARY KEY,
    kind       text NOT NULL,
    entity_key text NOT NULL,
    topic      text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE govsync_inbox ADD COLUMN IF NOT EXISTS outcome text NOT NULL DEFAULT 'applied';
ALTER TABLE govsync_inbox ADD COLUMN IF NOT EXISTS reason text
"""


def apply_once(
    conn: psycopg.Connection,
    topic: str,
    delivery: dict[str, Any],
    handler: Handler,
    *,
    partition: int,
    offset: int,
) -> Outcome:
    """Record the event_id and apply the delivery, inside the caller's transaction.

    A delivery the department's data cannot take (a constraint or a value its schema
    refuses) is recorded as ``rejected`` with the database's reason instead of stopping
    the sink: it stays visible in the inbox and the deliveries after it still apply.
    Connection and server failures are not rejections; they propagate.
    """
    inserted = conn.execute(
        "INSERT INTO govsync_inbox"
        " (event_id, kind, entity_key, topic, kafka_partition, kafka_offset)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
        (delivery["event_id"], delivery["kind"], delivery["key"], topic, partition, offset),
    ).rowcount
    if inserted == 0:
        return "duplicate"
    try:
        with conn.transaction():  # a savepoint: a rejected change leaves no partial writes
            handler(conn, delivery)
    except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
        conn.execute(
            "UPDATE govsync_inbox SET outcome = 'rejected', reason = %s WHERE event_id = %s",
            (" ".join(str(exc).split()), delivery["event_id"]),
        )
        return "rejected"
    return "applied"


def run(
    settings: Settings,
    department: str,
    handlers: Mapping[str, Handler],
    stop: threading.Event | None = None,
) -> None:
    """Consume until ``stop`` is set (or SIGTERM/SIGINT when run as a process)."""
    stop = stop or _stop_on_signals()
    deserialize = ValueDeserializer(registry_client(settings))
    group = f"{department}-sink"  # within the department's ACL: groups <department>-*
    membership = _Membership(AdminClient(clients.config(settings.bootstrap)), group)
    consumer = _subscribed(settings, group, handlers)
    receipts = Receipts(settings, department)
    with psycopg.connect(settings.pg_conninfo(department)) as conn:
        conn.execute(INBOX_DDL)
        conn.commit()
        log.info("%s sink consuming %s", department, ", ".join(sorted(handlers)))
        while not stop.is_set():
            messages = consumer.consume(num_messages=500, timeout=0.5)
            handled = [m for m in messages if _apply(conn, deserialize, handlers, m, receipts)]
            if handled:
                receipts.flush()  # receipts out before the offsets move on
                _commit(consumer)
            if not messages and membership.lost(consumer):
                log.warning(
                    "the broker dropped this consumer from group %s and it did not rejoin;"
                    " reconnecting",
                    group,
                )
                consumer.close()
                consumer = _subscribed(settings, group, handlers)
    consumer.close()


def _subscribed(settings: Settings, group: str, handlers: Mapping[str, Handler]) -> Consumer:
    consumer = Consumer(
        clients.config(
            settings.bootstrap,
            **{
                "group.id": group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )
    consumer.subscribe(sorted(handlers))
    return consumer


class _Membership:
    """Notices a consumer the group no longer counts as a member.

    After a broker restart an idle librdkafka consumer was seen to stop heartbeating
    without noticing: the coordinator expired it and the sink sat unassigned, its
    deliveries unapplied, with no error reported. So an idle sink asks the coordinator,
    at most every CHECK_INTERVAL_S, and only twice-confirmed absence counts (a
    rebalance in progress can hide a member for a moment).
    """

    CHECK_INTERVAL_S = 15.0

    def __init__(self, admin: AdminClient, group: str) -> None:
        self._admin = admin
        self._group = group
        self._next = time.monotonic() + self.CHECK_INTERVAL_S
        self._absent = 0

    def lost(self, consumer: Consumer) -> bool:
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self.CHECK_INTERVAL_S
        try:
            description = self._admin.describe_consumer_groups([self._group])[self._group].result(
                timeout=5
            )
        except (KafkaException, TimeoutError):
            return False  # the broker is unreachable: nothing to conclude
        members = {member.member_id for member in description.members}
        self._absent = 0 if consumer.memberid() in members else self._absent + 1
        if self._absent >= 2:
            self._absent = 0
            return True
        return False


def _apply(
    conn: psycopg.Connection,
    deserialize: ValueDeserializer,
    handlers: Mapping[str, Handler],
    message: Message,
    receipts: Receipts,
) -> bool:
    error = message.error()
    if error is not None:
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", error)
        return False
    delivery = deserialize(message.topic(), message.value())
    if delivery is None:
        return True
    with conn.transaction():
        outcome = apply_once(
            conn,
            message.topic(),
            delivery,
            handlers[message.topic()],
            partition=message.partition(),
            offset=message.offset(),
        )
        recorded = conn.execute(
            "SELECT outcome, reason, applied_at FROM govsync_inbox WHERE event_id = %s",
            (delivery["event_id"],),
        ).fetchone()
    assert recorded is not None
    receipts.send(delivery, message, recorded[0], recorded[1], recorded[2])
    log.log(
        logging.WARNING if outcome == "rejected" else logging.INFO,
        "%s %s %s event_id=%s traceparent=%s",
        outcome,
        delivery["kind"],
        delivery["key"],
        delivery["event_id"],
        as_dict(message.headers()).get("traceparent"),
    )
    return True


class Receipts:
    """The department's answers on ``govsync.receipts``, one per delivery handled.

    Sent after the database commit, as the inbox recorded it, and again when a delivery
    comes back as a duplicate (the first receipt may have been lost in a crash between
    the commit and the send): receipts are at least once, keyed and identified by event_id.
    """

    def __init__(self, settings: Settings, department: str) -> None:
        self._department = department
        self._producer = Producer(
            clients.config(settings.bootstrap, **{"enable.idempotence": True, "linger.ms": 20})
        )
        self._serialize = ValueSerializer(
            registry_client(settings), RECEIPTS_TOPIC, receipt_schema()
        )

    def send(
        self,
        delivery: dict[str, Any],
        message: Message,
        outcome: str,
        reason: str | None,
        applied_at: datetime,
    ) -> None:
        receipt = {
            "event_id": delivery["event_id"],
            "subscription": delivery["subscription"],
            "department": self._department,
            "entity_key": delivery["key"],
            "outcome": outcome,
            "reason": reason,
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "applied_at_ms": int(applied_at.timestamp() * 1000),
        }
        self._producer.produce(
            RECEIPTS_TOPIC,
            key=delivery["event_id"].encode(),
            value=self._serialize(receipt),
            headers=[
                ("event_id", delivery["event_id"].encode()),
                (
                    "traceparent",
                    headers.traceparent(
                        delivery["event_id"], f"receipt/{delivery['subscription']}"
                    ).encode(),
                ),
            ],
        )

    def flush(self) -> None:
        left = self._producer.flush(30)
        if left:
            raise RuntimeError(f"{left} receipts not acknowledged by Kafka within 30s")


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
