"""Avro on the wire, in the Confluent format (magic byte + schema id), via the registry's
Confluent-compatible API.

Schemas are registered once by `govsync topology apply`; at run time serializers and
deserializers look each schema up once and keep it parsed, by id (the hot path makes no
HTTP calls). Keys after ``cdc.*`` are the entity key as plain UTF-8, readable by any
Kafka tool.

Why not confluent-kafka's AvroSerializer/AvroDeserializer: per record they resolve the
subject, look the schema up in their caches, expand the reader schema and run the data
contract rule engine, about 4 x the cost of the Avro itself (bench/throughput.py). This
module does only the framing and the parsed-schema lookup, then hands the body to
fastavro, the same library they use, so the bytes are identical.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka.serialization import SerializationError
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from streams.config import tls
from streams.config.settings import Settings
from streams.kafka import credentials
from streams.model.topology import Topology, Upstream

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

log = logging.getLogger("govsync.serde")


def _registry() -> ModuleType:
    """confluent-kafka's registry client package, imported at first use: it loads an HTTP
    stack and OAuth libraries (about 0.25 s), which a command that never reaches the
    registry (every question answered from the index) should not wait for."""
    import confluent_kafka.schema_registry

    return confluent_kafka.schema_registry


def _registry_error() -> type[Exception]:
    """The registry's error class, for ``except`` clauses (evaluated only when something
    was raised, and then the package is loaded: only a registry client raises it)."""
    return _registry().SchemaRegistryError


class RegistryUnreachable(RuntimeError):
    """The schema registry did not answer; nothing was registered."""


class SchemaRejected(RuntimeError):
    """The registry refused a schema, e.g. as incompatible with what is registered."""


def registry_client(settings: Settings, principal: str | None = None) -> SchemaRegistryClient:
    """A registry client logged in as ``principal`` (default: this process's principal)."""
    trust = {"ssl.ca.location": str(tls.ca_pem(settings))} if settings.registry_tls else {}
    return _registry().SchemaRegistryClient(
        {
            "url": settings.registry_url,
            **credentials.registry_basic_auth(settings, principal),
            **trust,
        }
    )


def upstream_registry_client(settings: Settings, upstream: Upstream) -> SchemaRegistryClient:
    """The registry of an upstream node, logged in as this node's department there: the
    records mirrored from it carry its schema ids."""
    return _registry().SchemaRegistryClient(
        {
            "url": f"{upstream.registry.rstrip('/')}/apis/ccompat/v7",
            "basic.auth.user.info": f"{upstream.login}:"
            f"{credentials.peer_password(settings, upstream.node, 'registry')}",
        }
    )


def upstream_codecs(settings: Settings, topology: Topology) -> dict[str, RegistryCodec]:
    """Per upstream node of ``topology``, the codec of its registry; none for a node whose
    login has not been handed over yet (logged: its deliveries wait where they are)."""
    codecs = {}
    for upstream in topology.federation.upstreams if topology.federation else []:
        try:
            codecs[upstream.node] = RegistryCodec(upstream_registry_client(settings, upstream))
        except credentials.PeerLoginMissing as exc:
            log.error("not reading what upstream %s sends: %s", upstream.node, exc)
    return codecs


def value_subject(topic: str) -> str:
    """Confluent's TopicNameStrategy, which Debezium's converter and our serializers share."""
    return f"{topic}-value"


def register(client: SchemaRegistryClient, topic: str, schema: dict[str, Any]) -> int:
    """Register the value schema of ``topic`` under BACKWARD compatibility; idempotent."""
    registry, subject = _registry(), value_subject(topic)
    backward = registry.ServerConfig(compatibility=registry.ConfigCompatibilityLevel.BACKWARD)
    try:
        client.set_config(subject_name=subject, config=backward)
        return client.register_schema(subject, registry.Schema(json.dumps(schema), "AVRO"))
    except _registry_error() as exc:
        raise SchemaRejected(f"the registry refused the schema for {subject}: {exc}") from exc


def registered_id(client: SchemaRegistryClient, topic: str, schema: dict[str, Any]) -> int | None:
    """The id of ``schema`` if it is already a version of ``topic``'s value subject."""
    try:
        found = client.lookup_schema(
            value_subject(topic), _registry().Schema(json.dumps(schema), "AVRO")
        )
    except _registry_error() as exc:
        if exc.http_status_code == 404:
            return None
        raise SchemaRejected(f"looking up {value_subject(topic)} failed: {exc}") from exc
    return found.schema_id


def ensure_reachable(settings: Settings) -> None:
    """Fail with one clear line before any work, rather than deep inside a client library."""
    import httpx

    url, who = settings.registry_url, settings.kafka_principal
    login = (who, credentials.registry_password(settings, who))
    try:
        httpx.get(
            f"{url}/subjects", auth=login, timeout=5, verify=tls.http_verify(settings)
        ).raise_for_status()
    except httpx.HTTPError as exc:
        raise RegistryUnreachable(f"the schema registry at {url} is unreachable: {exc}") from exc


MAGIC = 0
_FRAME = struct.Struct(">bI")  # magic byte, schema id: Confluent's wire format


def frame(schema_id: int, body: bytes) -> bytes:
    return _FRAME.pack(MAGIC, schema_id) + body


def unframe(topic: str, data: bytes) -> tuple[int, memoryview]:
    """(schema id, Avro body) of a framed payload; SerializationError if it is not one."""
    if len(data) <= _FRAME.size:
        raise SerializationError(f"{len(data)} bytes on {topic}: too short to be framed Avro")
    magic, schema_id = _FRAME.unpack_from(data)
    if magic != MAGIC:
        raise SerializationError(f"invalid magic byte {magic} on {topic}")
    return schema_id, memoryview(data)[_FRAME.size :]


class ValueSerializer:
    """Serializes dicts for one topic against the schema registered for it. The schema's id
    is looked up at the first record (the registry may not know it before `topology
    apply`), never registered from here."""

    def __init__(self, client: SchemaRegistryClient, topic: str, schema: dict[str, Any]) -> None:
        self._client, self._topic, self._schema = client, topic, schema
        named: dict[str, Any] = {}
        self._parsed = parse_schema(schema, named_schemas=named)
        self._records = _optional_records(self._parsed, named)
        self._prefix: bytes | None = None

    def __call__(self, value: dict[str, Any]) -> bytes:
        if self._prefix is None:
            self._prefix = _FRAME.pack(MAGIC, self._schema_id())
        if self._records:
            # The branch named up front (fastavro's tuple notation): otherwise fastavro
            # validates the whole record against each branch to pick one, which costs
            # about as much as writing it.
            value = dict(value)
            for field, name in self._records.items():
                if isinstance(value.get(field), dict):
                    value[field] = (name, value[field])
        body = io.BytesIO()
        body.write(self._prefix)
        schemaless_writer(body, self._parsed, value)
        return body.getvalue()

    def _schema_id(self) -> int:
        subject = value_subject(self._topic)
        try:
            found = self._client.lookup_schema(
                subject, _registry().Schema(json.dumps(self._schema), "AVRO")
            )
        except _registry_error() as exc:
            raise SerializationError(f"{subject}: schema not registered: {exc}") from exc
        return found.schema_id


def _optional_records(parsed: Any, named: dict[str, Any]) -> dict[str, str]:
    """Top-level fields of type ["null", <record>]: field name -> the record's full name."""
    records = {}
    for field in parsed.get("fields", []) if isinstance(parsed, dict) else []:
        branches = field["type"]
        if not isinstance(branches, list) or len(branches) != 2 or "null" not in branches:
            continue
        other = branches[1] if branches[0] == "null" else branches[0]
        if isinstance(other, str):
            other = named.get(other, {})
        if isinstance(other, dict) and other.get("type") == "record":
            records[field["name"]] = other["name"]
    return records


class ValueDeserializer:
    """Reads any registered writer schema by the id in the payload, each fetched from the
    registry and parsed once."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self._client = client
        self._parsed: dict[int, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, topic: str, data: bytes | None) -> dict[str, Any] | None:
        if data is None:
            return None
        schema_id, body = unframe(topic, data)
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            parsed = self._fetch(schema_id)
        return schemaless_reader(io.BytesIO(body), parsed, None)

    key = __call__  # keys (Debezium's) are framed Avro too

    def writer(self, topic: str, data: bytes) -> tuple[int, Any]:
        """(schema id, parsed writer schema) of a framed payload."""
        schema_id, _ = unframe(topic, data)
        parsed = self._parsed.get(schema_id)
        return schema_id, parsed if parsed is not None else self._fetch(schema_id)

    def _fetch(self, schema_id: int) -> Any:
        with self._lock:
            if schema_id not in self._parsed:
                schema = self._client.get_schema(schema_id)
                if schema.references:
                    # Nothing govsync reads refers to other schemas; say so, do not misread.
                    raise SerializationError(f"schema {schema_id} has references: unsupported")
                assert schema.schema_str is not None
                self._parsed[schema_id] = parse_schema(json.loads(schema.schema_str))
            return self._parsed[schema_id]


class Codec(Protocol):
    """How a stage turns records into bytes and back. The worker's reads and writes go
    through the registry (:class:`RegistryCodec`); unit tests give stages an in-memory
    one, so stage logic is tested without a registry or Kafka. Decoding failures raise
    ``SerializationError`` either way."""

    def serializer(self, topic: str, schema: dict[str, Any]) -> Callable[[dict[str, Any]], bytes]:
        """A serializer for ``topic``'s values, written with ``schema``."""
        ...

    def decode(self, topic: str, data: bytes | None) -> dict[str, Any] | None: ...

    def decode_key(self, topic: str, data: bytes | None) -> dict[str, Any] | None: ...

    def writer(self, topic: str, data: bytes) -> tuple[int, Any]:
        """(schema id, parsed writer schema) of a framed payload: what a value's bytes do
        not say by themselves, such as the unit of a Debezium timestamp."""
        ...


class RegistryCodec:
    """Avro in the Confluent wire format, schemas looked up in the registry once each."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self._client = client
        self._values = ValueDeserializer(client)

    def serializer(self, topic: str, schema: dict[str, Any]) -> ValueSerializer:
        return ValueSerializer(self._client, topic, schema)

    def decode(self, topic: str, data: bytes | None) -> dict[str, Any] | None:
        with _undecodable(topic):
            return self._values(topic, data)

    def decode_key(self, topic: str, data: bytes | None) -> dict[str, Any] | None:
        with _undecodable(topic):
            return self._values.key(topic, data)

    def writer(self, topic: str, data: bytes) -> tuple[int, Any]:
        with _undecodable(topic):
            return self._values.writer(topic, data)


@contextmanager
def _undecodable(topic: str) -> Iterator[None]:
    """Bytes that cannot be read become SerializationError, which stages dead-letter: a
    schema id the registry does not know, a body that breaks off or is corrupt. A registry
    that does not answer is not the record's fault and propagates (the batch is retried)."""
    try:
        yield
    except SerializationError:
        raise
    except _registry_error() as exc:
        if exc.http_status_code != 404:
            raise
        raise SerializationError(f"{topic}: unknown writer schema: {exc}") from exc
    except (EOFError, IndexError, ValueError, TypeError, OverflowError, struct.error) as exc:
        raise SerializationError(f"{topic}: not readable as Avro: {exc!r}") from exc
