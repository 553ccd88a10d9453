"""The topology model: who owns which master data, who may receive which fields.

topology.yaml is the one wiring file every part reads (connectors, processors, CLI),
so it is validated completely before anything acts on it: structure first (pydantic,
unknown keys are errors so a typo never silently disables a rule), then the
cross-references and the sharing rules (一数一源, clearance, the negative list).
Every problem is reported with its YAML path, all at once, so one run fixes the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Literal

import pydantic
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, PositiveInt
from pydantic_core import ErrorDetails

# Department ids are Kafka principals; these belong to govsync itself
# (streams/kafka/credentials.py).
RESERVED_PRINCIPALS = (
    "admin",
    "worker",
    "ledger",
    "indexer",
    "api",
    "connect",
    "controller",
    "mirror",
)

ROOT = "<root>"
"""Problem path for the document as a whole (unreadable, not YAML, not a mapping)."""

CST = timezone(timedelta(hours=8), "CST")
"""China Standard Time (UTC+8, no daylight saving): approval dates are its calendar days,
and every time shown to a person is in it."""

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_DURATION_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
# Names become Kafka topic parts and Avro names, so they stay lower_snake_case.
_IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_AVRO_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUALIFIED_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*")
_STANDARD_TYPE = {
    "uscc": "string",
    "resident_id": "string",
    "date": "date",
    "timestamp": "timestamp",
}


def _parse_duration(value: object) -> object:
    """Accept the short forms operators write (``5s``, ``1h``, ``7d``), nothing ambiguous."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        return int(match[1]) * _DURATION_UNITS[match[2]]
    raise ValueError(f"expected a duration such as 500ms, 5s, 30m, 1h or 7d, got {value!r}")


def _format_duration(value: timedelta) -> str:
    """The inverse of _parse_duration, so ``topology show --json`` prints what was written."""
    for unit, size in reversed(_DURATION_UNITS.items()):
        if value % size == timedelta(0):
            return f"{value // size}{unit}"
    return f"{value // _DURATION_UNITS['ms']}ms"


def _mask_shorthand(value: object) -> object:
    """``legal_rep_id: hash`` is shorthand for ``legal_rep_id: {rule: hash}``."""
    return {"rule": value} if isinstance(value, str) else value


def _column_shorthand(value: object) -> object:
    """``name: ent_name`` is shorthand for ``name: {column: ent_name}``."""
    return {"column": value} if isinstance(value, str) else value


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    PlainSerializer(_format_duration, return_type=str, when_used="json"),
]
FieldType = Literal["string", "enum", "date", "timestamp", "decimal", "int", "bool"]
Standard = Literal["uscc", "resident_id", "date", "timestamp"]
MaskRule = Literal["partial", "hash", "drop"]
DEFAULT_PARTIAL_KEEP = 3
NonEmptyList = Annotated[list[str], pydantic.Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Department(_Model):
    """A department, or another govsync node (``node: true``): a node subscribes like a
    department, and its deliveries are what federation mirrors to it (docs/federation.md)."""

    name: str
    clearance: str
    node: bool = False


class Field(_Model):
    """One master-data attribute; its classification decides who may receive it."""

    type: FieldType
    symbols: list[str] | None = None
    standard: Standard | None = None
    classification: str


class Lifecycle(_Model):
    """Which value of which field ends an entity's life (a company deregistered, a person
    deceased): an update that reaches it is a ``deregistered`` change, not a plain update."""

    field: str
    ended: NonEmptyList


class Entity(_Model):
    key: str
    fields: dict[str, Field]
    lifecycle: Lifecycle | None = None


class Database(_Model):
    """A PostgreSQL database (tables ``<schema>.<table>``) or a MariaDB one (tables
    ``<database>.<table>``: MariaDB has no schemas within a database)."""

    kind: Literal["postgres", "mariadb"]
    name: str


class ColumnMapping(_Model):
    """Where a field comes from in the source table, and how its codes translate."""

    column: str
    codes: dict[str, str] | None = None

    @pydantic.field_validator("codes", mode="before")
    @classmethod
    def _codes_as_text(cls, codes: object) -> object:
        """Unquoted YAML codes (``1: active``) are ints; the code is the same either way."""
        if isinstance(codes, dict):
            return {
                str(code) if isinstance(code, int) and not isinstance(code, bool) else code: symbol
                for code, symbol in codes.items()
            }
        return codes


class Source(_Model):
    """A table in a department's database whose changes are captured."""

    id: str
    department: str
    database: Database
    table: str
    entity: str
    primary_key: NonEmptyList
    authoritative: list[str] = pydantic.Field(default_factory=list)
    columns: dict[str, Annotated[ColumnMapping, BeforeValidator(_column_shorthand)]]

    @property
    def cdc_topic(self) -> str:
        """Debezium's topic for the table, with the connector's prefix ``cdc.<department>``
        (``cdc.<department>.<schema>.<table>``; for MariaDB the database is the schema)."""
        return f"cdc.{self.department}.{self.table}"


class Mask(_Model):
    """How one field is masked for one subscription: ``partial`` keeps the first and last
    ``keep`` characters, ``hash`` is an HMAC-SHA256 under the department's own key (so two
    departments' hashes never join), ``drop`` delivers the fact of a change but no value."""

    rule: MaskRule
    keep: PositiveInt | None = None

    @pydantic.model_validator(mode="after")
    def _keep_only_for_partial(self) -> Mask:
        if self.rule != "partial" and self.keep is not None:
            raise ValueError(f"keep applies to the partial rule, not {self.rule}")
        return self

    @property
    def kept(self) -> int:
        """Characters kept at each end by ``partial``."""
        return self.keep or DEFAULT_PARTIAL_KEEP


class Approval(_Model):
    state: Literal["requested", "approved", "rejected", "suspended", "revoked"]
    by: str | None = None
    at: date | None = None
    purpose: str
    legal_basis: str
    expires: date


class Sla(_Model):
    deliver_within: Duration
    receipt_within: Duration


class Subscription(_Model):
    """A department's approved request for some fields of one entity."""

    id: str
    department: str
    entity: str
    fields: NonEmptyList
    mask: dict[str, Annotated[Mask, BeforeValidator(_mask_shorthand)]] = pydantic.Field(
        default_factory=dict
    )
    approval: Approval
    sla: Sla

    def is_active(self, at: datetime) -> bool:
        """Whether anything may be delivered at ``at``: approved, approval day reached and
        expiry day not passed (both inclusive, in China Standard Time)."""
        if at.tzinfo is None:
            raise ValueError("is_active needs a timezone-aware datetime")
        if self.approval.state != "approved":
            return False
        day = at.astimezone(CST).date()
        started = self.approval.at is None or self.approval.at <= day
        return started and day <= self.approval.expires

    def fields_in(self, entity: Entity) -> list[str]:
        """The subscribed fields in the entity's declaration order, so reordering the
        subscription's list does not change its delivery schema."""
        return [name for name in entity.fields if name in self.fields]


class Feed(_Model):
    """What an upstream node sends of one entity: the fields of its subscription there,
    and those it is the authority for here (default: all it sends)."""

    fields: NonEmptyList
    authoritative: list[str] | None = None

    @property
    def owned(self) -> list[str]:
        return self.fields if self.authoritative is None else self.authoritative


class Upstream(_Model):
    """Another govsync node this one receives changes from: its deliveries to ``login``
    (this node's department id there) are mirrored here by MirrorMaker 2 and enter
    ``changes.<entity>`` as if from a source of this node."""

    node: str
    bootstrap: str
    registry: str  # its Apicurio base URL: mirrored records name its schema ids
    login: str
    entities: dict[str, Feed]


class Federation(_Model):
    node: str  # this node's name: peers prefix what they mirror from it with it
    upstreams: list[Upstream] = pydantic.Field(default_factory=list)


@dataclass(frozen=True)
class Inbound:
    """One entity received from one upstream node: a source of this node's canonical
    state like any database table, named ``<node>.<entity>``."""

    upstream: Upstream
    entity: str
    feed: Feed

    @property
    def id(self) -> str:
        return f"{self.upstream.node}.{self.entity}"


class KafkaSettings(_Model):
    """Settings for the topics govsync creates (changes.*, deliver.*; master.* is compacted)."""

    partitions: PositiveInt = 6
    # Copies of each topic; None: the cluster's default.replication.factor (the embedded
    # stack's is one per Kafka node, 1 or 3; the Strimzi cluster's is 3).
    replication_factor: PositiveInt | None = None
    retention: Duration = timedelta(days=7)
    dlq_retention: Duration = timedelta(days=30)
    # How long the route stage remembers an event_id to drop re-emitted copies of it.
    dedup_retention: Duration = timedelta(days=7)


class Topology(_Model):
    classification: NonEmptyList
    never_share: list[str] = pydantic.Field(default_factory=list)
    departments: dict[str, Department]
    # The data authority (数据资源局): the department whose signed decisions make
    # subscriptions active (streams/contract/approvals.py). None: no subscription is.
    authority: str | None = None
    entities: dict[str, Entity]
    sources: list[Source] = pydantic.Field(default_factory=list)
    subscriptions: list[Subscription] = pydantic.Field(default_factory=list)
    kafka: KafkaSettings = KafkaSettings()
    federation: Federation | None = None

    @property
    def inbound(self) -> list[Inbound]:
        """What this node receives from upstream nodes, per entity."""
        if self.federation is None:
            return []
        return [
            Inbound(upstream, entity, feed)
            for upstream in self.federation.upstreams
            for entity, feed in upstream.entities.items()
        ]

    @property
    def changed_entities(self) -> list[str]:
        """The entities with a ``changes.<entity>`` topic: those a source or an upstream
        node feeds."""
        return sorted({s.entity for s in self.sources} | {i.entity for i in self.inbound})

    def entity(self, name: str) -> Entity:
        try:
            return self.entities[name]
        except KeyError:
            raise KeyError(f"unknown entity {name!r}") from None

    def source(self, source_id: str) -> Source:
        for source in self.sources:
            if source.id == source_id:
                return source
        raise KeyError(f"unknown source {source_id!r}")

    def subscription(self, subscription_id: str) -> Subscription:
        for subscription in self.subscriptions:
            if subscription.id == subscription_id:
                return subscription
        raise KeyError(f"unknown subscription {subscription_id!r}")

    def sources_for(self, entity: str) -> list[Source]:
        return [source for source in self.sources if source.entity == entity]

    def inbound_for(self, entity: str) -> list[Inbound]:
        return [inbound for inbound in self.inbound if inbound.entity == entity]

    def active_subscriptions(self, entity: str, at: datetime) -> list[Subscription]:
        """The subscriptions that receive changes to ``entity`` at ``at``."""
        return [s for s in self.subscriptions if s.entity == entity and s.is_active(at)]


def approval_day_end(at: datetime) -> datetime:
    """The first instant after ``at``'s day in China Standard Time: approval windows are
    whole days there, so which subscriptions are active cannot change before it."""
    day = at.astimezone(CST).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=CST)


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class TopologyError(Exception):
    """The topology is invalid; ``problems`` holds every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


# libyaml's parser where the installed PyYAML has it (its wheels do): 9 x faster than the
# pure-Python one, and every command that reads the topology in force parses it.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_topology(path: Path | str) -> Topology:
    """Read and fully validate a topology file, raising TopologyError listing all problems."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError([Problem(ROOT, f"cannot read {path}: {exc}")]) from None
    return parse_topology(text)


def parse_topology(text: str) -> Topology:
    """Validate a topology document given as text (a file's content, or the applied
    topology as published on Kafka)."""
    try:
        document = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise TopologyError([Problem(ROOT, f"not valid YAML: {_yaml_reason(exc)}")]) from None

    problems = list(_duplicate_keys(document, ())) if document is not None else []
    topology, found = _validate(data)
    problems.extend(found)
    if problems or topology is None:
        raise TopologyError(problems)
    return topology


def _validate(data: object) -> tuple[Topology | None, list[Problem]]:
    if data is None:
        return None, [Problem(ROOT, "the topology is empty")]
    if not isinstance(data, dict):
        return None, [Problem(ROOT, f"must be a mapping, got {type(data).__name__}")]
    try:
        topology = Topology.model_validate(data)
    except pydantic.ValidationError as exc:
        return None, [_structure_problem(data, error) for error in exc.errors()]
    return topology, list(_cross_reference_problems(topology))


def _yaml_reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def _format_path(parts: Iterable[str | int]) -> str:
    """YAML-style path: ``("sources", 0, "codes", "5")`` → ``sources[0].codes."5"``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = part if _PLAIN_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            text += f".{key}" if text else key
    return text or ROOT


def _duplicate_keys(node: yaml.Node, at: tuple[str | int, ...]) -> Iterator[Problem]:
    """PyYAML keeps the last of two equal keys; a second department with the same id
    would silently replace the first, so duplicates are problems."""
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in first_line:
                yield _problem(
                    (*at, key),
                    f"duplicate key (first on line {first_line[key]}); the later one would win",
                )
            first_line.setdefault(key, key_node.start_mark.line + 1)
            yield from _duplicate_keys(value_node, (*at, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*at, index))


def _structure_problem(data: object, error: ErrorDetails) -> Problem:
    """Turn a pydantic error into a Problem, walking the data so that list indexes print
    as ``[i]`` and dict keys that merely look numeric print as ``."5"``."""
    parts: list[str | int] = []
    node = data
    for part in error["loc"]:
        if part == "[key]":
            continue
        if isinstance(node, str):
            break  # a shorthand (``name: blur``): the key inside it was never written
        if isinstance(node, list) and isinstance(part, int):
            parts.append(part)
            node = node[part] if part < len(node) else None
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    kind = error["type"]
    if kind == "missing":
        message = "required"
    elif kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    else:
        message = error["msg"]
        if isinstance(error["input"], str | int | float | bool | date):
            message += f", got {error['input']!r}"
    return _problem(parts, message)


def _problem(parts: tuple[str | int, ...], message: str) -> Problem:
    return Problem(_format_path(parts), message)


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    return f"unknown {kind} {name!r}; known: {', '.join(known) or 'none'}"


def _cross_reference_problems(topology: Topology) -> Iterator[Problem]:
    ranks = {label: rank for rank, label in enumerate(topology.classification)}
    for index, label in enumerate(topology.classification):
        if topology.classification.index(label) != index:
            yield _problem(("classification", index), f"duplicate label {label!r}")
    for department_id, department in topology.departments.items():
        at = ("departments", department_id)
        if not _IDENTIFIER.fullmatch(department_id):
            yield _problem(
                at, "department id must be lower_snake_case: it names topics and Avro namespaces"
            )
        if department_id in RESERVED_PRINCIPALS:
            yield _problem(
                at, f"{department_id!r} is reserved: it names govsync's own Kafka principal"
            )
        if department.clearance not in ranks:
            yield _problem(
                (*at, "clearance"),
                _unknown("clearance label", department.clearance, ranks),
            )
    if topology.authority is not None and topology.authority not in topology.departments:
        yield _problem(
            ("authority",), _unknown("department", topology.authority, topology.departments)
        )
    yield from _entity_problems(topology, ranks)
    yield from _source_problems(topology)
    yield from _federation_problems(topology)
    yield from _subscription_problems(topology, ranks)
    for index, reference in enumerate(topology.never_share):
        entity_name, _, field_name = reference.partition(".")
        entity = topology.entities.get(entity_name)
        if entity is None or field_name not in entity.fields:
            yield _problem(
                ("never_share", index),
                f"{reference!r} is not a known <entity>.<field>",
            )


def _entity_problems(topology: Topology, ranks: dict[str, int]) -> Iterator[Problem]:
    for entity_name, entity in topology.entities.items():
        at = ("entities", entity_name)
        if not _IDENTIFIER.fullmatch(entity_name):
            yield _problem(
                at, "entity name must be lower_snake_case: it names topics and Avro types"
            )
        for field_name, field in entity.fields.items():
            field_at = (*at, "fields", field_name)
            if not _IDENTIFIER.fullmatch(field_name):
                yield _problem(
                    field_at, "field name must be lower_snake_case: it names Avro fields and types"
                )
            if field.classification not in ranks:
                yield _problem(
                    (*field_at, "classification"),
                    _unknown("classification", field.classification, ranks),
                )
            if field.type == "enum" and not field.symbols:
                yield _problem(field_at, "an enum field needs symbols")
            elif field.type != "enum" and field.symbols is not None:
                yield _problem((*field_at, "symbols"), "only enum fields have symbols")
            for index, symbol in enumerate(field.symbols or []):
                if not _AVRO_SYMBOL.fullmatch(symbol):
                    yield _problem(
                        (*field_at, "symbols", index),
                        f"{symbol!r} is not a valid Avro enum symbol",
                    )
                elif (field.symbols or []).index(symbol) != index:
                    yield _problem((*field_at, "symbols", index), f"duplicate symbol {symbol!r}")
            if field.standard and _STANDARD_TYPE[field.standard] != field.type:
                yield _problem(
                    (*field_at, "standard"),
                    f"standard {field.standard} applies to {_STANDARD_TYPE[field.standard]} "
                    f"fields, not {field.type}",
                )
        if entity.lifecycle is not None:
            lifecycle_at = (*at, "lifecycle")
            field = entity.fields.get(entity.lifecycle.field)
            if field is None:
                yield _problem(
                    (*lifecycle_at, "field"),
                    _unknown("field", entity.lifecycle.field, entity.fields),
                )
            elif field.type == "enum":
                for index, value in enumerate(entity.lifecycle.ended):
                    if value not in (field.symbols or []):
                        yield _problem(
                            (*lifecycle_at, "ended", index),
                            f"{value!r} is not a symbol of {entity.lifecycle.field}",
                        )
        key = entity.fields.get(entity.key)
        if key is None:
            yield _problem((*at, "key"), _unknown("key field", entity.key, entity.fields))
        elif key.type != "string":
            yield _problem(
                (*at, "key"),
                f"{entity.key} is {key.type}; the key must be a string, it keys Kafka records",
            )


def _source_problems(topology: Topology) -> Iterator[Problem]:
    first_index: dict[str, int] = {}
    topics: dict[str, int] = {}
    database_owner: dict[str, tuple[str, int]] = {}
    department_database: dict[str, tuple[str, int]] = {}
    authority: dict[tuple[str, str], str] = {}
    for index, source in enumerate(topology.sources):
        at: tuple[str | int, ...] = ("sources", index)
        if source.id in first_index:
            yield _problem(
                (*at, "id"),
                f"duplicate source id {source.id!r} (also sources[{first_index[source.id]}])",
            )
        first_index.setdefault(source.id, index)
        if source.department not in topology.departments:
            yield _problem(
                (*at, "department"),
                _unknown("department", source.department, topology.departments),
            )
        if source.database.kind == "mariadb" and not (
            _QUALIFIED_TABLE.fullmatch(source.table)
            and source.table.partition(".")[0] == source.database.name
        ):
            yield _problem(
                (*at, "table"),
                f"must be {source.database.name}.<table>: MariaDB qualifies a table by its "
                "database",
            )
        elif not _QUALIFIED_TABLE.fullmatch(source.table):
            yield _problem((*at, "table"), "must be schema-qualified, e.g. public.enterprise")
        elif source.cdc_topic in topics:
            yield _problem(
                (*at, "table"),
                f"same CDC topic {source.cdc_topic} as sources[{topics[source.cdc_topic]}]",
            )
        topics.setdefault(source.cdc_topic, index)
        # One Debezium connector per database, topic prefix cdc.<department>: a database
        # belongs to one department and a department captures from one database.
        owner = database_owner.setdefault(source.database.name, (source.department, index))
        home = department_database.setdefault(source.department, (source.database.name, index))
        if owner[0] != source.department:
            yield _problem(
                (*at, "database", "name"),
                f"database {source.database.name} already belongs to {owner[0]} "
                f"(sources[{owner[1]}])",
            )
        elif home[0] != source.database.name:
            yield _problem(
                (*at, "database", "name"),
                f"{source.department} already captures from database {home[0]} "
                f"(sources[{home[1]}]); its CDC topics are all cdc.{source.department}.*",
            )
        entity = topology.entities.get(source.entity)
        if entity is None:
            yield _problem(
                (*at, "entity"),
                _unknown("entity", source.entity, topology.entities),
            )
            continue
        for field_name, mapping in source.columns.items():
            column_at = (*at, "columns", field_name)
            field = entity.fields.get(field_name)
            if field is None:
                yield _problem(
                    column_at,
                    _unknown(f"{source.entity} field", field_name, entity.fields),
                )
            elif mapping.codes is not None and field.type != "enum":
                yield _problem(
                    (*column_at, "codes"),
                    f"codes translate to enum symbols, but {field_name} is a {field.type} field",
                )
            elif mapping.codes is not None and field.symbols:
                for code, symbol in mapping.codes.items():
                    if symbol not in field.symbols:
                        yield _problem(
                            (*column_at, "codes", code),
                            f"{symbol!r} is not a symbol of {source.entity}.{field_name} "
                            f"({', '.join(field.symbols)})",
                        )
        if entity.key in entity.fields and entity.key not in source.columns:
            yield _problem((*at, "columns"), f"must map a column to the entity key {entity.key}")
        for position, field_name in enumerate(source.authoritative):
            field_at = (*at, "authoritative", position)
            if field_name not in entity.fields:
                yield _problem(
                    field_at,
                    _unknown(f"{source.entity} field", field_name, entity.fields),
                )
                continue
            if field_name not in source.columns:
                yield _problem(
                    field_at,
                    f"authoritative for {field_name} but maps no column to it",
                )
            owner = authority.setdefault((source.entity, field_name), source.id)
            if owner != source.id:
                yield _problem(
                    field_at,
                    f"{source.entity}.{field_name} already has the authoritative source {owner} "
                    "(一数一源: one datum, one source)",
                )


def _federation_problems(topology: Topology) -> Iterator[Problem]:
    if topology.federation is None:
        return
    owners = {
        (source.entity, name): source.id
        for source in topology.sources
        for name in source.authoritative
    }
    if not _IDENTIFIER.fullmatch(topology.federation.node):
        yield _problem(("federation", "node"), "must be lower_snake_case: it prefixes topics")
    seen: dict[str, int] = {}
    for index, upstream in enumerate(topology.federation.upstreams):
        at: tuple[str | int, ...] = ("federation", "upstreams", index)
        if not _IDENTIFIER.fullmatch(upstream.node):
            yield _problem((*at, "node"), "must be lower_snake_case: it prefixes mirrored topics")
        elif upstream.node == topology.federation.node:
            yield _problem((*at, "node"), "is this node itself")
        elif upstream.node in seen:
            yield _problem((*at, "node"), f"also federation.upstreams[{seen[upstream.node]}]")
        seen.setdefault(upstream.node, index)
        if not _IDENTIFIER.fullmatch(upstream.login):
            yield _problem((*at, "login"), "must be a department id (lower_snake_case)")
        for entity_name, feed in upstream.entities.items():
            feed_at = (*at, "entities", entity_name)
            entity = topology.entities.get(entity_name)
            if entity is None:
                yield _problem(feed_at, _unknown("entity", entity_name, topology.entities))
                continue
            for part, names in (
                ("fields", feed.fields),
                ("authoritative", feed.authoritative or []),
            ):
                for position, name in enumerate(names):
                    if name not in entity.fields:
                        yield _problem(
                            (*feed_at, part, position),
                            _unknown(f"{entity_name} field", name, entity.fields),
                        )
                    elif part == "authoritative" and name not in feed.fields:
                        yield _problem(
                            (*feed_at, part, position), f"{name} is not among the fields it sends"
                        )
            if entity.key not in feed.fields:
                yield _problem((*feed_at, "fields"), f"must include the entity key {entity.key}")
            feed_id = f"{upstream.node}.{entity_name}"
            owned_at = "fields" if feed.authoritative is None else "authoritative"
            for position, name in enumerate(feed.owned):
                if name not in entity.fields:
                    continue
                owner = owners.setdefault((entity_name, name), feed_id)
                if owner != feed_id:
                    yield _problem(
                        (*feed_at, owned_at, position),
                        f"{entity_name}.{name} already has the authoritative source {owner} "
                        "(一数一源: one datum, one source)",
                    )


def _subscription_problems(topology: Topology, ranks: dict[str, int]) -> Iterator[Problem]:
    first_index: dict[str, int] = {}
    never_share = set(topology.never_share)
    for index, subscription in enumerate(topology.subscriptions):
        at: tuple[str | int, ...] = ("subscriptions", index)
        if subscription.id in first_index:
            yield _problem(
                (*at, "id"),
                f"duplicate subscription id {subscription.id!r} "
                f"(also subscriptions[{first_index[subscription.id]}])",
            )
        first_index.setdefault(subscription.id, index)
        expected_id = f"{subscription.department}.{subscription.entity}"
        if subscription.id != expected_id:
            yield _problem((*at, "id"), f"must be {expected_id} (<department>.<entity>)")
        yield from _approval_problems(subscription.approval, (*at, "approval"))
        department = topology.departments.get(subscription.department)
        if department is None:
            yield _problem(
                (*at, "department"),
                _unknown("department", subscription.department, topology.departments),
            )
        entity = topology.entities.get(subscription.entity)
        if entity is None:
            yield _problem(
                (*at, "entity"),
                _unknown("entity", subscription.entity, topology.entities),
            )
            continue
        for position, field_name in enumerate(subscription.fields):
            field_at = (*at, "fields", position)
            field = entity.fields.get(field_name)
            if field is None:
                yield _problem(
                    field_at, _unknown(f"{subscription.entity} field", field_name, entity.fields)
                )
                continue
            if subscription.fields.index(field_name) != position:
                yield _problem(field_at, f"{field_name} is listed twice")
            if f"{subscription.entity}.{field_name}" in never_share:
                yield _problem(
                    field_at,
                    f"{subscription.entity}.{field_name} is on the never_share list",
                )
            if (
                department is not None
                and field.classification in ranks
                and department.clearance in ranks
                and ranks[field.classification] > ranks[department.clearance]
            ):
                yield _problem(
                    field_at,
                    f"{field_name} is {field.classification}, above {subscription.department}'s "
                    f"clearance {department.clearance}",
                )
        if entity.key in entity.fields and entity.key not in subscription.fields:
            yield _problem((*at, "fields"), f"must include the entity key {entity.key}")
        for field_name in subscription.mask:
            mask_at = (*at, "mask", field_name)
            if field_name not in entity.fields:
                yield _problem(
                    mask_at, _unknown(f"{subscription.entity} field", field_name, entity.fields)
                )
            elif field_name not in subscription.fields:
                yield _problem(
                    mask_at, f"masks {field_name}, which the subscription does not receive"
                )
            elif field_name == entity.key:
                yield _problem(
                    mask_at, f"{field_name} is the entity key: it keys the delivery records"
                )


def _approval_problems(approval: Approval, at: tuple[str | int, ...]) -> Iterator[Problem]:
    if approval.state != "requested":
        if approval.by is None:
            yield _problem((*at, "by"), f"required once {approval.state}")
        if approval.at is None:
            yield _problem((*at, "at"), f"required once {approval.state}")
    if approval.at is not None and approval.expires < approval.at:
        yield _problem((*at, "expires"), f"{approval.expires} is before the approval {approval.at}")
