"""One real stack for the whole session: started here, or reused when already up.

Nothing is mocked: PostgreSQL, Kafka, Connect with Debezium, Apicurio and the
worker are the real processes. The stack is left running afterwards (`make down` or
CI's exit trap stops it) so that a second run starts in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest

from connectors.sinks import SINKS, process_name
from govsync.stack import embedded
from govsync.stack.background import start_app_process, start_worker
from streams.config.settings import Settings
from streams.contract.topics import changes_topic
from streams.kafka import topic_reader
from streams.kafka.serde import ValueDeserializer, registry_client
from streams.model.topology import Topology, load_topology

pytestmark = pytest.mark.stack


@dataclass(frozen=True)
class Stack:
    settings: Settings
    topology: Topology
    decode: ValueDeserializer

    def sql(self, database: str, statement: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.settings.pg_conninfo(database)) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def offsets(self, *topics: str) -> topic_reader.Offsets:
        return topic_reader.end_offsets(self.settings.bootstrap, topics)

    def read_until(
        self,
        start: topic_reader.Offsets,
        done: Callable[[list[topic_reader.Record]], bool],
        timeout: float = 60.0,
    ) -> list[topic_reader.Record]:
        records = list(
            topic_reader.read(
                self.settings.bootstrap, self.decode, start, until=done, timeout=timeout
            )
        )
        assert done(records), f"timed out after {timeout}s; read {len(records)} records"
        return records

    def read_all(self, *topics: str) -> list[topic_reader.Record]:
        start = topic_reader.beginning(self.settings.bootstrap, topics)
        return list(topic_reader.read(self.settings.bootstrap, self.decode, start, timeout=120))


def _wait_for_snapshot(stack: Stack, timeout: float = 240.0) -> None:
    """Ready once every seeded enterprise has been normalized onto changes.enterprise."""
    seeded = stack.sql("market_regulation", "SELECT count(*) FROM enterprise")[0][0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ends = topic_reader.end_offsets(stack.settings.bootstrap, [changes_topic("enterprise")])
        if sum(ends.values()) >= seeded:
            return
        time.sleep(1)
    raise AssertionError(
        f"the initial snapshot of {seeded} enterprises did not arrive in {timeout}s"
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    settings = Settings.from_env()
    embedded.up(settings)
    topology = load_topology(settings.topology)
    # This one-machine node holds every key: the suite applies as the data authority.
    embedded.apply_topology(
        topology, settings, settings.topology.read_text(encoding="utf-8"), as_authority=True
    )
    start_worker(settings)
    for department in SINKS:
        start_app_process(settings, process_name(department), ["sink", department])
    result = Stack(settings, topology, ValueDeserializer(registry_client(settings)))
    _wait_for_snapshot(result)
    yield result


LOG_TAIL_LINES = 40


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries the end of each worker's log, this stack's and any
    other node's (a standby, a federation peer): CI keeps only the report, and a pipeline
    failure is usually told there, not in the assertion."""
    report = yield
    if report.when == "call" and report.failed:
        state = Settings.from_env().state_dir
        logs = [*state.glob("logs/worker-*.log"), *state.glob("nodes/*/logs/worker-*.log")]
        for log in sorted(logs):
            lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
            tail = "\n".join(line[:400] for line in lines[-LOG_TAIL_LINES:])
            report.sections.append((f"end of {log.relative_to(state)}", tail))
    return report
