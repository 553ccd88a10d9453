"""Several workers on one stack: started with no instance id and metrics port 0 they
take distinct ids and ports, advertise themselves in the stage groups, refuse a taken id,
and the monitor scrapes them all."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from govsync.ops.instances import WorkerInstance, worker_instances
from streams.config.settings import REPO_ROOT
from tests.integration.companies import GOVSYNC
from tests.integration.conftest import Stack

pytestmark = pytest.mark.stack

WAIT_S = 600.0  # a bound on waiting for a process to get somewhere, not a measurement
CHOSEN = re.compile(r"worker instance (\S+): metrics on (\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    """`python -m streams.worker` in its own process, logging to a file."""

    def __init__(self, log: Path, **env: str) -> None:
        self.log = log
        environment = {k: v for k, v in os.environ.items() if k != "GOVSYNC_WORKER_INSTANCE"}
        environment.update(PYTHONPATH=str(REPO_ROOT), GOVSYNC_WORKER_PORT="0", **env)
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.worker"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=environment,
            )

    def chosen(self) -> tuple[str, str]:
        """(instance id, metrics URL) once it has logged them."""
        deadline = time.monotonic() + WAIT_S
        while not (found := CHOSEN.search(self.log.read_text())):
            assert self.process.poll() is None, f"the worker exited:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"no instance id yet:\n{self.log.read_text()}"
            time.sleep(0.5)
        return found[1], found[2]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def workers(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    logs = tmp_path_factory.mktemp("workers")
    started = [Worker(logs / f"worker-{n}.log") for n in range(2)]
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()


def wait_for(stack: Stack, ids: set[str]) -> list[WorkerInstance]:
    """The instances listed once every one of ``ids`` has all three stages' partitions."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = worker_instances(stack.settings)
        mine = [i for i in found if i.id in ids]
        if len(mine) == len(ids) and all(len(i.stages) == 3 for i in mine):
            return found
        assert time.monotonic() < deadline, f"not all of {ids} in the stage groups: {found}"
        time.sleep(1)


def test_two_workers_without_ids_take_distinct_ids_and_ports(
    stack: Stack, workers: list[Worker], tmp_path: Path
) -> None:
    (first, first_url), (second, second_url) = (w.chosen() for w in workers)
    assert first != second
    assert first_url != second_url and ":0/" not in first_url + second_url
    found = {i.id: i for i in wait_for(stack, {first, second})}
    assert found[first].metrics_url == first_url and found[second].metrics_url == second_url
    for url in (first_url, second_url):
        assert httpx.get(url, timeout=10).status_code == 200

    taken = Worker(tmp_path / "taken.log", GOVSYNC_WORKER_INSTANCE=first)
    assert taken.process.wait(timeout=WAIT_S) == 1
    message = taken.log.read_text()
    assert f"worker instance {first} is in use by pid {workers[0].process.pid}" in message
    assert "unset GOVSYNC_WORKER_INSTANCE" in message


def test_the_monitor_scrapes_every_instance(
    stack: Stack, workers: list[Worker], tmp_path: Path
) -> None:
    ids = {w.chosen()[0] for w in workers}
    wait_for(stack, ids)
    port = free_port()
    log = tmp_path / "monitor.log"
    with open(log, "wb") as out:
        monitor = subprocess.Popen(
            [str(GOVSYNC), "monitor", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=dict(os.environ),
        )
    url = f"http://{stack.settings.host}:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        state = None
        while True:
            assert monitor.poll() is None, f"the monitor exited:\n{log.read_text()}"
            try:
                state = httpx.get(f"{url}/api/state", timeout=10).json()
                up = {w["id"] for w in state["workers"] if w["up"]}
                if ids <= up:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the monitor does not list {ids}:\n{state}"
            time.sleep(1)
        lines = httpx.get(f"{url}/metrics", timeout=30).text.splitlines()
        for instance in ids:
            label = f'worker_instance="{instance}"'
            assert f"govsync_worker_up{{{label}}} 1.0" in lines
            assert any(
                line.startswith("process_start_time_seconds{") and label in line for line in lines
            )
    finally:
        monitor.terminate()
        try:
            monitor.wait(timeout=15)
        except subprocess.TimeoutExpired:
            monitor.kill()
            monitor.wait()
