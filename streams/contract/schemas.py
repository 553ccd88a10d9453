"""Avro schemas generated from the topology, so topology.yaml stays the one source of truth.

The dicts returned here go straight to ``fastavro.parse_schema`` and, as JSON, to the
schema registry. The generated ``.avsc`` files under ``schemas/`` are a reviewable copy
for consumers in other languages; ``python -m govsync.control.schema_files`` regenerates them and a
unit test fails when they drift from the topology.

Naming: ``govsync.<entity>.<Entity>State`` / ``<Entity>Change`` for the canonical topics,
``govsync.deliver.<department>.<Entity>State`` / ``<Entity>Delivery`` for a department's
projection. Enum types live in an ``.enums`` sub-namespace so a field called ``state``
or ``change`` cannot collide with the record names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

from streams.contract.records import AUDIT_KINDS, LINEAGE_STAGES
from streams.contract.topics import (
    AUDIT_TOPIC,
    QUALITY_TOPIC,
    RECEIPTS_TOPIC,
    TRACE_TOPIC,
    changes_topic,
    delivery_topic,
    master_topic,
)
from streams.model.topology import (
    Entity,
    Mask,
    Subscription,
    Topology,
)

ChangeKind = Literal["registered", "updated", "deregistered", "snapshot", "deleted"]
CHANGE_KINDS: list[str] = list(get_args(ChangeKind))

# Dates, timestamps and decimals travel as strings (ISO date, ISO-8601 UTC, exact
# decimal text) so no consumer loses precision or has to know Avro logical types.
_AVRO_TYPES = {
    "string": "string",
    "date": "string",
    "timestamp": "string",
    "decimal": "string",
    "int": "long",
    "bool": "boolean",
}
# The file names this module owns in schemas/; others' schemas live beside them.
Schema = dict[str, Any]


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _state_record(
    entity_name: str,
    entity: Entity,
    field_names: Iterable[str],
    namespace: str,
    masks: Mapping[str, Mask] | None = None,
) -> Schema:
    """The state record; a masked field is text (its masked form), a dropped one absent."""
    type_prefix = _pascal(entity_name)
    fields: list[Schema] = []
    masks = masks or {}
    for name in field_names:
        field = entity.fields[name]
        mask = masks.get(name)
        if mask is not None and mask.rule == "drop":
            continue
        avro_type: str | Schema
        doc = f"classification: {field.classification}"
        if mask is not None:
            avro_type = "string"
            doc += f"; masked: {mask.rule}" + (
                f" (first and last {mask.kept} characters kept)" if mask.rule == "partial" else ""
            )
        elif field.type == "enum":
            avro_type = {
                "type": "enum",
                "name": f"{type_prefix}{_pascal(name)}",
                "namespace": f"{namespace}.enums",
                "symbols": list(field.symbols or []),
            }
        else:
            avro_type = _AVRO_TYPES[field.type]
        if name == entity.key:
            fields.append({"name": name, "type": avro_type, "doc": doc})
        else:
            fields.append({"name": name, "type": ["null", avro_type], "default": None, "doc": doc})
    return {
        "type": "record",
        "name": f"{type_prefix}State",
        "namespace": namespace,
        "doc": f"State of one {entity_name} record, keyed by {entity.key}; null means not known.",
        "fields": fields,
    }


def _envelope(name: str, namespace: str, doc: str, state: Schema) -> Schema:
    state_name = f"{state['namespace']}.{state['name']}"
    return {
        "type": "record",
        "name": name,
        "namespace": namespace,
        "doc": doc,
        "fields": [
            {
                "name": "event_id",
                "type": "string",
                "doc": "Deterministic from the source position: a redelivered change keeps it.",
            },
            {
                "name": "kind",
                "type": {
                    "type": "enum",
                    "name": "ChangeKind",
                    "doc": "snapshot: row read by the initial snapshot; "
                    "deleted: source row physically deleted.",
                    "symbols": CHANGE_KINDS,
                },
            },
            {"name": "entity", "type": "string"},
            {"name": "key", "type": "string", "doc": "The entity key, also the Kafka record key."},
            {"name": "before", "type": ["null", state], "default": None},
            {"name": "after", "type": ["null", state_name], "default": None},
            {"name": "changed_fields", "type": {"type": "array", "items": "string"}},
            {"name": "source", "type": "string", "doc": "Id of the topology source."},
            {
                "name": "source_ts_ms",
                "type": "long",
                "doc": "Commit time in the source database, epoch milliseconds.",
            },
            {
                "name": "source_position",
                "type": "string",
                "doc": "Position in the source log, e.g. lsn=123;txid=456.",
            },
        ],
    }


def entity_state_schema(topology: Topology, entity_name: str) -> Schema:
    """Latest state of one entity: the value of ``master.<entity>``."""
    entity = topology.entity(entity_name)
    return _state_record(entity_name, entity, entity.fields, f"govsync.{entity_name}")


def change_event_schema(topology: Topology, entity_name: str) -> Schema:
    """A canonical change: the value of ``changes.<entity>``."""
    namespace = f"govsync.{entity_name}"
    return _envelope(
        f"{_pascal(entity_name)}Change",
        namespace,
        f"One committed change to {entity_name} master data, in canonical form.",
        entity_state_schema(topology, entity_name),
    )


def delivery_schema(topology: Topology, subscription: Subscription) -> Schema:
    """A change as one department receives it: only its subscription's fields."""
    entity = topology.entity(subscription.entity)
    namespace = f"govsync.deliver.{subscription.department}"
    state = _state_record(
        subscription.entity, entity, subscription.fields_in(entity), namespace, subscription.mask
    )
    schema = _envelope(
        f"{_pascal(subscription.entity)}Delivery",
        namespace,
        f"A {subscription.entity} change delivered under subscription {subscription.id}.",
        state,
    )
    schema["fields"].append(
        {"name": "subscription", "type": "string", "doc": "Id of the approved subscription."}
    )
    return schema


def quality_schema() -> Schema:
    """A 一数一源 finding on ``govsync.quality``: a source disagrees with the owner of a field.
    Values are text (JSON for non-strings) because fields of every type share the topic."""
    optional_text = {"type": ["null", "string"], "default": None}
    return {
        "type": "record",
        "name": "Discrepancy",
        "namespace": "govsync.quality",
        "doc": "A non-authoritative source's value differs from the canonical value.",
        "fields": [
            {"name": "entity", "type": "string"},
            {"name": "key", "type": "string", "doc": "The entity key, also the record key."},
            {"name": "field", "type": "string"},
            {"name": "authoritative_source", "type": "string"},
            {"name": "authoritative_value", **optional_text},
            {
                "name": "authoritative_ts_ms",
                "type": ["null", "long"],
                "default": None,
                "doc": "When the owning source committed the canonical value, if known.",
            },
            {"name": "other_source", "type": "string"},
            {"name": "other_value", **optional_text},
            {"name": "other_ts_ms", "type": "long", "doc": "When the other source committed."},
            {"name": "event_id", "type": "string", "doc": "The other source's change."},
        ],
    }


def receipt_schema() -> Schema:
    """A department's answer to one delivery, on ``govsync.receipts``."""
    return {
        "type": "record",
        "name": "Receipt",
        "namespace": "govsync.receipts",
        "doc": "Whether a department applied a delivered change; at least once per delivery.",
        "fields": [
            {"name": "event_id", "type": "string"},
            {"name": "subscription", "type": "string"},
            {"name": "department", "type": "string"},
            {"name": "entity_key", "type": "string"},
            {
                "name": "outcome",
                "type": {"type": "enum", "name": "Outcome", "symbols": ["applied", "rejected"]},
            },
            {"name": "reason", "type": ["null", "string"], "default": None},
            {"name": "topic", "type": "string", "doc": "The delivery topic."},
            {"name": "partition", "type": "int"},
            {"name": "offset", "type": "long"},
            {"name": "applied_at_ms", "type": "long", "doc": "When the department committed."},
        ],
    }


def lineage_schema() -> Schema:
    """One hop of one change, on ``govsync.trace`` (streams/trail/lineage.py)."""
    optional_text = {"type": ["null", "string"], "default": None}
    return {
        "type": "record",
        "name": "Hop",
        "namespace": "govsync.trace",
        "doc": "Where a change was seen, and when: captured, normalized, delivered, receipt.",
        "fields": [
            {"name": "event_id", "type": "string"},
            {
                "name": "stage",
                "type": {"type": "enum", "name": "Stage", "symbols": LINEAGE_STAGES},
            },
            {"name": "kind", "type": "string", "doc": "The change's kind, e.g. deregistered."},
            {"name": "entity", "type": "string"},
            {"name": "entity_key", "type": "string"},
            {"name": "department", **optional_text},
            {"name": "subscription", **optional_text},
            {"name": "topic", "type": "string"},
            {"name": "partition", "type": "int"},
            {"name": "offset", "type": "long"},
            {"name": "at_ms", "type": "long", "doc": "When the hop happened (epoch ms)."},
            {"name": "source_ts_ms", "type": "long", "doc": "The source commit (epoch ms)."},
            {"name": "outcome", **optional_text},
            {"name": "reason", **optional_text},
        ],
    }


def audit_schema() -> Schema:
    """One link of the hash-chained audit trail on ``govsync.audit`` (streams/trail/audit.py).
    Every field of ``AuditRecord``, because the hash covers every field: a field the schema
    dropped could not be verified from what is on Kafka."""
    optional_text = {"type": ["null", "string"], "default": None}
    text_map = {"type": {"type": "map", "values": "string"}, "default": {}}
    return {
        "type": "record",
        "name": "AuditRecord",
        "namespace": "govsync.audit",
        "doc": "Who received which data, when, under which approval; each record carries the "
        "SHA-256 of its predecessor, so tampering breaks the chain where it happened.",
        "fields": [
            {"name": "seq", "type": "long", "doc": "Position in the chain, from 0."},
            {
                "name": "kind",
                "type": {"type": "enum", "name": "AuditKind", "symbols": AUDIT_KINDS},
            },
            {"name": "at_ms", "type": "long", "doc": "When it happened, epoch milliseconds."},
            {"name": "actor", "type": "string", "doc": "Who did it: a principal or department."},
            {"name": "event_id", **optional_text},
            {"name": "entity", **optional_text},
            {"name": "entity_key", **optional_text},
            {"name": "department", **optional_text},
            {"name": "subscription", **optional_text},
            {
                "name": "fields",
                "type": {"type": "array", "items": "string"},
                "default": [],
                "doc": "The fields the department received.",
            },
            {**text_map, "name": "approval", "doc": "by, at, purpose, legal_basis, expires."},
            {
                **text_map,
                "name": "detail",
                "doc": "Anything else: topic/partition/offset, outcome, reason, replay id, "
                "checkpoint count and head.",
            },
            {"name": "prev_sha256", "type": "string", "doc": "sha256 of the previous record."},
            {
                "name": "sha256",
                "type": "string",
                "doc": "SHA-256 over prev_sha256 and the canonical JSON of every other field.",
            },
        ],
    }


def schema_files(topology: Topology) -> dict[str, str]:
    """The generated ``.avsc`` files, name → exact content."""
    schemas: dict[str, Schema] = {}
    for entity_name in topology.entities:
        schemas[f"{entity_name}.state.avsc"] = entity_state_schema(topology, entity_name)
        schemas[f"{entity_name}.change.avsc"] = change_event_schema(topology, entity_name)
    for subscription in topology.subscriptions:
        name = f"deliver.{subscription.department}.{subscription.entity}.avsc"
        schemas[name] = delivery_schema(topology, subscription)
    schemas["quality.avsc"] = quality_schema()
    schemas["receipts.avsc"] = receipt_schema()
    schemas["audit.avsc"] = audit_schema()
    schemas["trace.avsc"] = lineage_schema()
    return {
        name: json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
        for name, schema in schemas.items()
    }


def value_schemas(topology: Topology) -> dict[str, dict]:
    """Topic -> value schema, for every topic govsync itself writes Avro to."""
    plan: dict[str, dict] = {}
    for entity in topology.changed_entities:
        plan[changes_topic(entity)] = change_event_schema(topology, entity)
        plan[master_topic(entity)] = entity_state_schema(topology, entity)
    for subscription in topology.subscriptions:
        plan[delivery_topic(subscription)] = delivery_schema(topology, subscription)
    plan[QUALITY_TOPIC] = quality_schema()
    plan[RECEIPTS_TOPIC] = receipt_schema()
    plan[TRACE_TOPIC] = lineage_schema()
    plan[AUDIT_TOPIC] = audit_schema()
    return plan
