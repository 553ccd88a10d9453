"""Every look-up goes on the audit trail before it is answered: the API writes a
``QueryRecord`` to ``govsync.queries`` (idempotent producer, acks from all replicas) and
waits for Kafka to confirm it; the ledger chains it into ``govsync.audit``. A look-up whose
record Kafka does not confirm is not answered (503): the trail never misses a question
that got an answer.
"""

from __future__ import annotations

import threading

from confluent_kafka import KafkaError, Message, Producer

from streams.contract.records import QueryRecord
from streams.contract.topics import QUERIES_TOPIC
from streams.kafka import clients

CONFIRM_WITHIN_S = 5.0


class NotRecorded(RuntimeError):
    """Kafka did not confirm a query record in time."""


class QueryRecorder:
    def __init__(self, bootstrap: str) -> None:
        self._producer = Producer(
            clients.config(bootstrap, **{"enable.idempotence": True, "acks": "all", "linger.ms": 2})
        )
        self._stop = threading.Event()
        # Delivery callbacks run in poll(): one thread serves them for every request.
        self._poller = threading.Thread(target=self._poll, name="query-records", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def record(self, records: list[QueryRecord], timeout: float = CONFIRM_WITHIN_S) -> None:
        """Write ``records`` and wait until Kafka confirmed every one; NotRecorded if not."""
        if not records:
            return
        left = len(records)
        done = threading.Event()
        failed: list[str] = []
        lock = threading.Lock()

        def confirmed(error: KafkaError | None, _: Message) -> None:
            nonlocal left
            with lock:
                if error is not None:
                    failed.append(error.str())
                left -= 1
                if left == 0:
                    done.set()

        for record in records:
            self._producer.produce(
                QUERIES_TOPIC,
                record.model_dump_json().encode(),
                record.entity_key.encode(),
                on_delivery=confirmed,
            )
        if not done.wait(timeout) or failed:
            raise NotRecorded(
                f"the audit trail did not confirm {len(records)} query record(s): "
                + (failed[0] if failed else f"no answer from Kafka within {timeout:g} s")
            )

    def close(self) -> None:
        self._stop.set()
        self._poller.join(5)
        self._producer.flush(10)
