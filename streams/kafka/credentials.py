"""Principals and their credentials: SCRAM-SHA-512 on Kafka, HTTP Basic on the schema registry.

Every client authenticates: ``admin`` (operators' commands, provisioning; a super user),
``worker`` (the stream processors), ``ledger`` (the worker's lineage and audit stage),
``indexer`` (the operations indexes), ``api`` (the query API),
``connect`` (Kafka Connect with Debezium) and one principal per department, named by its
id, for its sink. The broker's controller listener has its own ``controller`` login.
Passwords are generated in the state directory (streams/config/secrets.py) and never printed;
``client-<principal>.properties`` files there let Kafka's own tools and a department's
clients connect as that principal. On Kubernetes a principal logs in under its KafkaUser's
name (``kubernetes_name``: ``social_security`` is ``social-security``), its password file
keeps the id.

The same principals log in to Apicurio Registry, with passwords of their own: ``admin``
registers schemas (apply), ``connect`` registers Debezium's, and everyone else, the
departments and the worker included, may only read.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from streams.config import tls
from streams.config.secrets import private_secret, write_private
from streams.config.settings import Settings

ADMIN, WORKER, CONNECT, CONTROLLER = "admin", "worker", "connect", "controller"
LEDGER = "ledger"  # the worker's lineage and audit stage: reads deliveries, writes the trail
INDEXER = "indexer"  # reads the trail into the index database (govsync/index)
API = "api"  # the query API (govsync/api): writes govsync.queries, reads the applied topology
MIRROR = "mirror"  # MirrorMaker 2: writes what upstream nodes deliver to this one
MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192

# Apicurio's role-based authorization roles.
REGISTRY_ADMIN, REGISTRY_WRITER, REGISTRY_READER = "sr-admin", "sr-developer", "sr-readonly"


def kubernetes_name(name: str) -> str:
    """``name`` as a Kubernetes object name (DNS subdomain): Kafka's topic and principal
    names may hold ``_``, Kubernetes' may not."""
    return name.lower().replace("_", "-")


def login_name(settings: Settings, principal: str) -> str:
    """The SASL username of ``principal``: its id, or with ``kafka_login_names`` "kubernetes"
    the name of its KafkaUser, which is the SCRAM user Strimzi's User Operator makes."""
    return kubernetes_name(principal) if settings.kafka_login_names == "kubernetes" else principal


def password(settings: Settings, principal: str) -> str:
    return private_secret(settings.path("secrets"), f"kafka-{principal}.password")


def librdkafka(settings: Settings, principal: str | None = None) -> dict[str, Any]:
    """SASL settings for confluent-kafka clients, as ``principal`` (default: the process's)."""
    who = principal or settings.kafka_principal
    config = {
        "security.protocol": settings.kafka_protocol,
        "sasl.mechanisms": MECHANISM,
        "sasl.username": login_name(settings, who),
        "sasl.password": password(settings, who),
    }
    if settings.kafka_tls:
        config["ssl.ca.location"] = str(tls.ca_pem(settings))
    return config


class PeerLoginMissing(RuntimeError):
    """An upstream node's login for this node has not been put in the state directory."""


PeerService = Literal["kafka", "registry"]


def peer_password_file(settings: Settings, node: str, service: PeerService) -> Path:
    return settings.path("secrets", f"peer-{node}-{service}.password")


def peer_password(settings: Settings, node: str, service: PeerService) -> str:
    """This node's password at upstream ``node`` (its Kafka or its registry): issued
    there, so never generated here; its operator hands it over (docs/federation.md)."""
    path = peer_password_file(settings, node, service)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise PeerLoginMissing(
            f"no {service} password for upstream node {node}: put the one {node} issued to "
            f"this node's department there in {path} (mode 0600)"
        ) from None


def jaas(principal: str, secret: str) -> str:
    return (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{principal}" password="{secret}";'
    )


def java_client_properties(settings: Settings, principal: str) -> str:
    """The same, in the form Java clients and Kafka's tools read (``--command-config``)."""
    return (
        f"bootstrap.servers={settings.bootstrap}\n"
        f"security.protocol={settings.kafka_protocol}\n"
        f"sasl.mechanism={MECHANISM}\n"
        f"sasl.jaas.config={jaas(principal, password(settings, principal))}\n"
        f"{tls.java_client_config(settings)}"
    )


def client_properties_file(settings: Settings, principal: str) -> Path:
    return settings.path(f"client-{principal}.properties")


def write_client_properties(settings: Settings, principal: str) -> None:
    write_private(
        client_properties_file(settings, principal),
        java_client_properties(settings, principal),
    )


def client_property_reference(settings: Settings, principal: str, key: str) -> str:
    """What a connector config says instead of a secret of ``principal``'s client
    properties (its JAAS line, its truststore password), resolved by Connect's
    FileConfigProvider, so Connect's REST API never shows it."""
    return f"${{file:{client_properties_file(settings, principal)}:{key}}}"


def login_digest(secret: str, salt: bytes) -> str:
    """What a service keeps instead of a password: the passwords are 32 random bytes, so a
    salted SHA-256 cannot be reversed by guessing (no slow hash needed)."""
    return hashlib.sha256(salt + secret.encode()).hexdigest()


LOGINS_FILE = "api-logins.json"


def logins_file(settings: Settings) -> Path:
    return settings.path("secrets", LOGINS_FILE)


def write_logins(settings: Settings, principals: Iterable[str]) -> None:
    """The departments' Kafka logins as the query API checks them (digests, never the
    passwords), written by every apply, so the API reads no password file."""
    logins = {}
    for principal in principals:
        salt = secrets.token_bytes(16)
        logins[principal] = {
            "salt": salt.hex(),
            "sha256": login_digest(password(settings, principal), salt),
        }
    write_private(logins_file(settings), json.dumps(logins, indent=2, sort_keys=True))


def registry_role(principal: str) -> str:
    return {ADMIN: REGISTRY_ADMIN, CONNECT: REGISTRY_WRITER}.get(principal, REGISTRY_READER)


def registry_password(settings: Settings, principal: str) -> str:
    return private_secret(settings.path("secrets"), f"registry-{principal}.password")


def registry_basic_auth(settings: Settings, principal: str | None = None) -> dict[str, str]:
    """HTTP Basic settings for confluent_kafka.schema_registry, as ``principal``."""
    who = principal or settings.kafka_principal
    return {"basic.auth.user.info": f"{who}:{registry_password(settings, who)}"}


def connect_rest_auth(settings: Settings) -> tuple[str, str]:
    """HTTP Basic for Connect's REST API: only ``admin`` (operators' commands) logs in."""
    return ADMIN, private_secret(settings.path("secrets"), f"connect-rest-{ADMIN}.password")


def registry_login_file(settings: Settings) -> Path:
    """Connect's registry password, in a file only Connect's FileConfigProvider reads."""
    return settings.path("secrets", "registry-connect.properties")


def registry_password_reference(settings: Settings) -> str:
    """What connector configs say instead of the registry password, so Connect's REST API
    never shows it."""
    return f"${{file:{registry_login_file(settings)}:password}}"
