"""Debezium connectors rendered from the topology and applied through Connect's REST API.

One connector per source database, capturing every table the topology's sources name in
it: PostgreSQL's through a replication slot and publication of its own, MariaDB's as a
binlog replica with a server id of its own. Records use the Apicurio Avro converter
in Confluent wire format (magic byte + 4-byte content id), so any Confluent-compatible
client, including Python's confluent_kafka.schema_registry, reads them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import httpx

from streams.config import mariadb, tls
from streams.config.settings import Settings
from streams.contract.topics import CONNECT_PREFIX, schema_history_topic
from streams.kafka import credentials
from streams.model.topology import Source, Topology

# The prefix of the logical decoding messages heartbeats write (see _postgres).
HEARTBEAT_PREFIX = "govsync-heartbeat"
# MariaDB connectors' replica server ids: the server's own is 1 (govsync/stack/mariadb.py).
MARIADB_SERVER_IDS = 5400

ConnectorAction = Literal["created", "updated", "unchanged", "restarted failed tasks"]


class ConnectError(RuntimeError):
    """Kafka Connect refused a connector or is unreachable."""


def rest(settings: Settings, timeout: float) -> httpx.Client:
    """A client of Connect's REST API, logged in (it takes HTTP Basic)."""
    return httpx.Client(
        base_url=settings.connect_url, auth=credentials.connect_rest_auth(settings), timeout=timeout
    )


def connector_name(database: str) -> str:
    return f"govsync-cdc-{database}"


def _converter(prefix: str, settings: Settings) -> dict[str, str]:
    return {
        prefix: "io.apicurio.registry.utils.converter.AvroConverter",
        f"{prefix}.apicurio.registry.url": settings.registry_native_url,
        f"{prefix}.apicurio.registry.auto-register": "true",
        f"{prefix}.apicurio.registry.find-latest": "true",
        # Confluent wire format: 4-byte content id in the payload, not Apicurio headers.
        f"{prefix}.apicurio.registry.as-confluent": "true",
        f"{prefix}.apicurio.registry.headers.enabled": "false",
        # The id in the payload must be the content id: that is what the Confluent-compatible
        # API resolves (/schemas/ids/{id}). The default, the global id, names the same schema
        # only until two subjects share one content (every connector's identical heartbeat
        # schemas), after which readers would decode with the wrong schema.
        f"{prefix}.apicurio.registry.use-id": "contentId",
        # Connect's own registry login (it registers Debezium's schemas), by reference.
        f"{prefix}.apicurio.auth.username": credentials.CONNECT,
        f"{prefix}.apicurio.auth.password": credentials.registry_password_reference(settings),
    }


def render(topology: Topology, settings: Settings) -> dict[str, dict[str, str]]:
    """Connector name -> Connect config, for every source database."""
    by_database: dict[tuple[str, str], list[Source]] = defaultdict(list)
    for source in topology.sources:
        by_database[source.database.kind, source.database.name].append(source)
    configs: dict[str, dict[str, str]] = {}
    mariadb_databases = 0
    for (kind, database), sources in sorted(by_database.items()):
        departments = {source.department for source in sources}
        if len(departments) != 1:
            raise ConnectError(
                f"database {database} is claimed by departments {sorted(departments)}"
            )
        department = departments.pop()
        if kind == "postgres":
            config = _postgres(database, settings)
        else:
            # Each MariaDB connector joins the server as a replica: its id must be unique.
            config = _mariadb(database, MARIADB_SERVER_IDS + mariadb_databases, settings)
            mariadb_databases += 1
        configs[connector_name(database)] = {
            **config,
            "tasks.max": "1",
            "database.hostname": settings.host,
            "topic.prefix": f"cdc.{department}",
            "table.include.list": ",".join(sorted(source.table for source in sources)),
            "snapshot.mode": "initial",
            # Hand captured changes to Connect every 100 ms instead of the default 500 ms.
            "poll.interval.ms": "100",
            # Exact values as strings: the canonical model keeps decimals as text.
            "decimal.handling.mode": "string",
            "time.precision.mode": "adaptive_time_microseconds",
            "tombstones.on.delete": "false",
            **_converter("key.converter", settings),
            **_converter("value.converter", settings),
        }
    return configs


def _postgres(database: str, settings: Settings) -> dict[str, str]:
    slot = f"govsync_{database}"
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "plugin.name": "pgoutput",
        "database.port": str(settings.pg_port),
        "database.user": settings.pg_user,
        "database.dbname": database,
        "slot.name": slot,
        "publication.name": slot,
        "publication.autocreate.mode": "filtered",
        # Every source database shares one PostgreSQL cluster, and so one WAL, with the
        # others and with the index database. Debezium confirms a slot's position only
        # with an event of its own, so the slot of a quiet database held every byte of
        # WAL the busy ones wrote (24 GB in a day here, until the disk filled). Each
        # heartbeat therefore writes a logical decoding message into the source
        # database; Debezium captures it (to cdc.<department>.message, which nothing
        # reads) and confirms the position with its offset. (The driver's keepalive
        # flush, lsn.flush.mode connector_and_driver, moves the slot but not the
        # offset, and the connector then refuses to start again.)
        "heartbeat.interval.ms": "10000",
        "heartbeat.action.query": (
            f"SELECT pg_logical_emit_message(true, '{HEARTBEAT_PREFIX}', '')"
        ),
        "message.prefix.include.list": HEARTBEAT_PREFIX,
        # Lets Connect create the heartbeat topic; cdc topics already exist (apply made them).
        # -1: the brokers' default.replication.factor, as for every topic of the cluster.
        "topic.creation.default.replication.factor": "-1",
        "topic.creation.default.partitions": "1",
    }


def _mariadb(database: str, server_id: int, settings: Settings) -> dict[str, str]:
    """The binlog has no slot to hold back, so no heartbeats: a quiet database costs
    nothing. The connector keeps the tables' DDL on its schema history topic, which it
    reads and writes with clients of its own, logged in as Connect's principal."""
    history = {
        "schema.history.internal.kafka.bootstrap.servers": settings.bootstrap,
        "schema.history.internal.kafka.topic": schema_history_topic(database),
        # Under Connect's prefix, the groups its principal may use.
        "schema.history.internal.consumer.group.id": f"{CONNECT_PREFIX}-schema-history-{database}",
        # Debezium's default is acks=1: a DDL record the leader took could die with it, and
        # the connector would then read rows with the wrong columns. All in-sync replicas.
        "schema.history.internal.producer.acks": "all",
    }
    for client in ("producer", "consumer"):
        prefix = f"schema.history.internal.{client}."
        history |= {
            f"{prefix}security.protocol": settings.kafka_protocol,
            f"{prefix}sasl.mechanism": credentials.MECHANISM,
            f"{prefix}sasl.jaas.config": credentials.client_property_reference(
                settings, credentials.CONNECT, "sasl.jaas.config"
            ),
        }
        if settings.kafka_tls:
            history |= {
                f"{prefix}ssl.truststore.type": "PKCS12",
                f"{prefix}ssl.truststore.location": str(tls.truststore(settings)),
                f"{prefix}ssl.truststore.password": credentials.client_property_reference(
                    settings, credentials.CONNECT, "ssl.truststore.password"
                ),
            }
    return {
        "connector.class": "io.debezium.connector.mariadb.MariaDbConnector",
        "database.port": str(settings.mariadb_port),
        "database.user": mariadb.CAPTURE_USER,
        "database.password": mariadb.capture_password_reference(settings),
        "database.server.id": str(server_id),
        "database.include.list": database,
        # DDL goes to the schema history only, not to a cdc.<department> topic of its own.
        "include.schema.changes": "false",
        **history,
    }


def apply(
    topology: Topology, settings: Settings, dry_run: bool = False
) -> dict[str, ConnectorAction]:
    """Create or update each connector; unchanged configs are left alone (no task restart),
    but a task that has failed is restarted: applying means capturing, too. With
    ``dry_run``, only say which of that would happen."""
    actions: dict[str, ConnectorAction] = {}
    with rest(settings, timeout=30) as client:
        for name, config in render(topology, settings).items():
            current = _get(client, f"/connectors/{name}/config")
            if current is not None:
                current.pop("name", None)
                if current == config:
                    actions[name] = "unchanged"
                    if _failed_tasks(client, name):
                        if not dry_run:
                            _request(
                                client,
                                "POST",
                                f"/connectors/{name}/restart?includeTasks=true&onlyFailed=true",
                            )
                        actions[name] = "restarted failed tasks"
                    continue
            if dry_run:
                actions[name] = "created" if current is None else "updated"
                continue
            response = _request(client, "PUT", f"/connectors/{name}/config", json=config)
            actions[name] = "created" if response.status_code == 201 else "updated"
    return actions


def _failed_tasks(client: httpx.Client, name: str) -> bool:
    tasks = (_get(client, f"/connectors/{name}/status") or {}).get("tasks") or []
    return any(task.get("state") == "FAILED" for task in tasks)


@contextmanager
def paused(topology: Topology, settings: Settings) -> Iterator[None]:
    """Hold capture while the registry restarts: Apicurio's converter does not retry a
    refused connection, and a task that fails on one stays failed."""
    with rest(settings, timeout=30) as client:
        names = [n for n in render(topology, settings) if _get(client, f"/connectors/{n}")]
        for name in names:
            _request(client, "PUT", f"/connectors/{name}/pause")
        for name in names:
            _wait_state(client, name, "PAUSED", tasks=True)
        try:
            yield
        finally:
            for name in names:
                _request(client, "PUT", f"/connectors/{name}/resume")


def status(settings: Settings, name: str) -> dict:
    with rest(settings, timeout=10) as client:
        return _get(client, f"/connectors/{name}/status") or {}


def is_running(settings: Settings, name: str) -> bool:
    state = status(settings, name)
    tasks = state.get("tasks") or []
    return (
        state.get("connector", {}).get("state") == "RUNNING"
        and bool(tasks)
        and all(task.get("state") == "RUNNING" for task in tasks)
    )


def restart(settings: Settings, name: str) -> None:
    """Restart the connector and its tasks; Debezium resumes from its last committed offset
    and may re-emit what it captured after it (downstream dedup recognises those)."""
    with rest(settings, timeout=30) as client:
        _request(client, "POST", f"/connectors/{name}/restart?includeTasks=true")


def resnapshot(settings: Settings, name: str) -> None:
    """Take a new initial snapshot: stop, forget the source offsets (KIP-875), resume."""
    with rest(settings, timeout=60) as client:
        _request(client, "PUT", f"/connectors/{name}/stop")
        _wait_state(client, name, "STOPPED")
        _request(client, "DELETE", f"/connectors/{name}/offsets")
        _request(client, "PUT", f"/connectors/{name}/resume")


def _wait_state(
    client: httpx.Client, name: str, wanted: str, timeout: float = 60.0, *, tasks: bool = False
) -> None:
    """Until the connector (and, with ``tasks``, every task of it) is in state ``wanted``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _get(client, f"/connectors/{name}/status") or {}
        states = [status.get("connector", {}).get("state")]
        if tasks:
            states += [task.get("state") for task in status.get("tasks") or []]
        if all(state == wanted for state in states):
            return
        time.sleep(0.5)
    raise ConnectError(f"connector {name} did not reach {wanted} within {timeout:.0f}s")


def _get(client: httpx.Client, path: str) -> dict | None:
    response = _request(client, "GET", path)
    if response.status_code == 404:
        return None
    return response.json()


REBALANCE_WAIT_S = 60.0


def _rebalancing(response: httpx.Response) -> bool:
    """Connect answers 409 or 500 while its group rebalances, e.g. right after a connector
    config changed; the same request succeeds once the rebalance is over."""
    return response.status_code in (409, 500) and "rebalanc" in response.text.lower()


def _request(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    deadline = time.monotonic() + REBALANCE_WAIT_S
    while True:
        try:
            response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise ConnectError(f"Kafka Connect at {client.base_url} is unreachable: {exc}") from exc
        if not _rebalancing(response) or time.monotonic() > deadline:
            break
        time.sleep(1)
    if response.status_code >= 400 and response.status_code != 404:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise ConnectError(f"Connect {method} {path}: {response.status_code} {message}")
    return response
