"""The embedded stack as a whole: bring it up in dependency order, take it down, report on it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from confluent_kafka import KafkaException
from pydantic import BaseModel

from connectors.sinks import SINKS, process_name
from govsync.control import access, provisioning
from govsync.index import store as index_store
from govsync.index import witness
from govsync.ops import instances as advertised
from govsync.stack import (
    background,
    connect,
    jvm,
    kafka,
    mariadb,
    mirror,
    postgres,
    registry,
    seed,
    standby,
    supervision,
)
from streams.config import mariadb as mariadb_logins
from streams.config.settings import Settings
from streams.kafka import admin, applied, credentials
from streams.kafka.admin import AdminError
from streams.model.topology import Topology, load_topology

log = logging.getLogger("govsync.stack")

State = Literal["up", "down"]

# Programs govsync itself starts besides the worker instances; stopped, with those, before
# the stack they depend on.
APP_PROCESSES = (
    "monitor",
    background.INDEXER_PROGRAM,
    background.API_PROGRAM,
    background.ACL_PROGRAM,
    mirror.NAME,
    standby.NAME,
    *(process_name(department) for department in SINKS),
)
# The stack's own programs, in the order `down` stops them, each step's together (Kafka's
# nodes: the last of three stopped alone would wait for a quorum that is gone).
STACK_PROCESSES = (
    (connect.NAME,),
    (registry.NAME,),
    kafka.PROGRAMS,
    (mariadb.NAME,),
    (postgres.NAME,),
)


class Supervised(BaseModel):
    """What supervisord says of a component: how often it restarted it, and why the
    component last ended by itself (e.g. "terminated by SIGKILL", "exit status 1")."""

    restarts: int = 0
    last_exit: str | None = None


class DatabaseStatus(Supervised):
    state: State
    host: str
    port: int
    user: str
    version: str | None = None
    pid: int | None = None


class PostgresStatus(DatabaseStatus):
    pass


class MariadbStatus(DatabaseStatus):
    """Down is normal when no source of the topology in force is a MariaDB database."""


class BrokerStatus(Supervised):
    """One KRaft node (broker and controller): up when its program runs and the cluster
    lists it as alive."""

    id: int
    program: str
    host: str
    port: int
    state: State
    pid: int | None = None


class KafkaStatus(Supervised):
    """Up when the cluster answers (through any broker); ``pid``, ``restarts`` and
    ``last_exit`` are node 1's, ``brokers`` every node's."""

    state: State
    bootstrap: str
    version: str | None = None
    pid: int | None = None
    brokers: list[BrokerStatus] = []


class ConnectStatus(Supervised):
    state: State
    url: str
    version: str | None = None
    pid: int | None = None


class RegistryStatus(Supervised):
    state: State
    url: str
    version: str | None = None
    pid: int | None = None


class WorkerInstance(Supervised):
    """A supervised instance of this machine, or one another machine advertises in the
    stage groups (no pid, restarts or last exit here)."""

    id: str
    state: State
    pid: int | None = None
    host: str | None = None
    metrics_url: str | None = None


class WorkerStatus(Supervised):
    """Up when any instance is; ``pid``, ``restarts`` and ``last_exit`` are the lowest
    instance's."""

    state: State
    pid: int | None = None
    instances: list[WorkerInstance] = []


class MonitorStatus(Supervised):
    state: State
    url: str
    pid: int | None = None


class IndexerStatus(Supervised):
    """The indexer program, and the database it writes (govsync/index)."""

    state: State
    database: str
    pid: int | None = None


class AclStatus(Supervised):
    """The ACL keeper (`govsync acl --follow`): department access follows approval state."""

    state: State
    pid: int | None = None


class MirrorStatus(Supervised):
    """MirrorMaker 2 (govsync/stack/mirror.py): down is normal when the topology in force
    names no upstream node; ``upstreams`` are the nodes it copies from."""

    state: State
    upstreams: list[str] = []
    pid: int | None = None


class ApiStatus(Supervised):
    """The query API (govsync/api): ``url`` is its base, ``/openapi.json`` its document."""

    state: State
    url: str
    pid: int | None = None


class Components(BaseModel):
    postgres: PostgresStatus
    mariadb: MariadbStatus
    kafka: KafkaStatus
    connect: ConnectStatus
    registry: RegistryStatus
    worker: WorkerStatus
    monitor: MonitorStatus
    indexer: IndexerStatus
    api: ApiStatus
    acl: AclStatus
    mirror: MirrorStatus


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
    index_store.ensure(settings)
    witness.ensure(settings)
    progress("seeding the department databases")
    data = seed.generate()
    for department in sorted(set(databases) & set(seed.seeded_departments())):
        seed.prepare_department(department, settings.pg_conninfo(department), data)
    progress("starting Kafka")
    kafka.start(settings)
    # Who may log in and do what follows the topology in force (the file only before the
    # first apply): an edited, unapplied file grants nothing.
    topology = applied.in_force(settings).topology
    start_mariadb(settings, topology, progress)
    progress("creating Kafka users and ACLs")
    access.apply(admin.admin_client(settings.bootstrap), settings, topology)
    background.start_acl(settings)  # ACLs follow approvals and expiry from now on
    progress("starting Apicurio Registry")
    registry.start(settings, topology)
    progress("starting Kafka Connect")
    connect.start(settings)
    progress("starting the indexer")
    background.start_indexer(settings)
    progress("starting the query API")
    background.start_api(settings)
    progress("starting MirrorMaker for the upstream nodes")
    start_mirror(settings, topology)


def start_mariadb(
    settings: Settings, topology: Topology, progress: Callable[[str], None] = lambda _: None
) -> None:
    """Start MariaDB, with its source databases and their seed, when ``topology`` has a
    MariaDB source; otherwise leave it be."""
    databases = source_databases(topology, "mariadb")
    if not databases:
        return
    progress("starting MariaDB")
    mariadb.start(settings)
    mariadb.ensure_databases(settings, databases)
    data = seed.generate()
    for department in sorted(set(databases) & set(seed.seeded_mariadb_departments())):
        seed.prepare_mariadb_department(
            department, mariadb_logins.connection_args(settings, department), data
        )


def start_mirror(settings: Settings, topology: Topology) -> None:
    """MirrorMaker for ``topology``'s upstream nodes, if any; one whose login has not been
    handed over is not started, and the rest of the node runs without it."""
    try:
        mirror.ensure(settings, topology)
    except credentials.PeerLoginMissing as exc:
        supervision.stop(settings, mirror.NAME)
        log.warning("MirrorMaker not started: %s", exc)


def apply_topology(
    topology: Topology,
    settings: Settings,
    text: str,
    dry_run: bool = False,
    as_authority: bool = False,
) -> provisioning.ApplyReport:
    """Apply ``topology`` here: control's apply, with the stack's own registry restarted
    when new principals need a login, and MariaDB started first when a source of
    ``topology`` is one (its connector must reach it)."""
    if not dry_run:
        start_mariadb(settings, topology)
    report = provisioning.apply(
        topology,
        settings,
        text,
        registry_users=registry,
        dry_run=dry_run,
        as_authority=as_authority,
    )
    if not dry_run:
        start_mirror(settings, topology)  # its topics exist now, and its ACLs
    return report


def department_databases(topology: Topology) -> list[str]:
    """One PostgreSQL database per department, plus any PostgreSQL source database named
    otherwise."""
    return sorted(set(topology.departments) | set(source_databases(topology, "postgres")))


def source_databases(topology: Topology, kind: Literal["postgres", "mariadb"]) -> list[str]:
    return sorted({s.database.name for s in topology.sources if s.database.kind == kind})


def down(settings: Settings, progress: Callable[[str], None] = lambda _: None) -> list[str]:
    """Stop everything, the applications first, then supervisord itself; returns what was
    running."""
    workers = [background.worker_name(i) for i in sorted(background.worker_instances(settings))]
    stopped = [name for name in (*APP_PROCESSES, *workers) if supervision.stop(settings, name)]
    for names in STACK_PROCESSES:
        progress(f"stopping {names[0]}")
        stopped += supervision.stop_together(settings, names)
    progress("stopping supervisord")
    supervision.shutdown(settings)
    return stopped


def _worker_instances(
    settings: Settings, programs_of: dict[int, supervision.ProgramStatus], kafka_up: bool
) -> list[WorkerInstance]:
    """The supervised instances here, with the metrics URL each advertises, then those
    advertised from elsewhere (Kafka down: the supervised ones alone)."""
    found: dict[str, advertised.WorkerInstance] = {}
    if kafka_up:
        with contextlib.suppress(AdminError, KafkaException):
            found = {i.id: i for i in advertised.worker_instances(settings)}
    local = []
    for instance, program in sorted(programs_of.items()):
        advert = found.get(str(instance))
        local.append(
            WorkerInstance(
                id=str(instance),
                state="up" if program.running else "down",
                pid=program.pid,
                restarts=program.restarts,
                last_exit=program.last_exit,
                host=advert.host if advert else None,
                metrics_url=advert.metrics_url if advert else None,
            )
        )
    supervised_ids = {w.id for w in local}
    remote = [
        WorkerInstance(id=i.id, state="up", host=i.host, metrics_url=i.metrics_url)
        for i in found.values()
        if i.id not in supervised_ids
    ]
    return local + remote


def status(settings: Settings) -> StackStatus:
    programs = supervision.statuses(settings)

    def state(ok: bool) -> State:
        return "up" if ok else "down"

    def supervised(name: str) -> dict[str, object]:
        program = programs.get(name)
        if program is None:
            return {}
        return {"pid": program.pid, "restarts": program.restarts, "last_exit": program.last_exit}

    def running(name: str) -> bool:
        return name in programs and programs[name].running

    pg_version = postgres.version(settings)
    mariadb_version = mariadb.version(settings) if running(mariadb.NAME) else None
    nodes = kafka.nodes(settings)
    alive = kafka.registered(settings) if any(running(n.name) for n in nodes) else set()
    kafka_up = bool(alive)
    connect_version = connect.version(settings)
    registry_version = registry.version(settings)
    instances = _worker_instances(settings, background.worker_instances(settings), kafka_up)
    lowest = instances[0].model_dump(include={"pid", "restarts", "last_exit"}) if instances else {}
    return StackStatus(
        state_dir=settings.state_dir,
        components=Components(
            postgres=PostgresStatus(
                state=state(pg_version is not None),
                host=settings.host,
                port=settings.pg_port,
                user=settings.pg_user,
                version=pg_version,
                **supervised(postgres.NAME),
            ),
            mariadb=MariadbStatus(
                state=state(mariadb_version is not None),
                host=settings.host,
                port=settings.mariadb_port,
                user=settings.mariadb_user,
                version=mariadb_version,
                **supervised(mariadb.NAME),
            ),
            kafka=KafkaStatus(
                state=state(kafka_up),
                bootstrap=settings.bootstrap,
                version=kafka.version(settings) if kafka_up else None,
                **supervised(kafka.NAME),
                brokers=[
                    BrokerStatus(
                        id=node.id,
                        program=node.name,
                        host=settings.host,
                        port=node.port,
                        state=state(running(node.name) and node.id in alive),
                        **supervised(node.name),
                    )
                    for node in nodes
                ],
            ),
            connect=ConnectStatus(
                state=state(connect_version is not None),
                url=settings.connect_url,
                version=connect_version,
                **supervised(connect.NAME),
            ),
            registry=RegistryStatus(
                state=state(registry_version is not None),
                url=settings.registry_url,
                version=registry_version,
                **supervised(registry.NAME),
            ),
            worker=WorkerStatus(
                state=state(any(i.state == "up" for i in instances)),
                instances=instances,
                **lowest,
            ),
            monitor=MonitorStatus(
                state=state(running("monitor")),
                url=f"http://{settings.host}:{settings.monitor_port}/",
                **supervised("monitor"),
            ),
            indexer=IndexerStatus(
                state=state(running(background.INDEXER_PROGRAM)),
                database=index_store.DATABASE,
                **supervised(background.INDEXER_PROGRAM),
            ),
            api=ApiStatus(
                state=state(running(background.API_PROGRAM)),
                url=f"http://{settings.host}:{settings.api_port}/",
                **supervised(background.API_PROGRAM),
            ),
            acl=AclStatus(
                state=state(running(background.ACL_PROGRAM)),
                **supervised(background.ACL_PROGRAM),
            ),
            mirror=MirrorStatus(
                state=state(running(mirror.NAME)),
                upstreams=mirror.upstreams(settings),
                **supervised(mirror.NAME),
            ),
        ),
    )
