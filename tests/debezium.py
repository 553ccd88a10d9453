"""A Debezium change envelope's Avro schema, reduced to what normalize reads: for tests
that write cdc records themselves (in memory, or onto the real cdc topic)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Schema = dict[str, Any]


def envelope_schema(
    row: Sequence[Schema], name: str = "Envelope", namespace: str = "govsync.tests"
) -> Schema:
    """A Debezium change envelope (names as Debezium gives them) reduced to what normalize
    reads; the row record is the table's columns."""
    value = {"type": "record", "name": "Value", "fields": list(row)}
    return {
        "type": "record",
        "name": name,
        "namespace": namespace,
        "fields": [
            {"name": "before", "type": ["null", value], "default": None},
            {"name": "after", "type": ["null", "Value"], "default": None},
            {
                "name": "source",
                "type": {
                    "type": "record",
                    "name": "Source",
                    "namespace": "io.debezium.connector.postgresql",
                    "fields": [
                        {"name": "name", "type": "string"},
                        {"name": "ts_ms", "type": "long"},
                        {"name": "schema", "type": "string"},
                        {"name": "table", "type": "string"},
                        {"name": "txId", "type": ["null", "long"], "default": None},
                        {"name": "lsn", "type": ["null", "long"], "default": None},
                    ],
                },
            },
            {"name": "op", "type": "string"},
        ],
    }
