"""Scaling out under load on the real stack.

Three worker instances share the stages while 20,000 changes flow. During the load one
instance is ``kill -9``-ed (supervisord starts it again), a fourth is added, and a new
subscription is applied, so a delivery topic appears while four members of each group
rebalance. Then on every topic nothing is missing or doubled and each company's changes
are in commit order, the audit trail verifies, and every delivery to a department with a
sink has exactly one receipt in the trail.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from govsync.stack import background, supervision
from streams.contract.topics import TRACE_TOPIC
from streams.kafka import topic_reader
from tests.integration import load
from tests.integration.companies import SOCIAL, TAX, govsync
from tests.integration.conftest import Stack
from tests.integration.programs import kill_9
from tests.integration.topologies import delete_topic, edited, with_subscription

pytestmark = pytest.mark.stack

TOTAL = 20_000
COMPANIES = 200
RATE = 500.0  # changes/s committed: the load outlasts the apply and its settling
WORKERS = 3
KILL_AT, ADD_AT, APPLY_AT = 0.2, 0.4, 0.5
AFTER = 1_000  # changes made once the new subscription is surely in force
NEW = "public_security.enterprise"  # public security runs no sink: no receipts expected
NEW_TOPIC = "deliver.public_security.enterprise"
RECEIPTED = {TAX: "tax.enterprise", SOCIAL: "social_security.enterprise"}


@pytest.fixture()
def workers(stack: Stack) -> Iterator[None]:
    """Instances 0..WORKERS-1 running, none of which has seen the new subscription's topic
    (one deleted and made again under its name would go unread: test_ledger_members);
    afterwards only instance 0, as the other tests expect."""
    if delete_topic(stack.settings, NEW_TOPIC):
        background.restart_worker(stack.settings, 0)
    for instance in range(WORKERS):
        background.start_worker(stack.settings, instance)
    try:
        yield
    finally:
        for instance, program in background.worker_instances(stack.settings).items():
            if instance != 0:
                supervision.stop(stack.settings, program.name)
        background.start_worker(stack.settings, 0)


def test_three_workers_a_kill_a_fourth_and_a_new_topic_lose_and_double_nothing(
    stack: Stack, workers: None, tmp_path: Path
) -> None:
    new_topology = edited(tmp_path, with_subscription("public_security", "enterprise", "扩容测试"))
    usccs = load.prepare(stack, COMPANIES)
    run_id = f"scale-{uuid.uuid4().hex[:8]}"
    trace_from = stack.offsets(TRACE_TOPIC)
    thread = load.start_load(stack, usccs, TOTAL, run_id, rate=RATE)
    try:
        thread.progress.wait_for(KILL_AT)
        killed = kill_9(stack, background.worker_name(1), wait=False)
        thread.progress.wait_for(ADD_AT)
        added = background.add_worker(stack.settings)  # a fourth: the lowest id not configured
        assert added.instance >= WORKERS and added.pid is not None, added
        thread.progress.wait_for(APPLY_AT)
        applied = govsync("topology", "apply", "--as-authority", "--file", str(new_topology))
        assert applied.returncode == 0, applied.stderr
        thread.finish()
        report = load.check(stack, usccs, run_id, TOTAL, timeout=600)
        # Then every change made while the new subscription is surely in force, once.
        after_id, topics = f"after-{uuid.uuid4().hex[:8]}", (NEW_TOPIC, *load.DELIVERIES)
        after_start = stack.offsets(*topics)
        load.run_load(stack, usccs, AFTER, after_id)
        after = load.check(stack, usccs, after_id, AFTER, start=after_start, topics=topics)
    finally:
        assert govsync("topology", "apply", "--as-authority").returncode == 0
    print(f"\n{report}")
    assert report.complete, str(report)
    broken = [str(report[t]) for t in load.DELIVERIES if not report[t].exactly_once_in_order]
    assert not broken, "\n".join(broken)

    restarted = supervision.status(stack.settings, background.worker_name(1))
    assert restarted is not None and restarted.pid != killed and restarted.restarts >= 1

    # The new topic: the run's changes it got (from whenever each instance took the
    # subscription), each once and in order; every change made afterwards, once.
    since_start = topic_reader.beginning(stack.settings.bootstrap, [NEW_TOPIC])
    new = load.check(stack, usccs, run_id, TOTAL, start=since_start, topics=[NEW_TOPIC], timeout=5)
    arrived = new[NEW_TOPIC]
    assert not (arrived.duplicate_event_ids or arrived.order_violations or arrived.misrouted), str(
        arrived
    )
    assert after.complete and all(after[t].exactly_once_in_order for t in topics), str(after)

    # The trail: one delivered and one receipt hop per delivery to tax and social security.
    delivered = {
        (RECEIPTED[topic], seen.event_id) for topic in RECEIPTED for seen in report[topic].records
    }
    hops = trail_hops(stack, trace_from, delivered)
    for stage in ("delivered", "receipt"):
        # Each copy as "trace[p]@offset <- the input it records": whether copies share a
        # transaction and an input tells a redone batch from a record read twice.
        wrong = {key: hops[stage][key] for key in delivered if len(hops[stage][key]) != 1}
        assert not wrong, f"{len(wrong)} not exactly once {stage}: {list(wrong.items())[:5]}"

    verified = govsync("audit", "verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["intact"], verified.stdout


Hops = dict[str, defaultdict[tuple[str, str], list[str]]]


def trail_hops(
    stack: Stack, start: topic_reader.Offsets, wanted: set[tuple[str, str]], timeout: float = 300
) -> Hops:
    """(subscription, event_id) -> the delivered and receipt hops govsync.trace holds for
    ``wanted``, read until every one has its receipt (or ``timeout``), then 5 s more for
    late copies."""
    hops: Hops = {"delivered": defaultdict(list), "receipt": defaultdict(list)}
    position = dict(start)
    deadline = time.monotonic() + timeout
    while not all(hops["receipt"][key] for key in wanted) and time.monotonic() < deadline:
        _count(stack, position, wanted, hops)
        time.sleep(2)
    time.sleep(5)
    _count(stack, position, wanted, hops)
    return hops


def _count(
    stack: Stack, position: topic_reader.Offsets, wanted: set[tuple[str, str]], hops: Hops
) -> None:
    for message in topic_reader.messages(stack.settings.bootstrap, dict(position), timeout=30):
        position[(message.topic(), message.partition())] = message.offset() + 1
        stage = dict(message.headers() or []).get("stage", b"").decode()
        if stage in hops:
            hop = stack.decode(TRACE_TOPIC, message.value())
            key = (hop["subscription"], hop["event_id"])
            if key in wanted:
                hops[stage][key].append(
                    f"trace[{message.partition()}]@{message.offset()}"
                    f" <- {hop['topic']}[{hop['partition']}]@{hop['offset']}"
                )
