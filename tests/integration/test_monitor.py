"""`govsync monitor` against the real stack, looked at by a real browser: the JSON state,
the Prometheus scrape, and the page after its JavaScript ran in headless Chromium
(Debian's, installed by `make install-system` with the CJK fonts the names need)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from govsync.stack import embedded
from streams.config.settings import REPO_ROOT, Settings
from streams.kafka import applied
from streams.model.topology import Topology, load_topology
from tests.integration.companies import GOVSYNC

pytestmark = pytest.mark.stack

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO_ROOT / "test-artifacts" / "monitor.png"
LIGHTS = {"green", "yellow", "red", "grey"}


@pytest.fixture(scope="module")
def settings(request: pytest.FixtureRequest) -> Settings:
    """The stack as it runs: the session fixture (which applies the topology and starts the
    worker and sinks) only when something is down, so against a running stack this module
    only reads."""
    current = Settings.from_env()
    report = embedded.status(current)
    if not report.all_up or report.components.worker.state == "down":
        request.getfixturevalue("stack")
    return current


@pytest.fixture(scope="module")
def topology(settings: Settings) -> Topology:
    current = applied.latest(settings.bootstrap)
    return current.topology() if current else load_topology(settings.topology)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def monitor(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`govsync monitor --port N` in the foreground of its own process; its base URL once
    the first measurement is in."""
    port = free_port()
    log = tmp_path_factory.mktemp("monitor") / "monitor.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(GOVSYNC), "monitor", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=dict(os.environ),
        )
    url = f"http://{settings.host}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"the monitor exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no measurement in 120s:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/api/state", timeout=5).json()["at"] is not None:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_state_has_every_department_the_dlq_accounting_and_the_pipeline(
    monitor: str, topology: Topology
) -> None:
    state: dict[str, Any] = httpx.get(f"{monitor}/api/state", timeout=10).json()
    assert state["error"] is None, state["error"]
    lights = {d["department"]: d for d in state["departments"]}
    assert set(lights) == set(topology.departments)
    for department_id, department in topology.departments.items():
        assert lights[department_id]["name"] == department.name
        assert lights[department_id]["status"] in LIGHTS
    accounted = {d["source"]: d for d in state["dead_letters"]}
    assert set(accounted) == {s.id for s in topology.sources}
    for d in accounted.values():
        assert d["account"] is not None and d["account"]["source"] == d["source"]
        assert 0 <= d["open"] <= d["total"]
    # Error and objection rates per source (数据异议: test_objections raises some).
    quality = {q["source"]: q for q in state["quality"]}
    assert set(quality) == {s.id for s in topology.sources}
    for q in quality.values():
        assert 0 <= q["open"] <= q["objections"] and q["dead_lettered"] <= q["processed"]
    stages = {g["name"].split(" ")[0] for g in state["lag"]["pipeline"]}
    assert stages == {"normalize", "route", "ledger"}
    assert {r["subscription"] for r in state["receipts"]} == {s.id for s in topology.subscriptions}
    # Receipts come from the index, which says how far behind the trail it is.
    assert isinstance(state["index_behind"], int) and state["index_behind"] >= 0
    assert isinstance(state["sleeping"], list)
    # The session's worker, found in the stage groups, its metrics answering.
    assert any(
        w["up"] and set(w["stages"]) == {"normalize", "route", "ledger"} for w in state["workers"]
    )


def test_metrics_name_lag_like_kafka_exporter_and_carry_the_workers(monitor: str) -> None:
    response = httpx.get(f"{monitor}/metrics", timeout=10)
    assert response.status_code == 200
    text = response.text
    lines = text.splitlines()
    assert any(
        line.startswith('kafka_consumergroup_lag{consumergroup="tax-sink"') for line in lines
    )
    for name in (
        "kafka_consumergroup_current_offset{",
        "kafka_topic_partition_current_offset{",
        "govsync_consumergroup_lag_seconds{",
        'govsync_subscription_status{department="tax",subscription="tax.enterprise"}',
        "govsync_dlq_open_records{",
        "govsync_objections_open{",
        "govsync_receipts_overdue{",
    ):
        assert any(line.startswith(name) for line in lines), name
    assert any(
        line.startswith('govsync_worker_up{worker_instance="') and line.endswith("} 1.0")
        for line in lines
    )
    # The worker's own exposition, appended: its stage processes' metrics are there from
    # its start (delivery counters only once it has delivered, which this module does not
    # wait for).
    assert "# TYPE govsync_stage_route_process_cpu_seconds_total counter" in lines
    assert any(
        line.startswith('govsync_stage_route_process_cpu_seconds_total{worker_instance="')
        for line in lines
    )
    assert text.count("# TYPE govsync_receipts_overdue gauge") == 1


class Rendered(HTMLParser):
    """What the rendered page shows: its text (not its script), each department's status
    light, and whether the error banner is up."""

    def __init__(self) -> None:
        super().__init__()
        self.lights: dict[str, str] = {}
        self.text: list[str] = []
        self.banner_shown = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        self._in_script = tag == "script"
        if "light" in classes and found.get("data-department"):
            (status,) = set(classes) & LIGHTS
            self.lights[found["data-department"] or ""] = status
        if found.get("id") == "banner":
            self.banner_shown = "shown" in classes

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if not self._in_script:
            self.text.append(data)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM.exists(), "no /usr/bin/chromium: run `make install-system`"
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=8000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_page_renders_every_department_with_a_light_in_chromium(
    monitor: str, topology: Topology, tmp_path: Path
) -> None:
    dumped = chromium("--dump-dom", f"{monitor}/", profile=tmp_path / "dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    page = Rendered()
    page.feed(dumped.stdout)
    text = "".join(page.text)
    for department_id, department in topology.departments.items():
        assert department.name in text, department.name  # e.g. 税务局
        assert department_id in page.lights, f"no status light for {department_id}"
    # No failure banner; a stale one (a slow measurement) must say what it waits for.
    assert not page.banner_shown or "the measurement under way is waiting for" in text, text
    assert "Refresh failed" not in text and "does not answer" not in text, text
    assert "Worker instances" in text
    for worker in httpx.get(f"{monitor}/api/state", timeout=10).json()["workers"]:
        assert worker["metrics_url"] in text

    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    shot = chromium(
        f"--screenshot={SCREENSHOT}",
        "--window-size=1400,1000",
        f"{monitor}/",
        profile=tmp_path / "screenshot",
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert SCREENSHOT.stat().st_size > 20_000, json.dumps(page.lights)
