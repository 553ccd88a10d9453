"""The subscriber SDK: what a department imports to receive its deliveries.

A department writes one handler per delivery topic: given a connection to its own
database (inside a transaction) and a typed ``Delivery``, change its tables; raise
``Rejected(reason)`` to refuse the change on business grounds. The SDK guarantees:

- Its own credentials: it consumes the department's delivery topics as the department's
  Kafka principal, in consumer group ``<department>-sink``, reading committed records only.
- Typed deliveries: each Avro record, decoded by its writer schema from the registry,
  becomes a ``Delivery`` that also says where it came from (topic, partition, offset,
  traceparent).
- Once per event_id: each change is applied in one transaction together with a row in
  ``govsync_inbox`` keyed by event_id, so a redelivered or replayed change is recognised
  and never applied twice. A refused change (``Rejected``, or a constraint or value the
  database refuses) leaves no partial writes and is recorded as ``rejected`` with its reason.
- Receipts after commit: after the database commit the sink answers on ``govsync.receipts``
  (applied, or rejected with the reason), at least once.
- Offsets after receipts: offsets are committed only once Kafka has the receipts; a crash
  re-reads, the inbox absorbs the repeat.

Usage (connectors/sinks/tax.py and the other reference sinks are complete examples)::

    import psycopg
    from connectors.subscriber import Delivery, Rejected, Subscriber
    from streams.config.settings import Settings

    def apply_enterprise(conn: psycopg.Connection, delivery: Delivery) -> None:
        if delivery.after is None or not delivery.after.get("name"):
            raise Rejected("a taxpayer needs a name")
        conn.execute("UPDATE taxpayer SET name = %s WHERE uscc = %s",
                     (delivery.after["name"], delivery.key))

    Subscriber(Settings.from_env(), "tax", {"deliver.tax.enterprise": apply_enterprise}).run()
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
from pydantic import BaseModel, ConfigDict

from streams.config.settings import Settings
from streams.contract import headers, signatures
from streams.contract.headers import as_dict
from streams.contract.schemas import receipt_schema
from streams.contract.topics import RECEIPTS_TOPIC, sink_group
from streams.kafka import clients
from streams.kafka.serde import ValueDeserializer, ValueSerializer, registry_client

log = logging.getLogger("govsync.sink")

BATCH = 500
# How long a batch waits to fill: under load every batch waits this long, which the
# receipt's latency pays (0.5 s made receipts about 1.2 s later than their deliveries).
POLL_S = 0.1

Outcome = Literal["applied", "rejected", "duplicate"]


class Delivery(BaseModel):
    """One change as the department's subscription delivers it (``delivery_schema``: only
    the subscription's fields, masked as it says), and the record it was read from."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    # One of ChangeKind; plain text so a kind added to the schema later cannot stop an
    # older subscriber: its handlers see it and decide.
    kind: str
    entity: str
    key: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    changed_fields: list[str]
    source: str
    source_ts_ms: int
    source_position: str
    subscription: str
    topic: str
    partition: int
    offset: int
    traceparent: str | None = None

    @classmethod
    def from_message(cls, value: Mapping[str, Any], message: Message) -> Delivery:
        """The decoded Avro ``value`` of ``message``, with the record's position and trace."""
        return cls.model_validate(
            {
                **value,
                "topic": message.topic(),
                "partition": message.partition(),
                "offset": message.offset(),
                "traceparent": as_dict(message.headers()).get("traceparent"),
            }
        )


class Rejected(Exception):
    """Raised by a handler to refuse a delivery on business grounds.

    Whatever the handler wrote is undone; the inbox records the delivery as ``rejected``
    with ``reason``, the receipt carries it, and the deliveries after it still apply.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Handler = Callable[[psycopg.Connection, Delivery], None]

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


def apply_once(conn: psycopg.Connection, delivery: Delivery, handler: Handler) -> Outcome:
    """Record the event_id and apply the delivery, inside the caller's transaction.

    A delivery the department refuses (``Rejected``) or its data cannot take (a
    constraint or a value its schema refuses) is recorded as ``rejected`` with the reason
    instead of stopping the sink: it stays visible in the inbox and the deliveries after
    it still apply. Connection and server failures are not rejections; they propagate.
    """
    inserted = conn.execute(
        "INSERT INTO govsync_inbox"
        " (event_id, kind, entity_key, topic, kafka_partition, kafka_offset)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
        (
            delivery.event_id,
            delivery.kind,
            delivery.key,
            delivery.topic,
            delivery.partition,
            delivery.offset,
        ),
    ).rowcount
    if inserted == 0:
        return "duplicate"
    try:
        with conn.transaction():  # a savepoint: a rejected change leaves no partial writes
            handler(conn, delivery)
    except Rejected as exc:
        reason = exc.reason
    except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
        reason = " ".join(str(exc).split())
    else:
        return "applied"
    conn.execute(
        "UPDATE govsync_inbox SET outcome = 'rejected', reason = %s WHERE event_id = %s",
        (reason, delivery.event_id),
    )
    return "rejected"


Recorded = tuple[str, str | None, datetime]
"""What the inbox holds for an event_id: outcome, reason, applied_at."""
Applied = tuple[Delivery, Outcome, Recorded]


class Refused(Exception):
    """A delivery of a batch applied together was refused; the batch must be undone."""


def apply_together(
    conn: psycopg.Connection, deliveries: list[Delivery], handlers: Mapping[str, Handler]
) -> list[Applied]:
    """Apply ``deliveries`` in the caller's transaction, in order, each event_id once:
    one inbox insert for all of them, and the handlers' statements pipelined, without a
    savepoint each (which cost two round trips a delivery). Raises ``Refused`` if one is
    refused (``Rejected``, or a value or constraint the database refuses); the caller
    rolls back and applies them one by one with :func:`apply_once`. So a handler may
    run twice for one delivery, the first time undone: its effects belong in the
    transaction."""
    rows = [(d.event_id, d.kind, d.key, d.topic, d.partition, d.offset) for d in deliveries]
    columns = [list(column) for column in zip(*rows, strict=True)]
    new = dict(
        conn.execute(
            "INSERT INTO govsync_inbox"
            " (event_id, kind, entity_key, topic, kafka_partition, kafka_offset)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::integer[], %s::bigint[])"
            " ON CONFLICT (event_id) DO NOTHING RETURNING event_id, applied_at",
            columns,
        ).fetchall()
    )
    outcomes: list[Outcome] = []
    applied: set[str] = set()
    try:
        with conn.pipeline():
            for delivery in deliveries:
                if delivery.event_id in new and delivery.event_id not in applied:
                    handlers[delivery.topic](conn, delivery)
                    applied.add(delivery.event_id)
                    outcomes.append("applied")
                else:
                    outcomes.append("duplicate")
    except (Rejected, psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
        raise Refused(str(exc)) from exc
    earlier = recorded(conn, [d.event_id for d in deliveries if d.event_id not in new])
    return [
        (
            delivery,
            outcome,
            earlier.get(delivery.event_id) or ("applied", None, new[delivery.event_id]),
        )
        for delivery, outcome in zip(deliveries, outcomes, strict=True)
    ]


def apply_batch(
    conn: psycopg.Connection, deliveries: list[Delivery], handlers: Mapping[str, Handler]
) -> list[Applied]:
    """Apply ``deliveries`` in one database transaction of their own, in order, each
    event_id once: together (:func:`apply_together`) and, if one of them is refused, again
    one by one, so only the refused ones are left out."""
    try:
        with conn.transaction():
            return apply_together(conn, deliveries, handlers)
    except Refused:
        pass
    with conn.transaction():
        outcomes = [apply_once(conn, d, handlers[d.topic]) for d in deliveries]
        inbox = recorded(conn, [d.event_id for d in deliveries])
    return [
        (d, outcome, inbox[d.event_id]) for d, outcome in zip(deliveries, outcomes, strict=True)
    ]


def recorded(conn: psycopg.Connection, event_ids: list[str]) -> dict[str, Recorded]:
    """What the inbox says of each event_id."""
    if not event_ids:
        return {}
    rows = conn.execute(
        "SELECT event_id, outcome, reason, applied_at FROM govsync_inbox WHERE event_id = ANY(%s)",
        (event_ids,),
    ).fetchall()
    return {event_id: (outcome, reason, at) for event_id, outcome, reason, at in rows}


class Subscriber:
    """A department's sink: its handlers, topic -> how one delivery changes its tables."""

    def __init__(
        self, settings: Settings, department: str, handlers: Mapping[str, Handler]
    ) -> None:
        self._settings = settings
        self._department = department
        self._handlers = dict(handlers)
        self._group = sink_group(department)  # within the department's ACL: <department>-*

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume until ``stop`` is set (or SIGTERM/SIGINT when run as a process)."""
        stop = stop or _stop_on_signals()
        deserialize = ValueDeserializer(registry_client(self._settings, self._department))
        membership = _Membership(
            AdminClient(clients.config(self._settings.bootstrap, self._department)), self._group
        )
        consumer = self._subscribed()
        receipts = Receipts(self._settings, self._department)
        with psycopg.connect(self._settings.pg_conninfo(self._department)) as conn:
            conn.execute(INBOX_DDL)
            conn.commit()
            log.info("%s sink consuming %s", self._department, ", ".join(sorted(self._handlers)))
            while not stop.is_set():
                # A batch is what arrived within POLL_S: one database commit for all of it.
                messages = consumer.consume(num_messages=BATCH, timeout=POLL_S)
                if self._apply(conn, deserialize, messages, receipts):
                    receipts.flush(stop)  # receipts out before the offsets move on
                    _commit(consumer)
                if not messages and membership.lost(consumer):
                    log.warning(
                        "the broker dropped this consumer from group %s and it did not rejoin;"
                        " reconnecting",
                        self._group,
                    )
                    consumer.close()
                    consumer = self._subscribed()
        consumer.close()

    def _subscribed(self) -> Consumer:
        consumer = Consumer(
            clients.config(
                self._settings.bootstrap,
                self._department,
                **{
                    "group.id": self._group,
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                },
            )
        )
        consumer.subscribe(sorted(self._handlers))
        return consumer

    def _apply(
        self,
        conn: psycopg.Connection,
        deserialize: ValueDeserializer,
        messages: list[Message],
        receipts: Receipts,
    ) -> bool:
        """Apply a batch of deliveries in one database transaction, then send their
        receipts; whether any record was handled. One commit per batch, not per delivery:
        the commit's flush to disk is most of what a delivery costs the database."""
        deliveries, handled = [], False
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", error)
                continue
            handled = True
            value = deserialize(message.topic(), message.value())
            if value is not None:
                deliveries.append(Delivery.from_message(value, message))
        if not deliveries:
            return handled
        done = apply_batch(conn, deliveries, self._handlers)
        for delivery, outcome, (recorded, reason, applied_at) in done:
            receipts.send(delivery, recorded, reason, applied_at)
            log.log(
                logging.WARNING if outcome == "rejected" else logging.INFO,
                "%s %s %s event_id=%s traceparent=%s",
                outcome,
                delivery.kind,
                delivery.key,
                delivery.event_id,
                delivery.traceparent,
            )
        return handled


class _Membership:
    """Notices a consumer the group no longer counts as a member.

    After a broker restart an idle librdkafka consumer was seen to stop heartbeating
    without noticing: the coordinator expired it and the sink sat unassigned, its
    deliveries unapplied, with no error reported. So an idle sink asks the coordinator,
    at most every CHECK_INTERVAL_S, and only twice-confirmed absence counts (a
    rebalance in progress can hide a member for a moment).

    Known limit: librdkafka aborts the process when the broker drops the connection while
    that request is in flight (confluentinc/librdkafka #4605, fix proposed in #5397, both
    open), so a broker stopping at that moment ends the sink and its supervisor starts it
    again (the inbox makes the re-read harmless). Asking seldom keeps that rare.
    """

    CHECK_INTERVAL_S = 60.0
    QUIET_AFTER_OUTAGE_S = 60.0

    def __init__(self, admin: AdminClient, group: str) -> None:
        self._admin = admin
        self._group = group
        self._next = time.monotonic() + self.CHECK_INTERVAL_S
        self._absent = 0

    def lost(self, consumer: Consumer) -> bool:
        if time.monotonic() < self._next:
            return False
        if clients.broker_down_within(self.QUIET_AFTER_OUTAGE_S):
            # An admin request timing out while brokers come back has aborted the process
            # inside librdkafka (rd_kafka_enq_once_del_source_return: refcnt assertion);
            # a membership check can wait until the brokers have been back a while.
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


class Receipts:
    """The department's answers on ``govsync.receipts``, one per delivery handled, each
    signed with the department's receipt key (streams/contract/signatures.py).

    Sent after the database commit, as the inbox recorded it, and again when a delivery
    comes back as a duplicate (the first receipt may have been lost in a crash between
    the commit and the send): receipts are at least once, keyed and identified by event_id.
    """

    def __init__(self, settings: Settings, department: str) -> None:
        self._department = department
        self._key = signatures.receipt_key(settings.path("secrets"), department)
        self._producer = Producer(
            clients.config(
                settings.bootstrap, department, **{"enable.idempotence": True, "linger.ms": 20}
            )
        )
        self._serialize = ValueSerializer(
            registry_client(settings, department), RECEIPTS_TOPIC, receipt_schema()
        )

    def send(
        self, delivery: Delivery, outcome: str, reason: str | None, applied_at: datetime
    ) -> None:
        receipt = {
            "event_id": delivery.event_id,
            "subscription": delivery.subscription,
            "department": self._department,
            "entity_key": delivery.key,
            "outcome": outcome,
            "reason": reason,
            "topic": delivery.topic,
            "partition": delivery.partition,
            "offset": delivery.offset,
            "applied_at_ms": int(applied_at.timestamp() * 1000),
        }
        value = self._serialize(receipt)
        self._producer.produce(
            RECEIPTS_TOPIC,
            key=delivery.event_id.encode(),
            value=value,
            headers=[
                (signatures.SIGNATURE_HEADER, signatures.sign(self._key, value)),
                ("event_id", delivery.event_id.encode()),
                (
                    "traceparent",
                    headers.traceparent(
                        delivery.event_id, f"receipt/{delivery.subscription}"
                    ).encode(),
                ),
                ("source_ts", str(delivery.source_ts_ms).encode()),  # the commit, for traces
            ],
        )

    def flush(self, stop: threading.Event) -> None:
        """Until Kafka has every receipt: a broker restart can take longer than any fixed
        wait, and the offsets must not move on before the receipts are out. Stopping
        meanwhile is safe: the offsets stay, the deliveries are read again, the inbox
        recognises them and the receipts are sent again."""
        while left := self._producer.flush(30):
            log.warning("%d receipts waiting for Kafka", left)
            if stop.is_set():
                raise RuntimeError(f"stopping with {left} receipts not acknowledged by Kafka")


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
