"""Avro in the Confluent wire format without a registry, so a stage's whole record path
(bytes in, bytes out) is tested in memory: the spirit of faust's ``agent.test_context()``.

``MemoryCodec`` implements the stages' ``Codec`` protocol (streams/kafka/serde.py) with
fastavro and a local dict of schema ids; ``cdc`` writes what Debezium's Avro converter
would put on a source's cdc topic, under an envelope schema reduced to what normalize reads
(streams/transform/normalize.py: op, before, after and source name/schema/table/lsn/txId/ts_ms).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
from confluent_kafka.serialization import SerializationError

from streams.kafka.serde import frame, unframe
from streams.model.topology import Source
from tests.debezium import envelope_schema

Schema = dict[str, Any]


class MemoryCodec:
    """The Codec protocol over a registry that is a dict: each distinct schema gets the next
    id, every payload is framed with it, and decoding reads the writer schema by that id,
    as the registry-backed codec does. Anything undecodable raises ``SerializationError``,
    which the normalize stage dead-letters."""

    def __init__(self) -> None:
        self.schemas: dict[int, Any] = {}  # id -> parsed writer schema
        self._ids: dict[str, int] = {}  # canonical schema JSON -> id

    def register(self, schema: Schema) -> int:
        """The schema's id, registering it on first sight (idempotent, like the registry)."""
        text = json.dumps(schema, sort_keys=True)
        if text not in self._ids:
            schema_id = len(self._ids) + 1
            self._ids[text] = schema_id
            self.schemas[schema_id] = fastavro.parse_schema(schema)
        return self._ids[text]

    def encode(self, schema_id: int, value: Any) -> bytes:
        body = io.BytesIO()
        fastavro.schemaless_writer(body, self.schemas[schema_id], value)
        return frame(schema_id, body.getvalue())

    def serializer(self, topic: str, schema: Schema) -> Callable[[dict[str, Any]], bytes]:
        schema_id = self.register(schema)
        return lambda value: self.encode(schema_id, value)

    def decode(self, topic: str, data: bytes | None) -> Any:
        if data is None:
            return None
        schema_id, body = unframe(topic, data)
        schema = self.schemas.get(schema_id)
        if schema is None:
            raise SerializationError(f"unknown schema id {schema_id} on {topic}")
        try:
            return fastavro.schemaless_reader(io.BytesIO(body), schema)
        except Exception as exc:  # fastavro raises EOFError, IndexError, ... on bad bodies
            raise SerializationError(f"undecodable Avro on {topic}: {exc!r}") from exc

    def decode_key(self, topic: str, data: bytes | None) -> Any:
        return self.decode(topic, data)

    def writer(self, topic: str, data: bytes) -> tuple[int, Any]:
        schema_id, _ = unframe(topic, data)
        if schema_id not in self.schemas:
            raise SerializationError(f"unknown schema id {schema_id} on {topic}")
        return schema_id, self.schemas[schema_id]

    def cdc(self, source: Source, row: Sequence[Schema]) -> Cdc:
        """Debezium's serializers for ``source``'s cdc topic, with ``row`` as the table's
        columns (Avro fields) and the source's primary key columns as the key."""
        topic = source.cdc_topic
        value_id = self.register(envelope_schema(row, namespace=topic))
        key_fields = [dict(f) for f in row if f["name"] in source.primary_key]
        key_id = self.register(
            {"type": "record", "name": "Key", "namespace": topic, "fields": key_fields}
        )
        return Cdc(
            topic,
            value=lambda envelope: self.encode(value_id, envelope),
            key=lambda key: self.encode(key_id, key),
        )


@dataclass(frozen=True)
class Cdc:
    """Writes one source's cdc records as Debezium's Avro converter would."""

    topic: str
    value: Callable[[dict[str, Any]], bytes]
    key: Callable[[dict[str, Any]], bytes]
