"""A worker instance's id, distinct among every worker of the exchange.

The id names the instance's transactional ids and static group members
(``stage_member``) and its state directory; two workers with one id fence each other in
turn. So an id is claimed before the stages start:

- on this machine by an exclusive ``flock`` on ``.state/state/worker-<id>/instance.lock``,
  held for the process's life. The kernel drops it when the process dies however it
  dies, so a supervisor's restart of the same id always gets it back; the fd is
  close-on-exec, so the watchdog's re-exec takes it again cleanly.
- on other machines by the stage groups' members: a member with our static id whose
  advert (``streams.contract.members``) names another host holds it. A member with our
  id and our host is our dead predecessor (its lock is free), which static membership
  exists to replace at once.

``GOVSYNC_WORKER_INSTANCE`` unset or ``auto`` takes the lowest free integer.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from streams.contract.members import INSTANCE_PATTERN
from streams.contract.topics import stage_member
from streams.kafka.members import StageMember

AUTO = "auto"
LOCK_FILE = "instance.lock"


class InstanceInUse(RuntimeError):
    """The id asked for is another live worker's."""


def instance_dir(state_dir: Path, instance: str) -> Path:
    return state_dir / "state" / f"worker-{instance}"


@dataclass
class InstanceLock:
    """The held lock; released when the process ends (or by ``release``)."""

    path: Path
    fd: int

    @classmethod
    def acquire(cls, directory: Path, host: str) -> InstanceLock | None:
        """The lock, or None while another process holds it."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {host}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        os.close(self.fd)


def holder(directory: Path) -> str:
    """Who holds an instance's lock, as its file says ("pid … on host …")."""
    try:
        return (directory / LOCK_FILE).read_text().strip() or "an unknown process"
    except OSError:
        return "an unknown process"


def foreign(members: list[StageMember], host: str) -> dict[str, str]:
    """Instance id -> host, for the stage members that advertise another host than ours."""
    found = {}
    for member in members:
        if member.advert is None or member.advert.host == host or not member.group_instance_id:
            continue
        instance = member.group_instance_id.removeprefix(stage_member(member.stage, ""))
        found[instance] = member.advert.host
    return found


def claim(
    state_dir: Path, requested: str, host: str, members: list[StageMember]
) -> tuple[str, InstanceLock]:
    """The id to run as and its lock; raises InstanceInUse (or ValueError for a malformed
    id) when ``requested`` is taken."""
    elsewhere = foreign(members, host)
    if requested != AUTO:
        if not INSTANCE_PATTERN.fullmatch(requested):
            raise ValueError(
                f"GOVSYNC_WORKER_INSTANCE={requested!r} is not an instance id "
                f"(letters, digits, '_', '.', '-'; or unset it for a free one)"
            )
        directory = instance_dir(state_dir, requested)
        if requested in elsewhere:
            raise InstanceInUse(_in_use(requested, f"a worker on host {elsewhere[requested]}"))
        lock = InstanceLock.acquire(directory, host)
        if lock is None:
            raise InstanceInUse(
                _in_use(requested, f"{holder(directory)} ({directory / LOCK_FILE})")
            )
        return requested, lock
    number = 0
    while True:
        instance = str(number)
        lock = None
        if instance not in elsewhere:
            lock = InstanceLock.acquire(instance_dir(state_dir, instance), host)
        if lock is not None:
            return instance, lock
        number += 1


def _in_use(instance: str, by: str) -> str:
    return (
        f"worker instance {instance} is in use by {by}; unset GOVSYNC_WORKER_INSTANCE "
        f"(or set it to auto) to take a free id, or choose another"
    )
