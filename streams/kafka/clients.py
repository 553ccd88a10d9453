"""Kafka client configuration shared by every govsync producer and consumer.

Every client authenticates with SASL/SCRAM as the process's principal (or the one asked
for), see streams/kafka/credentials.py.

librdkafka logs each failed reconnect while a broker restarts (twenty lines a second
per client); errors are instead reported through ``error_cb``, at most once per
interval for each kind, so a restart reads as a few lines, not thousands.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError

from streams.config.settings import Settings
from streams.kafka import credentials

log = logging.getLogger("govsync.kafka")

ERROR_LOG_INTERVAL_S = 30.0
_last_logged: dict[tuple[str, int], float] = {}


_BROKER_DOWN = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}
_last_broker_down = -float("inf")


def broker_down_within(seconds: float) -> bool:
    """Whether any client of this process saw the brokers go away that recently."""
    return time.monotonic() - _last_broker_down < seconds


def _report(error: KafkaError) -> None:
    global _last_broker_down
    kind = (error.name(), error.code())
    now = time.monotonic()
    if error.code() in _BROKER_DOWN:
        _last_broker_down = now
    if now - _last_logged.get(kind, -ERROR_LOG_INTERVAL_S) >= ERROR_LOG_INTERVAL_S:
        _last_logged[kind] = now
        log.warning("kafka client: %s", error.str())


def config(bootstrap: str, principal: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "log_level": 2,
        "error_cb": _report,
        # librdkafka backs off reconnects up to 10 s by default, so a client could notice a
        # restarted broker 10 s late; 1 s costs one connection attempt a second per broker
        # while it is down (Java clients' default too).
        "reconnect.backoff.max.ms": 1000,
        **credentials.librdkafka(Settings.from_env(), principal),
        **extra,
    }
