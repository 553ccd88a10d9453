"""MirrorMaker 2 on a receiving node: what upstream govsync nodes deliver to this node,
copied into this node's Kafka (federation, docs/federation.md).

Kafka's own replicator (``connect-mirror``) in dedicated mode, one supervised process,
run only while the topology in force names upstream nodes. It logs in here as ``mirror``
and at each upstream as the department that stands for this node there; its Connect
worker keeps its offsets, configs and status here (``mm2-*.<upstream>.internal``).
"""

from __future__ import annotations

from govsync.stack import jvm, supervision
from streams.config import tls
from streams.config.secrets import write_private
from streams.config.settings import Settings
from streams.contract.topics import mirror_target_alias, upstream_topic_patterns
from streams.kafka import credentials
from streams.model.topology import Topology, Upstream

NAME = "mirror"
MAIN = "org.apache.kafka.connect.mirror.MirrorMaker"
HEAP = "384m"


def upstream_config(upstream: Upstream, this: str, password: str, topics: list[str]) -> str:
    """One upstream cluster's lines: how to reach it, and which of its topics flow here."""
    name = upstream.node
    return "\n".join(
        [
            f"{name}.bootstrap.servers = {upstream.bootstrap}",
            f"{name}.security.protocol = SASL_PLAINTEXT",
            f"{name}.sasl.mechanism = {credentials.MECHANISM}",
            f"{name}.sasl.jaas.config = {credentials.jaas(upstream.login, password)}",
            # Only committed deliveries: the upstream's route writes them in transactions.
            f"{name}.consumer.isolation.level = read_committed",
            f"{name}->{this}.enabled = true",
            f"{name}->{this}.topics = {', '.join(topics)}",
            f"{this}->{name}.enabled = false",
        ]
    )


def render(settings: Settings, topology: Topology) -> str | None:
    """The MirrorMaker configuration for ``topology``'s upstreams (None: it has none);
    written owner-only, as it holds passwords."""
    federation = topology.federation
    if federation is None or not federation.upstreams:
        return None
    this = mirror_target_alias(federation.node)
    upstreams = [
        upstream_config(
            upstream,
            this,
            credentials.peer_password(settings, upstream.node, "kafka"),
            upstream_topic_patterns(upstream),
        )
        for upstream in federation.upstreams
    ]
    return jvm.render_config(
        "mirror-maker.properties",
        settings.path("mirror", "mirror-maker.properties"),
        clusters=", ".join([this, *(u.node for u in federation.upstreams)]),
        this=this,
        bootstrap=settings.bootstrap,
        client_protocol=settings.kafka_protocol,
        mirror_jaas=credentials.jaas(
            credentials.MIRROR, credentials.password(settings, credentials.MIRROR)
        ),
        upstreams="\n".join(upstreams),
        tls_config=tls.java_client_config(settings, f"{this}."),
    )


def mirror_maker(settings: Settings, name: str, config: str, target: str) -> supervision.Program:
    """MirrorMaker 2 in dedicated mode as supervised program ``name``, running the flows
    into cluster alias ``target`` of ``config``."""
    return supervision.Program(
        name=name,
        command=jvm.java_command(
            MAIN,
            heap=HEAP,
            cp=jvm.classpath(settings.dist_dir / "kafka" / "libs"),
            args=[config, "--clusters", target],
        ),
        log=settings.path("logs", f"{name}.log"),
        stopwaitsecs=30,
    )


def program(settings: Settings, config: str, this: str) -> supervision.Program:
    return mirror_maker(settings, NAME, config, mirror_target_alias(this))


def ensure(settings: Settings, topology: Topology) -> bool:
    """Run MirrorMaker for ``topology``'s upstreams, restarted when they changed, and
    stopped when there are none; whether it runs."""
    config = render(settings, topology)
    if config is None or topology.federation is None:
        supervision.stop(settings, NAME)
        return False
    wanted = program(settings, config, topology.federation.node)
    rendered = settings.path("mirror", "mirror-maker.properties").read_text()
    applied = settings.path("mirror", "running.properties")
    if (
        supervision.is_running(settings, NAME)
        and applied.exists()
        and applied.read_text() == rendered
    ):
        return True
    supervision.stop(settings, NAME)
    supervision.start(settings, wanted, wait=True)
    write_private(applied, rendered)
    return True


def upstreams(settings: Settings) -> list[str]:
    """The upstream nodes the running MirrorMaker copies from (from its configuration)."""
    applied = settings.path("mirror", "running.properties")
    if not applied.exists():
        return []
    for line in applied.read_text().splitlines():
        if line.startswith("clusters = "):
            return [name.strip() for name in line.removeprefix("clusters = ").split(",")][1:]
    return []
