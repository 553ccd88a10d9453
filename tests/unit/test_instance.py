"""Claiming a worker instance id: real flocks in a temporary state dir, held by other
processes, and stage-group members as Kafka would list them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from streams import instance
from streams.config.settings import REPO_ROOT
from streams.contract.members import Advert
from streams.instance import AUTO, InstanceInUse, claim, instance_dir
from streams.kafka.members import StageMember

HOST = "box-a"

HOLD = """
import sys
from pathlib import Path
from streams.instance import InstanceLock
lock = InstanceLock.acquire(Path(sys.argv[1]), sys.argv[2])
print("held" if lock else "busy", flush=True)
sys.stdin.read()
"""


@contextmanager
def held(state_dir: Path, instance_id: str, host: str = HOST) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``instance_id``'s lock until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(instance_dir(state_dir, instance_id)), host],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def member(instance_id: str, host: str, stage: str = "route") -> StageMember:
    return StageMember(
        stage=stage,
        group_instance_id=f"govsync-{stage}-{instance_id}",
        advert=Advert(instance=instance_id, host=host, metrics_url="http://x:1/metrics"),
        partitions=[],
    )


def test_auto_takes_the_lowest_id_free_here_and_on_other_hosts(tmp_path: Path) -> None:
    with held(tmp_path, "0"):
        chosen, lock = claim(tmp_path, AUTO, HOST, [member("1", "box-b", "ledger")])
        assert chosen == "2"
        second, other = claim(tmp_path, AUTO, HOST, [])
        assert second == "1"  # locally free: only box-b's live member would refuse it
        lock.release()
        other.release()


def test_an_explicit_id_held_here_is_refused_naming_its_holder(tmp_path: Path) -> None:
    with held(tmp_path, "4") as holder, pytest.raises(InstanceInUse) as refused:
        claim(tmp_path, "4", HOST, [])
    message = str(refused.value)
    assert f"worker instance 4 is in use by pid {holder.pid} on host {HOST}" in message
    assert "unset GOVSYNC_WORKER_INSTANCE" in message


def test_an_explicit_id_used_on_another_host_is_refused(tmp_path: Path) -> None:
    refused = "worker instance 1 is in use by a worker on host box-b"
    with pytest.raises(InstanceInUse, match=refused):
        claim(tmp_path, "1", HOST, [member("1", "box-b")])
    # Refused without taking the lock.
    chosen, lock = claim(tmp_path, AUTO, HOST, [])
    assert chosen == "0"
    lock.release()


def test_a_dead_predecessor_does_not_keep_its_id(tmp_path: Path) -> None:
    """kill -9 frees the lock, and its static member still in the group is on our host:
    a supervisor's restart of the same id goes through."""
    with held(tmp_path, "0") as predecessor:
        predecessor.send_signal(signal.SIGKILL)
        predecessor.wait()
        chosen, lock = claim(tmp_path, "0", HOST, [member("0", HOST)])
    assert chosen == "0"
    assert (instance_dir(tmp_path, "0") / instance.LOCK_FILE).read_text() == (
        f"pid {os.getpid()} on host {HOST}\n"
    )
    lock.release()


def test_an_id_that_is_no_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an instance id"):
        claim(tmp_path, "../0", HOST, [])


REEXEC = """
import os, sys
from pathlib import Path
from streams.instance import claim
chosen, _ = claim(Path(sys.argv[1]), sys.argv[2], "box-a", [])
print(chosen, flush=True)
if len(sys.argv) == 3:  # as the watchdog does, with the id it chose
    os.execv(sys.executable, [sys.executable, __file__, sys.argv[1], chosen, "again"])
"""


def test_a_reexecuted_worker_takes_its_own_lock_again(tmp_path: Path) -> None:
    """The lock's fd is close-on-exec: the watchdog's os.execv does not lock itself out."""
    script = tmp_path / "reexec.py"
    script.write_text(REEXEC)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "state"), AUTO],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0"]
