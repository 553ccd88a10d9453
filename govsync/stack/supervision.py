"""Every long-running process of the embedded stack runs under one supervisord.

Why supervisord: it is maintained, restarts a program that dies (with a back-off when it
dies at start-up), and is one place to ask what runs, with which pid, since when. It
replaces the pid files the stack kept before, which left a dead process dead.

Layout under the state directory: ``supervisor/supervisord.conf`` (the daemon, its unix
socket ``supervisor/supervisord.sock``, mode 0700, so only the local user reaches it),
``supervisor/programs/<name>.conf`` (one per program, written when govsync starts it),
``supervisor/exits.json`` (restarts and last exit reasons, kept by the ``exits`` event
listener, see `govsync.stack.exits`). Logs stay in ``logs/<name>.log``; supervisord's own
is ``logs/supervisord.log``. Operators can use ``supervisorctl -c .state/supervisor/
supervisord.conf`` beside govsync.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel
from supervisor.xmlrpc import Faults, SupervisorTransport

from govsync.stack import exits
from govsync.stack.process import StackError, wait_until
from streams.config.settings import REPO_ROOT, Settings

# What a program inherits from the govsync command that starts it, beyond supervisord's
# own environment: the stack's settings, OpenTelemetry's, and where the code is.
INHERITED_PREFIXES = ("GOVSYNC_", "OTEL_")
INHERITED_NAMES = ("PYTHONPATH",)
SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 108 bytes
LISTENER = "exits"
RUNNING_STATES = frozenset({"STARTING", "RUNNING", "BACKOFF"})
HELD_STATES = frozenset({"STOPPED", "FATAL"})  # supervisord starts none of these again


class Program(BaseModel, frozen=True):
    """One supervised program: how to run it and how to stop it."""

    name: str
    command: list[str]
    log: Path
    directory: Path | None = None
    environment: dict[str, str] = {}
    user: str | None = None
    startsecs: int = 5
    startretries: int = 5
    stopsignal: str = "TERM"
    stopwaitsecs: int = 30
    # The whole process group gets the stop signal (a JVM, a python with helpers); not
    # PostgreSQL, whose postmaster shuts its backends down itself.
    stopasgroup: bool = True


class ProgramStatus(BaseModel):
    name: str
    state: str  # supervisor's state name: RUNNING, STARTING, BACKOFF, EXITED, FATAL, ...
    pid: int | None
    restarts: int
    last_exit: str | None

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


def inherited_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    return {
        name: value
        for name, value in environ.items()
        if name.startswith(INHERITED_PREFIXES) or name in INHERITED_NAMES
    }


def _directory(settings: Settings) -> Path:
    return settings.path("supervisor")


def _socket(settings: Settings) -> Path:
    return _directory(settings) / "supervisord.sock"


def _conf(settings: Settings) -> Path:
    return _directory(settings) / "supervisord.conf"


def exits_file(settings: Settings) -> Path:
    return _directory(settings) / "exits.json"


def _quote(value: str) -> str:
    """A value supervisor reads back unchanged: its own %-expansion escaped."""
    return value.replace("%", "%%")


def _quoted_value(name: str, value: str) -> str:
    """An environment value as supervisor's (non-POSIX) shlex reads it back: in quotes it
    does not have, no escapes."""
    for quote in ('"', "'"):
        if quote not in value:
            return f"{quote}{_quote(value)}{quote}"
    raise StackError(f"{name} holds both kinds of quotes; supervisord cannot pass it on")


def render_program(program: Program) -> str:
    lines = [
        f"[program:{program.name}]",
        f"command={_quote(shlex.join(program.command))}",
        "autostart=false",
        "autorestart=true",
        f"startsecs={program.startsecs}",
        f"startretries={program.startretries}",
        f"stopsignal={program.stopsignal}",
        f"stopwaitsecs={program.stopwaitsecs}",
        f"stopasgroup={str(program.stopasgroup).lower()}",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={_quote(str(program.log))}",
        "stdout_logfile_maxbytes=0",
    ]
    if program.directory is not None:
        lines.append(f"directory={_quote(str(program.directory))}")
    if program.user is not None:
        lines.append(f"user={program.user}")
    if program.environment:
        pairs = (
            f"{name}={_quoted_value(name, value)}"
            for name, value in sorted(program.environment.items())
        )
        lines.append(f"environment={','.join(pairs)}")
    return "\n".join(lines) + "\n"


def render_supervisord(settings: Settings) -> str:
    directory = _directory(settings)
    listener = shlex.join(
        [
            sys.executable,
            "-m",
            "govsync.stack.exits",
            str(exits_file(settings)),
            str(settings.path("logs", "supervisord.log")),
        ]
    )
    return "\n".join(
        [
            "; written by govsync (govsync/stack/supervision.py); programs in programs/",
            "[unix_http_server]",
            f"file={_quote(str(_socket(settings)))}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={_quote(str(settings.path('logs', 'supervisord.log')))}",
            "logfile_maxbytes=10MB",
            "logfile_backups=2",
            f"pidfile={_quote(str(directory / 'supervisord.pid'))}",
            f"directory={_quote(str(REPO_ROOT))}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{_quote(str(_socket(settings)))}",
            "",
            f"[eventlistener:{LISTENER}]",
            f"command={_quote(listener)}",
            "events=PROCESS_STATE",
            "buffer_size=100",
            "autorestart=true",
            f"stderr_logfile={_quote(str(settings.path('logs', 'exits.log')))}",
            "stderr_logfile_maxbytes=1MB",
            "",
            "[include]",
            f"files={_quote(str(directory / 'programs' / '*.conf'))}",
            "",
        ]
    )


def _proxy(settings: Settings) -> xmlrpc.client.ServerProxy:
    transport = SupervisorTransport(None, None, f"unix://{_socket(settings)}")
    # The URL is a placeholder: the transport always talks to the socket.
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def _answers(settings: Settings) -> bool:
    if not _socket(settings).exists():
        return False
    try:
        return _proxy(settings).supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Fault):
        return False


def running(settings: Settings) -> bool:
    """Whether this state directory's supervisord answers."""
    return _answers(settings)


def ensure_supervisord(settings: Settings) -> xmlrpc.client.ServerProxy:
    """The stack's supervisord, started first if it is not running (idempotent)."""
    if _answers(settings):
        return _proxy(settings)
    if len(str(_socket(settings))) > SOCKET_PATH_MAX:
        raise StackError(
            f"the state directory {settings.state_dir} is too deep for supervisord's unix "
            "socket: choose a shorter GOVSYNC_STATE_DIR"
        )
    (_directory(settings) / "programs").mkdir(parents=True, exist_ok=True)
    settings.path("logs").mkdir(parents=True, exist_ok=True)
    _conf(settings).write_text(render_supervisord(settings))
    _conf(settings).chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(_conf(settings))],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"supervisord did not start: {result.stderr.strip()[-300:]}")
    deadline = time.monotonic() + 30
    while not _answers(settings):
        if time.monotonic() > deadline:
            raise StackError(
                f"supervisord did not answer on {_socket(settings)} within 30s "
                f"(log: {settings.path('logs', 'supervisord.log')})"
            )
        time.sleep(0.2)
    return _proxy(settings)


def configure(settings: Settings, program: Program) -> None:
    """Write ``program``'s section and apply it as `supervisorctl update` does: a new
    program is added, a changed one is stopped, replaced and left stopped."""
    server = ensure_supervisord(settings)
    path = _directory(settings) / "programs" / f"{program.name}.conf"
    path.write_text(render_program(program))
    path.chmod(0o600)
    [[added, changed, removed]] = server.supervisor.reloadConfig()
    for name in (*changed, *removed):
        with contextlib.suppress(xmlrpc.client.Fault):
            server.supervisor.stopProcessGroup(name)
        server.supervisor.removeProcessGroup(name)
    for name in (*added, *changed):
        server.supervisor.addProcessGroup(name)


def start(settings: Settings, program: Program, *, wait: bool = False) -> ProgramStatus:
    """Start ``program`` unless it runs already (then it is left as it is, configuration
    included). With ``wait``, return once supervisord counts it as started (it stayed up
    ``startsecs``); fail when it exited before that."""
    current = status(settings, program.name)
    if current is not None and current.state in RUNNING_STATES:
        return current
    configure(settings, program)
    try:
        _proxy(settings).supervisor.startProcess(program.name, wait)
    except xmlrpc.client.Fault as fault:
        if fault.faultCode != Faults.ALREADY_STARTED:
            raise StackError(
                f"{program.name} exited at start-up ({fault.faultString}; log: {program.log})"
            ) from fault
    started = status(settings, program.name)
    assert started is not None
    return started


def stop(settings: Settings, name: str) -> bool:
    """Stop a program (SIGTERM or its stop signal, SIGKILL to its group after its
    stopwaitsecs); supervisord will not restart it. True if it was running."""
    current = status(settings, name)
    if current is None or current.state not in RUNNING_STATES:
        return False
    with contextlib.suppress(xmlrpc.client.Fault):  # it ended meanwhile
        _proxy(settings).supervisor.stopProcess(name, True)
    return True


def stop_together(settings: Settings, names: Iterable[str], timeout: float = 90.0) -> list[str]:
    """Stop several programs at once and wait until all have ended (each gets its stop
    signal, then SIGKILL after its stopwaitsecs); the names of those that were running."""
    running_now = [name for name in names if is_running(settings, name)]
    for name in running_now:
        with contextlib.suppress(xmlrpc.client.Fault):  # it ended meanwhile
            _proxy(settings).supervisor.stopProcess(name, False)
    wait_until(
        lambda: not any(_still_running(settings, name) for name in running_now),
        what=f"stopping {', '.join(running_now)}",
        timeout=timeout,
    )
    return running_now


def _still_running(settings: Settings, name: str) -> bool:
    current = status(settings, name)
    return current is not None and current.state in (*RUNNING_STATES, "STOPPING")


def kill(settings: Settings, name: str, *, hold: bool = False) -> int:
    """SIGKILL ``name``'s process, as a crash would (no shutdown hook runs); its pid.
    supervisord starts it again, unless ``hold``: then it is left stopped, until `start`
    (stopping it right after the kill catches it either before supervisord notices, or
    as the new process is just spawned)."""
    current = status(settings, name)
    if current is None or current.pid is None or current.state != "RUNNING":
        raise StackError(f"{name} is not running")
    os.kill(current.pid, signal.SIGKILL)
    if hold:
        wait_until(lambda: _stopped(settings, name), what=f"holding {name} down", timeout=90)
    return current.pid


def _stopped(settings: Settings, name: str) -> bool:
    """Stop ``name`` if supervisord is (re)starting it; whether it is held stopped. EXITED
    is not: supervisord starts such a process again a moment later (autorestart), and a
    hold that took it for stopped let the killed worker come back."""
    if _held(settings, name):
        return True
    with contextlib.suppress(xmlrpc.client.Fault):  # EXITED, or already stopping
        _proxy(settings).supervisor.stopProcess(name, True)
    return _held(settings, name)


def _held(settings: Settings, name: str) -> bool:
    current = status(settings, name)
    return held(current.state if current is not None else None)


def held(state: str | None) -> bool:
    """Whether a program in ``state`` (None: not configured) stays down until started."""
    return state is None or state in HELD_STATES


def gave_up(settings: Settings, name: str) -> bool:
    """Whether supervisord stopped trying to start ``name`` (too many quick exits)."""
    current = status(settings, name)
    return current is not None and current.state == "FATAL"


def statuses(settings: Settings) -> dict[str, ProgramStatus]:
    """Every configured program (not the event listener), by name; empty when supervisord
    is not running."""
    if not _answers(settings):
        return {}
    record = exits.load(exits_file(settings))
    try:
        infos = _proxy(settings).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Fault):
        return {}
    result = {}
    for info in infos:
        if info["group"] == LISTENER:
            continue
        ends = record.get(info["name"], exits.Ends())
        result[info["name"]] = ProgramStatus(
            name=info["name"],
            state=info["statename"],
            pid=info["pid"] or None,
            restarts=ends.restarts,
            last_exit=ends.last_exit,
        )
    return result


def status(settings: Settings, name: str) -> ProgramStatus | None:
    return statuses(settings).get(name)


def shutdown(settings: Settings) -> bool:
    """Stop supervisord itself (it stops whatever still runs) and forget every program's
    configuration and exit record, so the next `govsync up` starts clean."""
    was_running = _answers(settings)
    if was_running:
        pid_path = _directory(settings) / "supervisord.pid"
        pid = int(pid_path.read_text().strip()) if pid_path.exists() else None
        with contextlib.suppress(OSError, xmlrpc.client.Fault):
            _proxy(settings).supervisor.shutdown()
        deadline = time.monotonic() + 120
        while pid is not None and alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    shutil.rmtree(_directory(settings) / "programs", ignore_errors=True)
    exits_file(settings).unlink(missing_ok=True)
    return was_running


def alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def is_running(settings: Settings, name: str) -> bool:
    """Running or being (re)started by supervisord."""
    current = status(settings, name)
    return current is not None and current.state in RUNNING_STATES


def start_until_ready(
    settings: Settings, program: Program, *, ready: Callable[[], bool], what: str, timeout: float
) -> None:
    """Start ``program`` and wait until ``ready``; fail once supervisord gives up on it."""
    start(settings, program)
    wait_until(
        ready,
        what=what,
        timeout=timeout,
        log_file=program.log,
        gave_up=lambda: gave_up(settings, program.name),
    )
