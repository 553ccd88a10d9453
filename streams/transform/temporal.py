"""What a captured time column means, read from the writer schema that encoded it.

Debezium sends a column without a zone (PostgreSQL ``timestamp``, MariaDB ``DATETIME``)
as a number: the wall-clock reading counted from 1970-01-01 as if it were UTC, in
milliseconds, microseconds or nanoseconds depending on the column's precision. Only the
writer schema's ``connect.name`` says which, so a number alone cannot be read; a column
with a zone (``timestamptz``, MariaDB ``TIMESTAMP``) arrives as ISO 8601 text with its
offset and needs nothing from here. The result is a naive ``datetime``, the reading on the
department's clock, which ``standards.to_utc_iso`` places in the source's time zone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

WallClock = Callable[[Any], Any]

_EPOCH = datetime(1970, 1, 1)

# connect.name -> the reading of a value so encoded. Connect's own Timestamp (Debezium's
# time.precision.mode=connect) decodes to an aware datetime in UTC that is really the
# same wall-clock reading; its zone is dropped.
_READINGS: dict[str, WallClock] = {
    "io.debezium.time.Timestamp": lambda v: _EPOCH + timedelta(milliseconds=v),
    "io.debezium.time.MicroTimestamp": lambda v: _EPOCH + timedelta(microseconds=v),
    "io.debezium.time.NanoTimestamp": lambda v: _EPOCH + timedelta(microseconds=v // 1000),
    "org.apache.kafka.connect.data.Timestamp": lambda v: v.replace(tzinfo=None),
}


def wall_clock_columns(writer_schema: Any) -> Mapping[str, WallClock]:
    """Column -> how to read its value, for the zone-less time columns of a Debezium
    envelope's row (the ``after`` record of the parsed writer schema)."""
    row = _row_record(writer_schema)
    readings: dict[str, WallClock] = {}
    for column in row.get("fields", []) if row else []:
        reading = _READINGS.get(_connect_name(column["type"]) or "")
        if reading is not None:
            readings[column["name"]] = reading
    return readings


def read(value: Any, reading: WallClock) -> Any:
    """The wall-clock reading of ``value``; anything it does not fit is left for the
    field's own type check to refuse, with the record named."""
    try:
        return reading(value)
    except (TypeError, AttributeError, OverflowError):
        return value


def _row_record(writer_schema: Any) -> dict[str, Any] | None:
    if not isinstance(writer_schema, dict):
        return None
    for field in writer_schema.get("fields", []):
        if field.get("name") == "after":
            branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
            for branch in branches:
                if isinstance(branch, dict) and branch.get("type") == "record":
                    return branch
                if isinstance(branch, str) and branch != "null":
                    named = writer_schema.get("__named_schemas", {}).get(branch)
                    if isinstance(named, dict):
                        return named
    return None


def _connect_name(column_type: Any) -> str | None:
    branches = column_type if isinstance(column_type, list) else [column_type]
    for branch in branches:
        if isinstance(branch, dict) and "connect.name" in branch:
            return str(branch["connect.name"])
    return None
