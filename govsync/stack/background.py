"""govsync's own long-running processes (worker, sinks) started detached, like the stack."""

from __future__ import annotations

import sys
import time

from govsync.stack.process import StackError, is_alive, read_pid, spawn
from streams.config.settings import Settings


def start_app_process(settings: Settings, name: str, cli_args: list[str]) -> int:
    """Run `govsync <cli_args>` in the background unless it already runs; returns its pid."""
    run_dir = settings.path("run")
    running = read_pid(run_dir, name)
    if running is not None:
        return running
    log = settings.path("logs", f"{name}.log")
    pid = spawn(
        name, [sys.executable, "-m", "govsync.cli", *cli_args], run_dir=run_dir, log_file=log
    )
    time.sleep(1.0)
    if not is_alive(pid):
        raise StackError(f"{name} exited at start-up (log: {log})")
    return pid
