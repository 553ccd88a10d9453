"""Debezium envelope -> canonical change event.

Pure functions: the normalize stage (stages/normalize.py) does the I/O. Everything that
decides what a change *means* lives here — column mapping, code tables, standard
conversion, the change kind, and the deterministic event id — so it can be tested
without a broker.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from streams.model import standards
from streams.model.topology import Entity, Field, Source
from streams.transform import temporal

# Fixed namespace: the same source position yields the same event_id on every machine.
EVENT_ID_NAMESPACE = uuid.UUID("7d3c2c52-5f1e-4d8a-9a0e-3f6f0b6c1a11")

_OPS = {"c": "registered", "r": "snapshot", "u": "updated", "d": "deleted"}


class NormalizeError(ValueError):
    """A change that cannot become a canonical event; it goes to the dead-letter queue."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def event_id(envelope: dict[str, Any], key: dict[str, Any] | None) -> str:
    """Deterministic id from the source position: connector, log position, table, primary key.

    A change re-emitted after a connector restart carries the same position, hence the
    same id, which is what lets every stage downstream recognise it. Snapshot reads have
    no change position of their own (every row of a snapshot shares one LSN), so their id
    comes from the row's content instead: re-snapshotting an unchanged row yields the
    same id, and only rows that changed since are new events.
    """
    source = envelope["source"]
    primary_key = json.dumps(key, sort_keys=True, default=str)
    if envelope.get("op") == "r":
        row = json.dumps(envelope.get("after"), sort_keys=True, default=str)
        content = hashlib.sha256(row.encode()).hexdigest()
        parts = ["snapshot", source.get("name"), table_of(source), primary_key, content]
    else:
        parts = [source.get("name"), *_log_position(source), table_of(source), primary_key]
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "|".join(str(p) for p in parts)))


def _log_position(source: dict[str, Any]) -> tuple[Any, ...]:
    """PostgreSQL: the WAL position and the transaction. MariaDB: the binlog file, the
    event's offset in it, and the row within the event."""
    if "lsn" in source:
        return source.get("lsn"), source.get("txId")
    return source.get("file"), source.get("pos"), source.get("row")


def table_of(source: dict[str, Any]) -> str:
    """``schema.table`` (PostgreSQL) or ``database.table`` (MariaDB, which has no schemas):
    how the topology names a source's table."""
    return f"{source.get('schema') or source.get('db')}.{source.get('table')}"


def position_of(source: dict[str, Any]) -> str:
    """The change's place in the source's log, as people read it."""
    if "lsn" in source:
        return f"lsn={source.get('lsn')};txid={source.get('txId')}"
    return f"binlog={source.get('file')}:{source.get('pos')};row={source.get('row')}"


Convert = Callable[[Any], Any]

_ACCEPTED: dict[str, tuple[type, ...]] = {
    "string": (str, int),
    "enum": (str,),
    "decimal": (str, int, float),
    "date": (int, str, date),
    "timestamp": (int, str, datetime),
    "int": (int,),
    "bool": (bool,),
}


def _conversion(field: Field, name: str) -> Convert:
    """The standard form of a (non-null) value of ``field``; raises NormalizeError."""
    if field.standard == "uscc":
        return _standard(standards.normalize_uscc, name, str)
    if field.standard == "resident_id":
        return _standard(standards.normalize_resident_id, name, str)
    if field.type == "date":
        return _standard(standards.to_iso_date, name)
    if field.type == "timestamp":
        return _standard(standards.to_utc_iso, name)
    if field.type == "decimal":

        def decimal(value: Any) -> str:
            try:
                return str(Decimal(str(value)))
            except InvalidOperation:
                raise NormalizeError(
                    "wrong_type", f"field {name}: {value!r} is not a decimal number"
                ) from None

        return decimal
    if field.type == "string":
        return lambda value: value.strip() if isinstance(value, str) else str(value)
    return lambda value: value


def _standard(convert: Convert, name: str, prepare: Convert | None = None) -> Convert:
    def standard(value: Any) -> Any:
        try:
            return convert(prepare(value) if prepare else value)
        except standards.StandardViolation as exc:
            raise NormalizeError(exc.code, f"field {name}: {exc}") from exc

    return standard


def _checked(field: Field, name: str) -> Convert:
    """``_conversion`` behind the field's type check; None stays None."""
    accepted, is_bool, convert = (
        _ACCEPTED[field.type],
        field.type == "bool",
        _conversion(field, name),
    )

    def checked(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) != is_bool or not isinstance(value, accepted):
            raise NormalizeError(
                "wrong_type",
                f"field {name}: {type(value).__name__} value does not fit type {field.type}",
            )
        return convert(value)

    return checked


@dataclass(frozen=True)
class _Column:
    field: str
    column: str
    codes: dict[str, str]
    convert: Convert


class Normalizer:
    """:func:`normalize` for one source, its column mapping and conversions worked out
    once rather than per record."""

    def __init__(self, source: Source, entity: Entity) -> None:
        self.source, self.entity = source, entity
        self._columns = [
            _Column(name, mapping.column, mapping.codes, _checked(entity.fields[name], name))
            for name, mapping in source.columns.items()
        ]

    def map_row(
        self, row: dict[str, Any] | None, wall_clock: Mapping[str, temporal.WallClock] = {}
    ) -> dict[str, Any] | None:
        """Source row -> canonical state (every entity field; unmapped ones are None).
        ``wall_clock``: how to read the row's zone-less time columns (temporal.py)."""
        if row is None:
            return None
        state: dict[str, Any] = dict.fromkeys(self.entity.fields)
        for mapped in self._columns:
            column = mapped.column
            if column not in row:
                raise NormalizeError(
                    "unknown_column",
                    f"source {self.source.id} has no column {column!r} (field {mapped.field})",
                )
            value = row[column]
            if wall_clock and column in wall_clock and value is not None:
                value = temporal.read(value, wall_clock[column])
            if value is not None and mapped.codes:
                code = str(value).strip()
                if code not in mapped.codes:
                    raise NormalizeError(
                        "unknown_code",
                        f"{self.source.id}.{column} = {code!r} is not in the code table for "
                        f"{mapped.field}",
                    )
                value = mapped.codes[code]
            state[mapped.field] = mapped.convert(value)
        return state

    def __call__(
        self,
        envelope: dict[str, Any],
        key: dict[str, Any] | None,
        wall_clock: Mapping[str, temporal.WallClock] = {},
    ) -> dict[str, Any]:
        """The canonical change event (the shape of schemas.change_event_schema)."""
        source, entity = self.source, self.entity
        # Any Avro value decodes, not only records: a value of another shape must be
        # refused here, or the stage fails on it, is restarted, and fails on it again.
        if not _is_envelope(envelope):
            raise NormalizeError("not_an_envelope", "record is not a Debezium change envelope")
        op = envelope["op"]
        if op not in _OPS:
            raise NormalizeError(
                "unsupported_operation", f"Debezium operation {op!r} is not a row change"
            )
        position = envelope["source"]
        table = table_of(position)
        if table != source.table:
            raise NormalizeError(
                "unknown_table", f"{table} is not a table of source {source.id} ({source.table})"
            )
        before = self.map_row(envelope.get("before"), wall_clock)
        after = self.map_row(envelope.get("after"), wall_clock)
        current = after if after is not None else before
        entity_key = current.get(entity.key) if current else None
        if not entity_key:
            raise NormalizeError("null_key", f"{source.id}: the entity key {entity.key} is empty")
        return {
            "event_id": event_id(envelope, key),
            "kind": kind_of(op, before, after, entity),
            "entity": source.entity,
            "key": entity_key,
            "before": before,
            "after": after,
            "changed_fields": changed_fields(before, after),
            "source": source.id,
            "source_ts_ms": int(position.get("ts_ms") or 0),
            "source_position": position_of(position),
        }


def changed_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    if after is None:
        return []
    if before is None:
        return [name for name, value in after.items() if value is not None]
    return [name for name in after if before.get(name) != after.get(name)]


def kind_of(
    op: str, before: dict[str, Any] | None, after: dict[str, Any] | None, entity: Entity
) -> str:
    kind = _OPS[op]
    if kind == "updated" and entity.lifecycle is not None and after is not None:
        field, ended = entity.lifecycle.field, entity.lifecycle.ended
        if after.get(field) in ended and (before is None or before.get(field) not in ended):
            return "deregistered"
    return kind


def normalize(
    envelope: dict[str, Any], key: dict[str, Any] | None, source: Source, entity: Entity
) -> dict[str, Any]:
    """The canonical change event for one envelope (the stage keeps a :class:`Normalizer`
    per source instead)."""
    return Normalizer(source, entity)(envelope, key)


def _is_envelope(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("op"), str)
        and isinstance(value.get("source"), dict)
        and all(isinstance(value.get(image), dict | None) for image in ("before", "after"))
    )
