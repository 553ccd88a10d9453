"""Avro on the wire, in the Confluent format (magic byte + schema id), via the registry's
Confluent-compatible API.

Schemas are registered once by `govsync topology apply`; at run time serializers and
deserializers look each schema up once and keep it (the hot path makes no HTTP calls).
Keys after ``cdc.*`` are the entity key as plain UTF-8, readable by any Kafka tool.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import httpx
from confluent_kafka.schema_registry import (
    ConfigCompatibilityLevel,
    Schema,
    SchemaRegistryClient,
    SchemaRegistryError,
    ServerConfig,
    topic_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from streams.config.settings import Settings
from streams.kafka import credentials

COMPATIBILITY = ConfigCompatibilityLevel.BACKWARD


class RegistryUnreachable(RuntimeError):
    """The schema registry did not answer; nothing was registered."""


class SchemaRejected(RuntimeError):
    """The registry refused a schema, e.g. as incompatible with what is registered."""


def registry_client(settings: Settings, principal: str | None = None) -> SchemaRegistryClient:
    """A registry client logged in as ``principal`` (default: this process's principal)."""
    return SchemaRegistryClient(
        {"url": settings.registry_url, **credentials.registry_basic_auth(settings, principal)}
    )


def value_subject(topic: str) -> str:
    """Confluent's TopicNameStrategy, which Debezium's converter and our serializers share."""
    return f"{topic}-value"


def register(client: SchemaRegistryClient, topic: str, schema: dict[str, Any]) -> int:
    """Register the value schema of ``topic`` under BACKWARD compatibility; idempotent."""
    subject = value_subject(topic)
    try:
        client.set_config(subject_name=subject, config=ServerConfig(compatibility=COMPATIBILITY))
        return client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    except SchemaRegistryError as exc:
        raise SchemaRejected(f"the registry refused the schema for {subject}: {exc}") from exc


def registered_id(client: SchemaRegistryClient, topic: str, schema: dict[str, Any]) -> int | None:
    """The id of ``schema`` if it is already a version of ``topic``'s value subject."""
    try:
        found = client.lookup_schema(value_subject(topic), Schema(json.dumps(schema), "AVRO"))
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return None
        raise SchemaRejected(f"looking up {value_subject(topic)} failed: {exc}") from exc
    return found.schema_id


def ensure_reachable(settings: Settings) -> None:
    """Fail with one clear line before any work, rather than deep inside a client library."""
    url, who = settings.registry_url, settings.kafka_principal
    login = (who, credentials.registry_password(settings, who))
    try:
        httpx.get(f"{url}/subjects", auth=login, timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise RegistryUnreachable(f"the schema registry at {url} is unreachable: {exc}") from exc


class ValueSerializer:
    """Serializes dicts for one topic against the schema registered for it."""

    def __init__(self, client: SchemaRegistryClient, topic: str, schema: dict[str, Any]) -> None:
        self._serializer = AvroSerializer(
            client,
            json.dumps(schema),
            conf={
                "auto.register.schemas": False,
                "use.latest.version": False,
                # {topic}-value, decided here: no association lookup at the registry.
                "subject.name.strategy": topic_subject_name_strategy,
            },
        )
        self._context = SerializationContext(topic, MessageField.VALUE)

    def __call__(self, value: dict[str, Any]) -> bytes:
        data = self._serializer(value, self._context)
        assert data is not None
        return data


class ValueDeserializer:
    """Reads any registered writer schema by the id in the payload (schemas cached by id)."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self._deserializer = AvroDeserializer(client)

    def __call__(self, topic: str, data: bytes | None) -> dict[str, Any] | None:
        if data is None:
            return None
        return self._deserializer(data, SerializationContext(topic, MessageField.VALUE))

    def key(self, topic: str, data: bytes | None) -> dict[str, Any] | None:
        if data is None:
            return None
        return self._deserializer(data, SerializationContext(topic, MessageField.KEY))


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


@contextmanager
def _undecodable(topic: str) -> Iterator[None]:
    """Bytes that cannot be read become SerializationError, which stages dead-letter: a
    schema id the registry does not know, a body that breaks off or is corrupt. A registry
    that does not answer is not the record's fault and propagates (the batch is retried)."""
    try:
        yield
    except SerializationError:
        raise
    except SchemaRegistryError as exc:
        if exc.http_status_code != 404:
            raise
        raise SerializationError(f"{topic}: unknown writer schema: {exc}") from exc
    except (EOFError, IndexError, ValueError, TypeError, OverflowError, struct.error) as exc:
        raise SerializationError(f"{topic}: not readable as Avro: {exc!r}") from exc
