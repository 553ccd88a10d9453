"""What starting a process of the embedded stack needs besides supervisord (which runs
them, see `govsync.stack.supervision`): free ports, waiting until ready, clear errors."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from govsync.errors import OperationFailed


class StackError(OperationFailed):
    """A problem the operator can act on; the CLI prints it as one line."""


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
    gave_up: Callable[[], bool] = lambda: False,
) -> None:
    """Poll ``check`` until true; fail fast, with the log's tail, once ``gave_up`` (the
    supervisor stopped restarting the process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if gave_up():
            raise StackError(f"{what} kept exiting during start-up{_log_hint(log_file)}")
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
