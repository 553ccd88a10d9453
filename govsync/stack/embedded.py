"""The embedded stack as a whole: bring it up in dependency order, take it down, report on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from connectors.sinks import SINKS, process_name
from govsync.control import access, provisioning
from govsync.stack import connect, jvm, kafka, postgres, registry, seed
from govsync.stack.process import read_pid, stop
from streams.config.settings import Settings
from streams.kafka import admin, applied
from streams.model.topology import Topology, load_topology

State = Literal["up", "down"]

# Processes govsync itself starts (monitor, sinks, worker); stopped before the stack they
# depend on.
APP_PROCESSES = ("monitor", *(process_name(department) for department in SINKS), "worker")


class PostgresStatus(BaseModel):
    state: State
    host: str
    port: int
    user: str
    version: str | None = None
    pid: int | None = None


class KafkaStatus(BaseModel):
    state: State
    bootstrap: str
    version: str | None = None
    pid: int | None = None


class ConnectStatus(BaseModel):
    state: State
    url: str
    version: str | None = None
    pid: int | None = None


class RegistryStatus(BaseModel):
    state: State
    url: str
    version: str | None = None
    pid: int | None = None


class WorkerStatus(BaseModel):
    state: State
    pid: int | None = None


class MonitorStatus(BaseModel):
    state: State
    url: str
    pid: int | None = None


class Components(BaseModel):
    postgres: PostgresStatus
    kafka: KafkaStatus
    connect: ConnectStatus
    registry: RegistryStatus
    worker: WorkerStatus
    monitor: MonitorStatus


class StackStatus(BaseModel):
    state_dir: Path
    components: Components

    @property
    def all_up(self) -> bool:
        """The infrastructure, not the worker: that one is started separately."""
        parts = self.components
        return all(
            c.state == "up" for c in (parts.postgres, parts.kafka, parts.connect, parts.registry)
        )


def up(settings: Settings, progress: Callable[[str], None] = lambda _: None) -> None:
    """Start whatever is not running yet; a second call reuses downloads and data."""
    progress("fetching Kafka, Connect, Debezium and Apicurio from Maven Central (first run only)")
    jvm.ensure_dist(settings)
    topology = load_topology(settings.topology)
    progress("starting PostgreSQL")
    postgres.start(settings)
    databases = department_databases(topology)
    postgres.ensure_databases(settings, [*databases, postgres.REGISTRY_DATABASE])
    progress("seeding the department databases")
    data = seed.generate()
    for department in sorted(set(databases) & set(seed.seeded_departments())):
        seed.prepare_department(department, settings.pg_conninfo(department), data)
    progress("starting Kafka")
    kafka.start(settings)
    # Who may log in and do what follows the topology in force (the file only before the
    # first apply): an edited, unapplied file grants nothing.
    topology = applied.in_force(settings).topology
    progress("creating Kafka users and ACLs")
    access.apply(admin.admin_client(settings.bootstrap), settings, topology)
    progress("starting Apicurio Registry")
    registry.start(settings, topology)
    progress("starting Kafka Connect")
    connect.start(settings)


def apply_topology(
    topology: Topology, settings: Settings, text: str, dry_run: bool = False
) -> provisioning.ApplyReport:
    """Apply ``topology`` here: control's apply, with the stack's own registry restarted
    when new principals need a login."""
    return provisioning.apply(topology, settings, text, registry_users=registry, dry_run=dry_run)


def department_databases(topology: Topology) -> list[str]:
    """One database per department, plus any source database named otherwise."""
    return sorted(set(topology.departments) | {s.database.name for s in topology.sources})


def down(settings: Settings, progress: Callable[[str], None] = lambda _: None) -> list[str]:
    """Stop everything, the applications first; returns what was running."""
    run_dir = settings.path("run")
    stopped = [name for name in APP_PROCESSES if stop(run_dir, name)]
    for name in (connect.NAME, registry.NAME, kafka.NAME):
        progress(f"stopping {name}")
        if stop(run_dir, name, timeout=60):
            stopped.append(name)
    progress("stopping postgres")
    if postgres.stop(settings):
        stopped.append("postgres")
    return stopped


def status(settings: Settings) -> StackStatus:
    run_dir = settings.path("run")

    def state(ok: bool) -> State:
        return "up" if ok else "down"

    pg_version = postgres.version(settings)
    kafka_pid = read_pid(run_dir, kafka.NAME)
    kafka_up = kafka_pid is not None and kafka.is_up(settings)
    connect_version = connect.version(settings)
    registry_version = registry.version(settings)
    worker_pid = read_pid(run_dir, "worker")
    monitor_pid = read_pid(run_dir, "monitor")
    return StackStatus(
        state_dir=settings.state_dir,
        components=Components(
            postgres=PostgresStatus(
                state=state(pg_version is not None),
                host=settings.host,
                port=settings.pg_port,
                user=settings.pg_user,
                version=pg_version,
                pid=postgres.pid(settings) if pg_version else None,
            ),
            kafka=KafkaStatus(
                state=state(kafka_up),
                bootstrap=settings.bootstrap,
                version=kafka.version(settings) if kafka_up else None,
                pid=kafka_pid,
            ),
            connect=ConnectStatus(
                state=state(connect_version is not None),
                url=settings.connect_url,
                version=connect_version,
                pid=read_pid(run_dir, connect.NAME),
            ),
            registry=RegistryStatus(
                state=state(registry_version is not None),
                url=settings.registry_url,
                version=registry_version,
                pid=read_pid(run_dir, registry.NAME),
            ),
            worker=WorkerStatus(state=state(worker_pid is not None), pid=worker_pid),
            monitor=MonitorStatus(
                state=state(monitor_pid is not None),
                url=f"http://{settings.host}:{settings.monitor_port}/",
                pid=monitor_pid,
            ),
        ),
    )
