"""govsync's own long-running processes — worker instances, the reference sinks, the
monitor, the indexer — as supervised programs running `python -m govsync.cli <command>`.

Each worker instance is its own program, ``worker-<id>``, with ``GOVSYNC_WORKER_INSTANCE``
set to its id. Instance 0 serves metrics on ``GOVSYNC_WORKER_PORT``; the others get
``GOVSYNC_WORKER_PORT=0`` (a free port the worker picks).
"""

from __future__ import annotations

import sys

from pydantic import BaseModel

from govsync.stack import supervision
from streams.config.settings import REPO_ROOT, Settings
from streams.kafka import credentials

WORKER_PREFIX = "worker-"
INDEXER_PROGRAM = "indexer"
API_PROGRAM = "api"
ACL_PROGRAM = "acl"


class Started(BaseModel):
    name: str
    pid: int | None


class WorkerStarted(Started):
    instance: int


def app_program(
    settings: Settings, name: str, cli_args: list[str], env: dict[str, str] | None = None
) -> supervision.Program:
    return supervision.Program(
        name=name,
        command=[sys.executable, "-m", "govsync.cli", *cli_args],
        log=settings.path("logs", f"{name}.log"),
        directory=REPO_ROOT,
        environment={**supervision.inherited_environment(), **(env or {})},
        startsecs=3,
    )


def start_app_process(
    settings: Settings, name: str, cli_args: list[str], principal: str | None = None
) -> Started:
    """Run `govsync <cli_args>` as program ``name`` (as Kafka ``principal``, else admin)
    unless it already runs; returns once it stayed up through its start-up (fails if it
    exited before)."""
    env = {"GOVSYNC_KAFKA_PRINCIPAL": principal} if principal else None
    started = supervision.start(settings, app_program(settings, name, cli_args, env), wait=True)
    return Started(name=name, pid=started.pid)


def worker_name(instance: int) -> str:
    return f"{WORKER_PREFIX}{instance}"


def worker_instances(settings: Settings) -> dict[int, supervision.ProgramStatus]:
    """Every configured worker instance, running or not, by id."""
    return {
        int(name.removeprefix(WORKER_PREFIX)): program
        for name, program in supervision.statuses(settings).items()
        if name.startswith(WORKER_PREFIX) and name.removeprefix(WORKER_PREFIX).isdigit()
    }


def next_instance(configured: set[int]) -> int:
    """The lowest id not configured yet."""
    return next(i for i in range(len(configured) + 1) if i not in configured)


def worker_program(settings: Settings, instance: int) -> supervision.Program:
    env = {"GOVSYNC_WORKER_INSTANCE": str(instance)}
    if instance != 0:
        env["GOVSYNC_WORKER_PORT"] = "0"
    return app_program(settings, worker_name(instance), ["worker"], env)


def start_worker(settings: Settings, instance: int = 0) -> WorkerStarted:
    """Worker ``instance``, started unless it already runs."""
    started = supervision.start(settings, worker_program(settings, instance), wait=True)
    return WorkerStarted(name=started.name, pid=started.pid, instance=instance)


def add_worker(settings: Settings) -> WorkerStarted:
    """Another worker instance, with the lowest id not configured yet."""
    return start_worker(settings, next_instance(set(worker_instances(settings))))


def restart_worker(settings: Settings, instance: int) -> WorkerStarted:
    """Worker ``instance`` started afresh, with this command's environment."""
    supervision.stop(settings, worker_name(instance))
    return start_worker(settings, instance)


def start_api(settings: Settings) -> Started:
    """The query API (uvicorn and its worker processes), under its own Kafka principal,
    started unless it already runs."""
    cli_args = ["api", "--port", str(settings.api_port)]
    return start_app_process(settings, API_PROGRAM, cli_args, credentials.API)


def start_indexer(settings: Settings) -> Started:
    """The indexer, under its own Kafka principal, started unless it already runs."""
    return start_app_process(settings, INDEXER_PROGRAM, ["indexer"], credentials.INDEXER)


def start_acl(settings: Settings) -> Started:
    """The ACL keeper (`govsync acl --follow`, as admin), started unless it already runs."""
    return start_app_process(settings, ACL_PROGRAM, ["acl", "--follow"])
