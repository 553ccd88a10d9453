"""supervisord keeps the stack's processes alive: a process killed with SIGKILL comes back
by itself, and `govsync status` says how often and why it ended."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from connectors.sinks import process_name
from govsync.stack import supervision
from govsync.stack.background import worker_instances, worker_name
from tests.integration.companies import TAX, deliver, govsync, new_company, wait_for
from tests.integration.conftest import Stack

pytestmark = pytest.mark.stack


def killed_and_back(stack: Stack, name: str, timeout: float = 120.0) -> supervision.ProgramStatus:
    """kill -9 the program's process; its status once supervisord has started it again."""
    before = supervision.status(stack.settings, name)
    assert before is not None and before.running and before.pid is not None, before
    os.kill(before.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        after = supervision.status(stack.settings, name)
        if after is not None and after.running and after.pid != before.pid:
            assert after.restarts >= before.restarts + 1
            return after
        assert time.monotonic() < deadline, f"{name} did not come back: {after}"
        time.sleep(0.2)


def status_json() -> dict:
    result = govsync("status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["components"]


def test_a_killed_sink_and_worker_come_back_by_themselves_and_status_says_why(
    stack: Stack,
) -> None:
    sink = killed_and_back(stack, process_name("tax"))
    assert sink.last_exit is not None and "SIGKILL" in sink.last_exit

    killed_and_back(stack, worker_name(0))
    worker = status_json()["worker"]
    assert worker["state"] == "up"
    (zero,) = [i for i in worker["instances"] if i["id"] == "0"]
    assert zero["state"] == "up" and zero["restarts"] >= 1 and "SIGKILL" in zero["last_exit"]
    assert worker["pid"] == zero["pid"] and worker["restarts"] == zero["restarts"]

    # The worker came back as itself: a new change is still delivered.
    deliver(stack, [new_company()], TAX)


def test_every_component_reports_restarts_and_last_exit(stack: Stack) -> None:
    components = status_json()
    for name in ("postgres", "kafka", "connect", "registry", "worker", "monitor", "indexer"):
        assert {"restarts", "last_exit"} <= set(components[name]), name
    assert components["indexer"]["state"] == "up"
    assert components["indexer"]["database"] == "govsync"
    for instance in components["worker"]["instances"]:
        assert set(instance) >= {"id", "pid", "metrics_url", "state", "restarts", "last_exit"}


def test_worker_background_starts_another_instance_each_time(stack: Stack) -> None:
    configured = set(worker_instances(stack.settings))
    expected = min(set(range(len(configured) + 1)) - configured)
    result = govsync("worker", "--background")
    assert result.returncode == 0, result.stderr
    match = re.search(r"worker (\d+) running \(pid (\d+)", result.stdout)
    assert match, result.stdout
    instance, pid = int(match[1]), int(match[2])
    try:
        assert instance == expected
        rows = {i["id"]: i for i in status_json()["worker"]["instances"]}
        assert rows[str(instance)]["pid"] == pid and rows[str(instance)]["state"] == "up"
        assert rows["0"]["state"] == "up"

        def advertised() -> bool:
            row = next(i for i in status_json()["worker"]["instances"] if i["id"] == str(instance))
            return bool(row["metrics_url"]) and row["metrics_url"].startswith("http://")

        # Once it joined the stage groups, status shows the port it picked (port 0).
        wait_for(advertised, f"instance {instance}'s metrics URL in status")
    finally:
        supervision.stop(stack.settings, worker_name(instance))
    assert status_json()["worker"]["state"] == "up"  # instance 0 still runs
