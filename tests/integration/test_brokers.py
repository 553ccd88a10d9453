"""Three Kafka nodes (GOVSYNC_KAFKA_BROKERS=3) on one machine: topics govsync creates get
three replicas and need two in sync, and a node killed -9 under a transactional producer
loses nothing, doubles nothing and does not stop the writes.

A scratch cluster on its own ports and state directory (sharing the downloaded
distribution), started, used and stopped by tests/integration/broker_loss.py: a separate
process, since every Kafka client reads its login from the ``GOVSYNC_*`` environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from govsync.stack import jvm, supervision
from streams.config.settings import REPO_ROOT, Settings

SCRATCH = {
    "GOVSYNC_KAFKA_BROKERS": "3",
    "GOVSYNC_KAFKA_PORT": "27092",  # and 27094, 27096
    "GOVSYNC_CONTROLLER_PORT": "27093",  # and 27095, 27097
    "GOVSYNC_KAFKA_HEAP": "384m",
}


def processes_under(directory: Path) -> list[int]:
    """Pids of processes whose command line names ``directory`` (the scratch cluster's)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(directory) in (proc / "cmdline").read_text():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_node_killed_under_load_loses_nothing_and_stops_no_writes(tmp_path: Path) -> None:
    shared = Settings.from_env()
    jvm.ensure_dist(shared)
    state = tmp_path / "state"
    state.mkdir()
    (state / "dist").symlink_to(shared.dist_dir)
    env = {**os.environ, "GOVSYNC_STATE_DIR": str(state), **SCRATCH}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tests.integration.broker_loss"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:  # the probe stops its cluster itself; this is for when it could not
        supervision.shutdown(Settings(state_dir=state, kafka_brokers=3))
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])

    replicated = {"replicas": [3], "min_insync": "2"}
    assert found["topics"] == {
        "changes.enterprise": replicated,
        "deliver.tax.enterprise": replicated,
    }, found
    assert found["internal"] == {"__transaction_state": replicated}, found
    assert len(found["alive_during_outage"]) == 2, found
    assert found["exactly_once_in_order"], found
    assert found["read"] == found["produced"] > 0, found
    # Writes went on without the node, once the cluster had moved its partitions' leaders.
    assert found["committed_late_in_outage"] > 0, found
    assert found["under_replicated_after"] == 0, found  # it came back and caught up
    assert found["stopped"] == ["kafka", "kafka-2", "kafka-3"], found
    assert processes_under(state) == [], "the scratch cluster left processes running"


pytestmark = pytest.mark.stack
