"""Where everything lives and how to reach it.

Defaults are the embedded stack's loopback addresses; every value can be overridden
with a ``GOVSYNC_*`` environment variable (or a CLI flag that sets one), so the same
code talks to a real cluster once users outgrow one machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseModel, frozen=True):
    state_dir: Path = REPO_ROOT / ".state"
    topology: Path = REPO_ROOT / "topology.yaml"
    host: str = "127.0.0.1"
    pg_port: int = 55432
    pg_user: str = "govsync"
    # The MariaDB server of departments whose databases are MariaDB (started only when a
    # source in the topology in force is one); its administrator login.
    mariadb_port: int = 53306
    mariadb_user: str = "govsync"
    # Kafka's KRaft nodes, each a broker and a controller, on this machine: 1, or 3 for a
    # cluster that loses none of its data, and keeps taking writes, when one of them dies
    # (topics replicated three times, two copies in sync before a write counts). Node i
    # (0-based) listens for clients on kafka_port + 2i and for controllers on
    # controller_port + 2i.
    kafka_brokers: int = 1
    kafka_port: int = 19092
    controller_port: int = 19093
    connect_port: int = 18083
    registry_port: int = 18080
    worker_port: int = 16066
    monitor_port: int = 16070
    api_port: int = 16080
    # The query API's uvicorn worker processes, and each department's requests per second
    # over all of them (429 beyond).
    api_workers: int = 2
    api_rate: float = 2000.0
    # "auto": the lowest id no other worker holds (streams/instance.py); 0 picks a free port.
    worker_instance: str = "auto"
    # Who this process is to Kafka (SASL/SCRAM) and to the schema registry (HTTP Basic):
    # admin for operators' commands; the worker and each department's sink are started
    # with their own principal.
    kafka_principal: str = "admin"
    # SASL over TLS on the client listener instead of over plain TCP (loopback default).
    kafka_tls: bool = False
    # The schema registry over HTTPS only, with the same generated certificate.
    registry_tls: bool = False
    # Where each service is when it is not on ``host`` at the ports above (a cluster, e.g.
    # Kubernetes Services); None derives it from ``host`` as on the embedded stack.
    # Kafka's bootstrap list as clients take it ("broker:port,..."), used verbatim.
    kafka_bootstrap: str | None = None
    # The schema registry's and Kafka Connect's base URLs ("http://name:port").
    registry_base: str | None = None
    connect_base: str | None = None
    # The PostgreSQL server's address (its port is still pg_port).
    pg_host: str | None = None
    # Where govsync's own HTTP servers (query API, monitor, the worker's metrics) listen,
    # e.g. 0.0.0.0 in a container; None: on ``host``. What they advertise stays connectable.
    bind_host: str | None = None
    # Audit records per chain the ledger reads back when it starts, so that inputs it reads
    # again (a standby resuming from MirrorMaker's translated offsets) are not chained twice.
    # Cover the mirror's group-offset sync interval at the peak audit rate per chain.
    ledger_repeat_window: int = 1000

    @property
    def kafka_protocol(self) -> str:
        return "SASL_SSL" if self.kafka_tls else "SASL_PLAINTEXT"

    kafka_heap: str = "768m"
    connect_heap: str = "768m"
    registry_heap: str = "512m"

    @field_validator("kafka_brokers")
    @classmethod
    def _one_or_three_brokers(cls, brokers: int) -> int:
        if brokers not in (1, 3):
            raise ValueError(
                f"GOVSYNC_KAFKA_BROKERS is {brokers}; it must be 1 or 3: a quorum of two"
                " controllers stops when either stops, and more than three on one machine"
                " share its disk and cores without surviving more"
            )
        return brokers

    @model_validator(mode="after")
    def _kafka_ports_apart(self) -> Settings:
        """Nodes after the first take computed ports (+2 each), which no single setting
        shows: refuse any that another node or component already has."""
        others = {
            self.pg_port,
            self.mariadb_port,
            self.connect_port,
            self.registry_port,
            self.worker_port,
            self.monitor_port,
            self.api_port,
        }
        kafka = [*self.kafka_ports, *self.controller_ports]
        clashes = sorted({port for port in kafka if kafka.count(port) > 1 or port in others})
        if clashes:
            raise ValueError(
                f"Kafka's ports {kafka} (GOVSYNC_KAFKA_PORT, GOVSYNC_CONTROLLER_PORT, each + 2"
                f" per further broker) overlap each other or another port at {clashes}"
            )
        return self

    @property
    def kafka_ports(self) -> list[int]:
        """Each broker's client port, node 1's first."""
        return [self.kafka_port + 2 * node for node in range(self.kafka_brokers)]

    @property
    def controller_ports(self) -> list[int]:
        """Each node's controller port, node 1's first."""
        return [self.controller_port + 2 * node for node in range(self.kafka_brokers)]

    @classmethod
    def from_env(cls) -> Settings:
        """Read ``GOVSYNC_<FIELD>`` for every field (e.g. ``GOVSYNC_PG_PORT=5433``)."""
        values = {
            name: os.environ[f"GOVSYNC_{name.upper()}"]
            for name in cls.model_fields
            if f"GOVSYNC_{name.upper()}" in os.environ
        }
        return cls.model_validate(values)

    @property
    def bootstrap(self) -> str:
        """Every broker: a client reaches the cluster through whichever answers."""
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        return ",".join(f"{self.host}:{port}" for port in self.kafka_ports)

    @property
    def listen_host(self) -> str:
        """The address govsync's own HTTP servers bind to."""
        return self.bind_host or self.host

    @property
    def connect_url(self) -> str:
        if self.connect_base:
            return self.connect_base.rstrip("/")
        return f"http://{self.host}:{self.connect_port}"

    @property
    def registry_url(self) -> str:
        """The Confluent-compatible base URL, what confluent_kafka.schema_registry expects."""
        return f"{self.registry_base_url}/apis/ccompat/v7"

    @property
    def registry_native_url(self) -> str:
        """Apicurio's own v2 API, used by the Connect converter."""
        return f"{self.registry_base_url}/apis/registry/v2"

    @property
    def registry_base_url(self) -> str:
        if self.registry_base:
            return self.registry_base.rstrip("/")
        scheme = "https" if self.registry_tls else "http"
        return f"{scheme}://{self.host}:{self.registry_port}"

    @property
    def pg_address(self) -> str:
        """The PostgreSQL server govsync's processes connect to (the index, the demo's and
        the reference sinks' department databases)."""
        return self.pg_host or self.host

    def pg_conninfo(self, database: str) -> str:
        return f"host={self.pg_address} port={self.pg_port} user={self.pg_user} dbname={database}"

    def path(self, *parts: str) -> Path:
        return self.state_dir.joinpath(*parts)

    @property
    def dist_dir(self) -> Path:
        return self.path("dist")

    # The name a process logs in to Kafka under: its principal's id ("id"), or that id as
    # a Kubernetes name ("kubernetes": `_` -> `-`), the SCRAM user of its KafkaUser on
    # Strimzi (streams/kafka/credentials.py, login_name).
    kafka_login_names: str = "id"

    @field_validator("kafka_login_names")
    @classmethod
    def _known_login_names(cls, names: str) -> str:
        if names not in ("id", "kubernetes"):
            raise ValueError(f"GOVSYNC_KAFKA_LOGIN_NAMES is {names!r}; it must be id or kubernetes")
        return names
