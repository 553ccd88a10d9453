"""The data authority's audit questions over HTTP: who received an entity's data, and where
a change went. The same answers as `govsync audit who-received` and `govsync trace`, from
the same index, but from a resident process: a command pays a process start, its imports
and a Kafka login (about 650 ms, bench/cli.py) for a lookup of a few milliseconds.

Only the topology's data authority (数据资源局) may ask: the answers name every department
that received a person's data. Each question goes on the audit trail itself, as a query
record whose ``reason`` names the question, so it is never counted as a reception.
"""

from __future__ import annotations

import logging
import time

import psycopg
from confluent_kafka import Consumer, KafkaException
from pydantic import BaseModel

from govsync.index import queries
from govsync.index.freshness import wait_for
from streams.config.settings import Settings
from streams.kafka import topic_reader
from streams.kafka.admin import BrokerUnreachable
from streams.model.topology import Topology
from streams.trail import lineage
from streams.trail.audit import Received, who_received

log = logging.getLogger("govsync.api")

WHO_RECEIVED, TRACE = "who-received", "trace"
# With ``fresh``, a question waits this long for the index to reflect what the trail held
# when it was asked; past that it answers as the index stands. Without it, it answers at
# once: under a steady flow the trail always holds records the indexer is about to write
# (each question adds one), and waiting for them costs the indexer's latency, about
# 0.2-0.6 s here, on every question.
FRESH_WITHIN_S = 2.0


class WhoReceived(BaseModel):
    key: str
    # Trail records committed when asked that the answer may not reflect (None: Kafka did
    # not say).
    index_lacking: int | None
    received: list[Received]  # newest first, as `govsync audit who-received --json`


class Traces(BaseModel):
    query: str
    index_lacking: int | None
    traces: list[lineage.Trace]  # as `govsync trace --json`


class Freshness:
    """The index's freshness check with one resident consumer for the trail's watermarks,
    shared by the questions in flight (librdkafka's metadata and watermark queries are
    thread-safe, so a ``fresh`` question's wait holds up no other)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: Consumer = topic_reader.reader(settings.bootstrap)

    def wait(self, conn: psycopg.Connection, fresh: bool) -> int | None:
        """Trail records the index lacks (see wait_for), after waiting for them only when
        ``fresh``. None when Kafka does not answer: the index still does, and says so."""
        timeout = FRESH_WITHIN_S if fresh else 0
        try:
            return wait_for(self._settings, conn, timeout, consumer=self._consumer)
        except (BrokerUnreachable, KafkaException) as exc:
            log.warning("the trail's ends are unknown, answering from the index: %s", exc)
            return None

    def close(self) -> None:
        self._consumer.close()


def received(conn: psycopg.Connection, freshness: Freshness, key: str, fresh: bool) -> WhoReceived:
    lacking = freshness.wait(conn, fresh)
    found = who_received(queries.audit_entries(conn, key), key)
    return WhoReceived(key=key, index_lacking=lacking, received=found)


def traced(
    conn: psycopg.Connection, freshness: Freshness, query: str, topology: Topology, fresh: bool
) -> Traces:
    lacking = freshness.wait(conn, fresh)
    hops = queries.hops(conn, query)
    found = lineage.traces(hops, query, topology, int(time.time() * 1000))
    return Traces(query=query, index_lacking=lacking, traces=found)
