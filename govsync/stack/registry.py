"""Apicurio Registry 3.x, storing its schemas in the stack's PostgreSQL so they survive restarts.

Every request must authenticate (HTTP Basic against the registry's embedded user realm)
and roles decide what it may do: ``admin`` registers govsync's schemas, ``connect``
registers Debezium's, and every other principal — each department, the worker — may
only read. The users live in a 0600 file in the state directory that Quarkus reads at
start-up, so no password is on a command line; a new department means a restart, which
`topology apply` does with capture paused.
"""

from __future__ import annotations

import httpx

from govsync.control import access
from govsync.stack import jvm, supervision
from govsync.stack import tls as certificates
from govsync.stack.postgres import REGISTRY_DATABASE
from govsync.stack.process import require_free_port
from streams.config import tls
from streams.config.secrets import write_private
from streams.config.settings import Settings
from streams.kafka import credentials
from streams.model.topology import Topology

NAME = "registry"
USERS_FILE = "registry-users.properties"


def users_config(settings: Settings, topology: Topology) -> str:
    """The registry's private config: its users and, with TLS, its keystore."""
    lines = ["quarkus.security.users.embedded.plain-text=true"]
    lines += [f"{name}={value}" for name, value in tls.registry_ssl(settings).items()]
    for principal in (credentials.ADMIN, *access.principals(topology)):
        secret = credentials.registry_password(settings, principal)
        lines.append(f"quarkus.security.users.embedded.users.{principal}={secret}")
        lines.append(
            f"quarkus.security.users.embedded.roles.{principal}="
            f"{credentials.registry_role(principal)}"
        )
    return "\n".join(lines) + "\n"


def users_outdated(settings: Settings, topology: Topology) -> bool:
    """Whether the registry's users differ from the principals ``topology`` implies."""
    path = settings.path("secrets", USERS_FILE)
    return not path.exists() or path.read_text() != users_config(settings, topology)


def restart(settings: Settings, topology: Topology) -> None:
    """Restart a running registry with ``topology``'s users (the realm is read at start-up)."""
    if supervision.stop(settings, NAME):
        start(settings, topology)
    else:
        write_private(settings.path("secrets", USERS_FILE), users_config(settings, topology))


def start(settings: Settings, topology: Topology) -> None:
    if supervision.is_running(settings, NAME):
        return
    require_free_port(settings.host, settings.registry_port, "Apicurio Registry", "registry_port")
    if settings.registry_tls:
        certificates.ensure_certificates(settings)
    users = write_private(settings.path("secrets", USERS_FILE), users_config(settings, topology))
    jdbc = f"jdbc:postgresql://{settings.host}:{settings.pg_port}/{REGISTRY_DATABASE}"
    program = supervision.Program(
        name=NAME,
        command=jvm.java_command(
            None,
            heap=settings.registry_heap,
            jar=jvm.registry_jar(settings.dist_dir),
            system_properties={
                "quarkus.http.host": settings.host,
                # With TLS the port is HTTPS only (its config file says so).
                "quarkus.http.port": "0" if settings.registry_tls else str(settings.registry_port),
                "apicurio.storage.kind": "sql",
                "apicurio.storage.sql.kind": "postgresql",
                "apicurio.datasource.url": jdbc,
                "apicurio.datasource.username": settings.pg_user,
                # Loopback trust authentication ignores it, but the pool insists on one.
                "apicurio.datasource.password": "trust",
                "apicurio.datasource.jdbc.initial-size": "2",
                "apicurio.datasource.jdbc.min-size": "2",
                "apicurio.datasource.jdbc.max-size": "10",
                "quarkus.http.auth.basic": "true",
                "apicurio.auth.role-based-authorization": "true",
                "apicurio.auth.role-source": "token",  # the roles of the authenticated identity
                "quarkus.config.locations": users.as_uri(),
                "quarkus.log.level": "WARN",
                'quarkus.log.category."io.apicurio".level': "INFO",
            },
        ),
        log=settings.path("logs", "registry.log"),
        directory=settings.dist_dir / "apicurio",
        stopwaitsecs=60,
    )
    supervision.start_until_ready(
        settings,
        program,
        ready=lambda: version(settings) is not None,
        what="Apicurio Registry",
        timeout=120,
    )


def version(settings: Settings) -> str | None:
    url = f"{settings.registry_base_url}/apis/registry/v3/system/info"
    try:
        return httpx.get(url, timeout=2, verify=tls.http_verify(settings)).json()["version"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
