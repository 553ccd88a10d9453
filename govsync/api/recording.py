"""Every look-up goes on the audit trail before it is answered: the API writes a
``QueryRecord`` to ``govsync.queries`` (idempotent producer, acks from all replicas) and
waits for Kafka to confirm it; the ledger chains it into ``govsync.audit``. Records carry
no key: look-ups need no order among themselves (each carries its time), and unkeyed
records fill one partition's batch at a time (librdkafka's sticky partitioner), so the
broker takes a request per batch of look-ups rather than one per look-up. A look-up whose
record Kafka does not confirm is not answered (503): the trail never misses a question
that got an answer.
"""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaError, Message, Producer

from streams.contract.records import QueryRecord
from streams.contract.topics import QUERIES_TOPIC
from streams.kafka import clients

CONFIRM_WITHIN_S = 5.0
POLL_S = 0.001


class NotRecorded(RuntimeError):
    """Kafka did not confirm a query record in time."""


class QueryRecorder:
    """Delivery reports are polled from the event loop itself, every millisecond while a
    record awaits one: no thread of its own, so no handing the GIL back and forth (a
    polling thread cost more CPU per look-up than everything else the API does)."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = Producer(
            clients.config(bootstrap, **{"enable.idempotence": True, "acks": "all", "linger.ms": 5})
        )
        self._awaiting = 0
        self._polling: asyncio.TimerHandle | None = None

    def _poll(self) -> None:
        self._polling = None
        self._producer.poll(0)  # runs the delivery callbacks here, in the loop's thread
        if self._awaiting:
            self._polling = asyncio.get_running_loop().call_later(POLL_S, self._poll)

    async def record(self, records: list[QueryRecord], timeout: float = CONFIRM_WITHIN_S) -> None:
        """Write ``records`` and wait until Kafka confirmed every one; NotRecorded if not."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        confirmed_all: asyncio.Future[str | None] = loop.create_future()
        left = len(records)
        failures: list[str] = []

        def confirmed(error: KafkaError | None, _: Message) -> None:
            nonlocal left
            self._awaiting -= 1
            if error is not None:
                failures.append(error.str())
            left -= 1
            if left == 0 and not confirmed_all.done():
                confirmed_all.set_result(failures[0] if failures else None)

        try:
            for record in records:
                self._producer.produce(
                    QUERIES_TOPIC, record.model_dump_json().encode(), on_delivery=confirmed
                )
                self._awaiting += 1
            if self._polling is None:
                self._polling = loop.call_later(POLL_S, self._poll)
            failure = await asyncio.wait_for(confirmed_all, timeout)
        except BufferError:
            failure = "the producer's queue is full"
        except TimeoutError:
            failure = f"no answer from Kafka within {timeout:g} s"
        if failure is not None:
            raise NotRecorded(
                f"the audit trail did not confirm {len(records)} query record(s): {failure}"
            )

    def close(self) -> None:
        if self._polling is not None:
            self._polling.cancel()
        self._producer.flush(10)
