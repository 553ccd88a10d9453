"""The stack's supervised programs, as the fault tests handle them: is one running, kill
one with SIGKILL, wait until supervisord has started it again."""

from __future__ import annotations

import os
import signal
import time

from govsync.stack import supervision
from tests.integration.conftest import Stack


def running(stack: Stack, name: str) -> bool:
    program = supervision.status(stack.settings, name)
    return program is not None and program.running


def kill_9(stack: Stack, name: str, *, wait: bool = True) -> int:
    """SIGKILL the program's process, by the pid supervisord gives; with ``wait``, until
    supervisord has started it again (a new pid, RUNNING). Returns the killed pid."""
    program = supervision.status(stack.settings, name)
    assert program is not None and program.pid is not None, f"{name} is not running"
    os.kill(program.pid, signal.SIGKILL)
    if wait:
        wait_restarted(stack, name, program.pid)
    return program.pid


def wait_restarted(stack: Stack, name: str, old_pid: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        program = supervision.status(stack.settings, name)
        if program is not None and program.running and program.pid != old_pid:
            return
        assert time.monotonic() < deadline, f"supervisord did not bring {name} back: {program}"
        time.sleep(0.2)
