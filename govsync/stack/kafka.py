"""The single KRaft broker+controller."""

from __future__ import annotations

import base64
import subprocess
import uuid

from confluent_kafka.admin import AdminClient

from govsync.stack import jvm, supervision, tls
from govsync.stack.process import StackError, require_free_port
from streams.config.settings import Settings
from streams.kafka import clients, credentials

NAME = "kafka"
SECURED_MARKER = "govsync-secured"


def _render_config(settings: Settings) -> str:
    return jvm.render_config(
        "server.properties",
        settings.path("kafka", "server.properties"),
        host=settings.host,
        kafka_port=settings.kafka_port,
        controller_port=settings.controller_port,
        data_dir=settings.path("kafka", "data"),
        admin_jaas=credentials.jaas(credentials.ADMIN, _password(settings, credentials.ADMIN)),
        controller_password=_password(settings, credentials.CONTROLLER),
        client_protocol=settings.kafka_protocol,
        tls_config=tls.broker_config(settings),
    )


def _password(settings: Settings, principal: str) -> str:
    return credentials.password(settings, principal)


def _cluster_id() -> str:
    """A random cluster id in Kafka's form (URL-safe base64 of a UUID, unpadded). One that
    starts with ``-`` would be read as an option by the storage tool (one in 64 did: the
    format failed now and then), so those are drawn again, as Kafka's own Uuid does."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _format_storage(settings: Settings, config: str) -> None:
    """Format the log directory once; KRaft refuses to start on an unformatted one. The
    admin's SCRAM credential goes into the first metadata, as the broker itself logs in
    with it; every other principal is added later through the admin API."""
    marker = settings.path("kafka", "data", SECURED_MARKER)
    if settings.path("kafka", "data", "meta.properties").exists():
        if not marker.exists():
            raise StackError(
                f"{settings.path('kafka')} was formatted before Kafka required SASL logins;"
                " its broker cannot start secured. Run `govsync down`, delete that"
                " directory (its topics are lost) and run `govsync up` again"
            )
        return
    cluster_id = _cluster_id()
    admin = f"SCRAM-SHA-512=[name={credentials.ADMIN},password={_password(settings, 'admin')}]"
    argv = jvm.java_command(
        "kafka.tools.StorageTool",
        heap="256m",
        cp=jvm.classpath(settings.dist_dir / "kafka" / "libs"),
        args=["format", "-t", cluster_id, "-c", config, "--standalone", "--add-scram", admin],
    )
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-600:]
        raise StackError(f"formatting Kafka storage failed: {output}")
    marker.write_text("SASL/SCRAM-SHA-512 from the first start\n")


def start(settings: Settings) -> None:
    if supervision.is_running(settings, NAME):
        return
    require_free_port(settings.host, settings.kafka_port, "Kafka", "kafka_port")
    require_free_port(
        settings.host, settings.controller_port, "the KRaft controller", "controller_port"
    )
    if settings.kafka_tls:
        tls.ensure_certificates(settings)
    config = _render_config(settings)
    _format_storage(settings, config)
    supervision.start_until_ready(
        settings, program(settings, config), ready=lambda: is_up(settings), what="Kafka", timeout=90
    )


def program(settings: Settings, config: str) -> supervision.Program:
    return supervision.Program(
        name=NAME,
        command=jvm.java_command(
            "kafka.Kafka",
            heap=settings.kafka_heap,
            cp=jvm.classpath(settings.dist_dir / "kafka" / "libs"),
            args=[config],
        ),
        log=settings.path("logs", "kafka.log"),
        stopwaitsecs=60,
    )


def is_up(settings: Settings) -> bool:
    try:
        admin = AdminClient(clients.config(settings.bootstrap, log_level=0))
        admin.list_topics(timeout=2)
    except Exception:
        return False
    return True


def version(settings: Settings) -> str | None:
    return jvm.jar_version(settings.dist_dir / "kafka" / "libs", "kafka_2.13")
