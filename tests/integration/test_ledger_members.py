"""Several ledger members while a new subscription's delivery topic appears: each audit
chain keeps one writer (``govsync audit verify`` finds it intact) and every delivery is
in the trail exactly once.

Two ledger stages run here beside the worker's, as instances of their own. One refreshes
its metadata every 5 s like the worker's, the other only every minute, so for a while
the members disagree on whether the new topic exists: the range assignor then gives its
partitions to those who know it, whatever chains they write."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from govsync.stack import background
from streams.contract import signatures
from streams.contract.topics import AUDIT_TOPIC
from streams.engine.transactional import EngineConfig, Watchdog, run
from streams.kafka import credentials, topic_reader
from streams.kafka.serde import RegistryCodec, registry_client
from streams.stages.ledger import LedgerStage
from tests.integration.companies import govsync, insert, new_company
from tests.integration.conftest import Stack
from tests.integration.topologies import delete_topic, edited, with_subscription

pytestmark = pytest.mark.stack

DEPARTMENT, ENTITY = "district_services", "enterprise"
SUBSCRIPTION = f"{DEPARTMENT}.{ENTITY}"
TOPIC = f"deliver.{DEPARTMENT}.{ENTITY}"
COMPANIES = 24
NEW_SUBSCRIPTION = with_subscription(DEPARTMENT, ENTITY, "测试：新订阅的主题出现")


@pytest.fixture()
def new_topic(stack: Stack) -> None:
    """The subscription's topic gone, so the members see it appear. If an earlier run left
    it, the worker is restarted too: a consumer that saw a topic deleted and made again
    under the same name never fetches from the new one, and says nothing (librdkafka
    cannot tell the two apart; confluent-kafka-python #1787). govsync never deletes a
    delivery topic; only tests do."""
    if delete_topic(stack.settings, TOPIC):
        background.restart_worker(stack.settings, 0)


@pytest.fixture()
def members(stack: Stack, new_topic: None) -> Iterator[list[LedgerStage]]:
    """Two more ledger instances, running until the test ends."""
    settings = stack.settings
    topology = stack.topology
    stop = threading.Event()
    stages, threads = [], []
    for name, refresh_ms in (("a", 5000), ("b", 60000)):
        stage = LedgerStage(
            topology,
            RegistryCodec(registry_client(settings)),
            settings.bootstrap,
            topology.kafka.partitions,
            lambda department: signatures.receipt_key(settings.path("secrets"), department),
        )
        config = EngineConfig(
            bootstrap=settings.bootstrap,
            instance=f"test-{uuid.uuid4().hex[:6]}-{name}",
            principal=credentials.LEDGER,
            consumer={
                "partition.assignment.strategy": "range",
                "topic.metadata.refresh.interval.ms": refresh_ms,
            },
        )
        thread = threading.Thread(
            target=run, args=(stage, config, stop, Watchdog()), name=f"ledger-{name}"
        )
        thread.start()
        stages.append(stage)
        threads.append(thread)
    try:
        yield stages
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def _serving_new_subscription(stack: Stack, timeout: float = 120.0) -> None:
    """Returns once a probe company reaches the new topic.

    The worker takes an applied topology about a second after ``apply`` returns; a company
    inserted before that is rightly routed under the old one and never reaches the new
    subscription."""
    deadline, probes = time.monotonic() + timeout, set[str]()

    def reached(records: list[topic_reader.Record]) -> bool:
        return any(r.key in probes for r in records)

    while time.monotonic() < deadline:
        probe = new_company()
        insert(stack, probe)
        probes.add(probe.credit_code)
        start = topic_reader.beginning(stack.settings.bootstrap, [TOPIC])
        read = topic_reader.read(stack.settings.bootstrap, stack.decode, start, until=reached)
        if reached(list(read)):
            return
    raise AssertionError(f"no probe company reached {TOPIC} within {timeout}s of the apply")


def test_each_chain_has_one_writer_while_a_delivery_topic_appears(
    stack: Stack,
    members: list[LedgerStage],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="govsync.worker")
    audit_from = stack.offsets(AUDIT_TOPIC)
    try:
        applied = govsync(
            "topology", "apply", "--as-authority", "--file", str(edited(tmp_path, NEW_SUBSCRIPTION))
        )
        assert applied.returncode == 0, applied.stderr
        _serving_new_subscription(stack)
        companies = [new_company() for _ in range(COMPANIES)]
        for company in companies:  # spread over the time the members disagree
            insert(stack, company)
            threading.Event().wait(0.5)
        keys = {c.credit_code for c in companies}
        delivered = stack.read_until(
            topic_reader.beginning(stack.settings.bootstrap, [TOPIC]),
            lambda rs: keys <= {r.key for r in rs},
            timeout=600,  # the ledger may still be working off earlier tests' backlog
        )
        positions = {f"{TOPIC}[{r.partition}]@{r.offset}" for r in delivered}

        def audited(records: list[topic_reader.Record]) -> bool:
            return positions <= {
                r.value["detail"]["position"]
                for r in records
                if r.value
                and r.value["subscription"] == SUBSCRIPTION
                and r.value["kind"] == "delivery"  # not the authority's decision on it
            }

        trail = stack.read_until(audit_from, audited, timeout=600)
    finally:
        assert govsync("topology", "apply", "--as-authority").returncode == 0
    # Whether the members disagreed long enough for one to hold partitions: for the record.
    held = [r.getMessage() for r in caplog.records if "until the next rebalance" in r.getMessage()]

    times = Counter(
        r.value["detail"]["position"]
        for r in trail
        if r.value and r.value["subscription"] == SUBSCRIPTION and r.value["kind"] == "delivery"
    )
    assert set(times) == positions, held
    assert set(times.values()) == {1}, ([p for p, n in times.items() if n > 1], held)
    verified = govsync("audit", "verify", "--json")
    report = json.loads(verified.stdout)
    assert verified.returncode == 0 and report["intact"], (report, held)
