"""The Kafka Connect distributed worker that hosts the Debezium connectors."""

from __future__ import annotations

from pathlib import Path

import httpx

from govsync.stack import jvm, supervision
from govsync.stack.process import require_free_port
from streams.config import mariadb, tls
from streams.config.secrets import write_private
from streams.config.settings import Settings
from streams.kafka import credentials

NAME = "connect"
# The Debezium connectors dist/plugins holds (deploy/local/pom.xml): Connect is ready once
# it has loaded both.
CONNECTORS = {
    "io.debezium.connector.postgresql.PostgresConnector",
    "io.debezium.connector.mariadb.MariaDbConnector",
}


def _rest_login(settings: Settings) -> Path:
    """The JAAS file of the REST API's basic-auth extension and the users file it names."""
    user, password = credentials.connect_rest_auth(settings)
    users = settings.path("secrets", "connect-rest-users.properties")
    write_private(users, f"{user}={password}\n")
    login = settings.path("connect", "connect-rest-jaas.conf")
    login.write_text(
        "KafkaConnect {\n"
        "  org.apache.kafka.connect.rest.basic.auth.extension.PropertyFileLoginModule required\n"
        f'  file="{users}";\n'
        "};\n"
    )
    return login


def _render_config(settings: Settings) -> str:
    write_private(
        credentials.registry_login_file(settings),
        f"password={credentials.registry_password(settings, credentials.CONNECT)}\n",
    )
    write_private(
        mariadb.capture_login_file(settings),
        f"password={mariadb.password(settings, mariadb.CAPTURE_USER)}\n",
    )
    return jvm.render_config(
        "connect-distributed.properties",
        settings.path("connect", "connect-distributed.properties"),
        bootstrap=settings.bootstrap,
        host=settings.host,
        connect_port=settings.connect_port,
        plugin_path=settings.dist_dir / "plugins",
        connect_jaas=credentials.jaas(
            credentials.CONNECT, credentials.password(settings, credentials.CONNECT)
        ),
        client_protocol=settings.kafka_protocol,
        tls_config="".join(
            tls.java_client_config(settings, prefix)
            for prefix in ("", "producer.", "consumer.", "admin.")
        ),
    )


def start(settings: Settings) -> None:
    if supervision.is_running(settings, NAME):
        return
    require_free_port(settings.host, settings.connect_port, "Kafka Connect", "connect_port")
    config = _render_config(settings)
    program = supervision.Program(
        name=NAME,
        command=jvm.java_command(
            "org.apache.kafka.connect.cli.ConnectDistributed",
            heap=settings.connect_heap,
            cp=jvm.classpath(settings.dist_dir / "kafka" / "libs"),
            system_properties={
                "java.security.auth.login.config": str(_rest_login(settings)),
                # Debezium's converter reaches the registry over HTTPS with GOVSYNC_REGISTRY_TLS.
                **tls.jvm_trust(settings),
            },
            args=[config],
        ),
        log=settings.path("logs", "connect.log"),
        stopwaitsecs=60,
    )
    supervision.start_until_ready(
        settings,
        program,
        ready=lambda: _plugins_loaded(settings),
        what="Kafka Connect",
        timeout=180,
    )


def _plugins_loaded(settings: Settings) -> bool:
    try:
        response = httpx.get(
            f"{settings.connect_url}/connector-plugins",
            auth=credentials.connect_rest_auth(settings),
            timeout=2,
        )
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    return CONNECTORS.issubset(plugin["class"] for plugin in response.json())


def version(settings: Settings) -> str | None:
    try:
        auth = credentials.connect_rest_auth(settings)
        return httpx.get(f"{settings.connect_url}/", auth=auth, timeout=2).json()["version"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
