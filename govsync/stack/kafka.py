"""Kafka's KRaft nodes, each a broker and a controller: one by default, three with
``GOVSYNC_KAFKA_BROKERS=3`` (a cluster that keeps every acknowledged record, and takes new
ones, when one node dies).

Each node is a supervised program of its own, so one can die and come back alone: node 1
is ``kafka`` (the name scripts and the fault tests use), the others ``kafka-2`` and
``kafka-3``. Node i's files are under ``<state>/kafka`` for node 1 (as before there were
three) and ``<state>/kafka-<i>`` for the others; its ports are in ``Settings``.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from govsync.stack import jvm, supervision, tls
from govsync.stack.process import StackError, require_free_port, wait_until
from streams.config.settings import Settings
from streams.kafka import clients, credentials

NAME = "kafka"
# Every program a node may have, whatever GOVSYNC_KAFKA_BROKERS says now: `govsync down`
# stops the nodes a stack was started with.
PROGRAMS = (NAME, f"{NAME}-2", f"{NAME}-3")
SECURED_MARKER = "govsync-secured"
# How many nodes the storage was formatted for (absent: one, formatted before the choice).
NODES_MARKER = "govsync-nodes"
# A write with acks=all needs this many copies in sync when there are three nodes: one
# node may be down without refusing writes, and an acknowledged record is on two disks.
MIN_INSYNC_OF_THREE = 2


@dataclass(frozen=True)
class Node:
    """One KRaft node of the embedded stack."""

    id: int  # node.id, from 1
    name: str  # its supervisord program
    port: int  # the client listener (SASL)
    controller_port: int
    directory: Path  # server.properties and data/

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def config_path(self) -> Path:
        return self.directory / "server.properties"


def nodes(settings: Settings) -> list[Node]:
    """The nodes ``settings`` asks for, node 1 first."""
    return [
        Node(
            id=index + 1,
            name=PROGRAMS[index],
            port=port,
            controller_port=controller_port,
            directory=settings.path(PROGRAMS[index]),
        )
        for index, (port, controller_port) in enumerate(
            zip(settings.kafka_ports, settings.controller_ports, strict=True)
        )
    ]


def replication_factor(settings: Settings) -> int:
    """Copies of every topic: one per node (there are at most three)."""
    return settings.kafka_brokers


def min_insync_replicas(settings: Settings) -> int:
    return MIN_INSYNC_OF_THREE if settings.kafka_brokers >= 3 else 1


def quorum_bootstrap(settings: Settings) -> str:
    return ",".join(f"{settings.host}:{n.controller_port}" for n in nodes(settings))


def render_config(settings: Settings, node: Node) -> str:
    """Write ``node``'s server.properties; its path."""
    return jvm.render_config(
        "server.properties",
        node.config_path,
        node_id=node.id,
        quorum_bootstrap=quorum_bootstrap(settings),
        host=settings.host,
        kafka_port=node.port,
        controller_port=node.controller_port,
        data_dir=node.data_dir,
        replication_factor=replication_factor(settings),
        min_insync_replicas=min_insync_replicas(settings),
        admin_jaas=credentials.jaas(credentials.ADMIN, _password(settings, credentials.ADMIN)),
        controller_password=_password(settings, credentials.CONTROLLER),
        client_protocol=settings.kafka_protocol,
        tls_config=tls.broker_config(settings),
    )


def _password(settings: Settings, principal: str) -> str:
    return credentials.password(settings, principal)


def _kafka_uuid() -> str:
    """A random id in Kafka's form (URL-safe base64 of a UUID, unpadded), for the cluster
    and each controller's log directory. One that starts with ``-`` would be read as an
    option by the storage tool (one in 64 did: the format failed now and then), so those
    are drawn again, as Kafka's own Uuid does."""
    while True:
        drawn = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not drawn.startswith("-"):
            return drawn


def quorum_arguments(settings: Settings, directory_ids: dict[int, str]) -> list[str]:
    """How the storage tool learns the controller quorum: a single node is its own voter
    (``--standalone``); three are named with their log directories' ids, the same list on
    every node (a dynamic quorum, KIP-853, as one node's already is)."""
    if settings.kafka_brokers == 1:
        return ["--standalone"]
    voters = ",".join(
        f"{n.id}@{settings.host}:{n.controller_port}:{directory_ids[n.id]}" for n in nodes(settings)
    )
    return ["--initial-controllers", voters]


def _check_formatted(settings: Settings) -> bool:
    """Whether the nodes' storage is formatted already (then as this stack needs it)."""
    every = nodes(settings)
    formatted = [n for n in every if (n.data_dir / "meta.properties").exists()]
    for node in formatted:
        if not (node.data_dir / SECURED_MARKER).exists():
            raise StackError(
                f"{node.directory} was formatted before Kafka required SASL logins;"
                " its broker cannot start secured. Run `govsync down`, delete that"
                " directory (its topics are lost) and run `govsync up` again"
            )
        marker = node.data_dir / NODES_MARKER
        formatted_for = int(marker.read_text()) if marker.exists() else 1
        if formatted_for != settings.kafka_brokers:
            raise StackError(
                f"{node.directory} was formatted for {formatted_for} Kafka node(s), and"
                f" GOVSYNC_KAFKA_BROKERS is {settings.kafka_brokers}: a quorum does not"
                " change size by restarting. Run `govsync down`, delete the Kafka"
                " directories in the state directory (their topics are lost) or choose"
                " another GOVSYNC_STATE_DIR, and run `govsync up` again"
            )
    if formatted and len(formatted) != len(every):
        missing = [str(n.directory) for n in every if n not in formatted]
        raise StackError(
            f"Kafka nodes {', '.join(missing)} have no storage while the others have:"
            " run `govsync down` and delete every Kafka directory of the state directory"
            " (the topics are lost), or restore the missing ones"
        )
    return bool(formatted)


def _format_storage(settings: Settings) -> None:
    """Format every node's log directory once, with one cluster id; KRaft refuses to start
    on an unformatted one. The admin's SCRAM credential goes into the first metadata, as
    the brokers themselves log in with it; every other principal is added later through
    the admin API. The nodes are formatted side by side (a JVM each)."""
    if _check_formatted(settings):
        return
    cluster_id = _kafka_uuid()
    directory_ids = {n.id: _kafka_uuid() for n in nodes(settings)}
    admin = f"SCRAM-SHA-512=[name={credentials.ADMIN},password={_password(settings, 'admin')}]"
    quorum = quorum_arguments(settings, directory_ids)
    runs = {}
    for node in nodes(settings):
        argv = jvm.java_command(
            "kafka.tools.StorageTool",
            heap="256m",
            cp=jvm.classpath(settings.dist_dir / "kafka" / "libs"),
            args=[
                *("format", "-t", cluster_id, "-c", str(node.config_path)),
                *quorum,
                *("--add-scram", admin),
            ],
        )
        runs[node] = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    failures = []
    for node, run in runs.items():
        stdout, stderr = run.communicate()
        if run.returncode != 0:
            failures.append(f"node {node.id}: {(stderr.strip() or stdout.strip())[-600:]}")
    if failures:
        raise StackError(f"formatting Kafka storage failed: {'; '.join(failures)}")
    for node in nodes(settings):
        (node.data_dir / SECURED_MARKER).write_text("SASL/SCRAM-SHA-512 from the first start\n")
        (node.data_dir / NODES_MARKER).write_text(f"{settings.kafka_brokers}\n")


def start(settings: Settings) -> None:
    """Start the nodes that are not running and wait until every one is registered."""
    every = nodes(settings)
    pending = [n for n in every if not supervision.is_running(settings, n.name)]
    if not pending:
        return
    for node in pending:
        require_free_port(settings.host, node.port, f"Kafka (node {node.id})", "kafka_port")
        require_free_port(
            settings.host,
            node.controller_port,
            f"the KRaft controller (node {node.id})",
            "controller_port",
        )
    if settings.kafka_tls:
        tls.ensure_certificates(settings)
    for node in every:  # each names the others: all are rendered, whichever starts
        render_config(settings, node)
    _format_storage(settings)
    # All at once, before waiting: with three, no node has a quorum until two run.
    for node in pending:
        supervision.start(settings, program(settings, node))
    wanted = {n.id for n in every}
    wait_until(
        lambda: wanted <= registered(settings),
        what="Kafka" if len(every) == 1 else f"Kafka's {len(every)} nodes",
        timeout=90,
        log_file=log_file(settings, pending[0]),
        gave_up=lambda: any(supervision.gave_up(settings, n.name) for n in pending),
    )


def log_file(settings: Settings, node: Node) -> Path:
    return settings.path("logs", f"{node.name}.log")


def program(settings: Settings, node: Node) -> supervision.Program:
    return supervision.Program(
        name=node.name,
        command=jvm.java_command(
            "kafka.Kafka",
            heap=settings.kafka_heap,
            cp=jvm.classpath(settings.dist_dir / "kafka" / "libs"),
            args=[str(node.config_path)],
        ),
        log=log_file(settings, node),
        stopwaitsecs=60,
    )


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(clients.config(settings.bootstrap, log_level=0))


def registered(settings: Settings) -> set[int]:
    """The ids of the brokers the cluster lists as alive (registered, not fenced); empty
    when no broker answers."""
    try:
        return set(_admin(settings).list_topics(timeout=2).brokers)
    except Exception:
        return set()


def is_up(settings: Settings) -> bool:
    """Whether the cluster answers (through any of its brokers)."""
    return bool(registered(settings))


def version(settings: Settings) -> str | None:
    return jvm.jar_version(settings.dist_dir / "kafka" / "libs", "kafka_2.13")
