"""Background processes of the embedded stack: start, find, stop, wait.

Each component is a plain OS process with a pid file and a log under the state
directory, so `govsync down` can find it from any shell and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from govsync.errors import OperationFailed


class StackError(OperationFailed):
    """A problem the operator can act on; the CLI prints it as one line."""


def pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def read_pid(run_dir: Path, name: str) -> int | None:
    """The pid of a running component, or None (a stale pid file is removed)."""
    path = pid_file(run_dir, name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if is_alive(pid):
        return pid
    path.unlink(missing_ok=True)
    return None


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    run_dir: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start a detached process (own session, so it outlives the CLI) and record its pid."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    pid_file(run_dir, name).write_text(f"{proc.pid}\n")
    return proc.pid


def stop(run_dir: Path, name: str, *, timeout: float = 30.0) -> bool:
    """SIGTERM the component's process group, SIGKILL after ``timeout``. True if it was running."""
    pid = read_pid(run_dir, name)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if is_alive(pid):
        _signal_group(pid, signal.SIGKILL)
        while is_alive(pid):
            time.sleep(0.1)
    pid_file(run_dir, name).unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def require_free_port(
    host: str, port: int, component: str, setting: str, grace: float = 10.0
) -> None:
    """A port still held by a process that is just exiting frees within ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while port_open(host, port) and time.monotonic() < deadline:
        time.sleep(0.25)
    if port_open(host, port):
        raise StackError(
            f"port {port} on {host} is already taken, so {component} cannot start: "
            f"stop what uses it or choose another port with GOVSYNC_{setting.upper()}"
        )


def wait_until(
    check: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    log_file: Path | None = None,
    pid: int | None = None,
) -> None:
    """Poll ``check`` until true; fail fast with the log's tail if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not is_alive(pid):
            raise StackError(f"{what} exited during start-up{_log_hint(log_file)}")
        time.sleep(0.5)
    raise StackError(f"{what} did not become ready within {timeout:.0f}s{_log_hint(log_file)}")


def _log_hint(log_file: Path | None) -> str:
    if log_file is None or not log_file.exists():
        return ""
    lines = [
        line
        for line in log_file.read_text(errors="replace").splitlines()[-400:]
        if "ERROR" in line or "Exception" in line or "FATAL" in line
    ]
    last = f"; last error: {lines[-1].strip()[:300]}" if lines else ""
    return f" (log: {log_file}{last})"
