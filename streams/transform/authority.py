"""一数一源 (one datum, one source): canonical state merged from several sources.

Several departments' tables describe the same entity (a district system keeps its own copy
of company names; the legacy social-insurance register its own copy of people's names).
The topology names, per field, the one source authoritative for it. A source's value for
a field it owns enters the canonical state; its value for a field another source owns
never does. That value is remembered as an *observation* instead, and wherever it differs
from the owner's value the difference becomes a data-quality finding for the owning
department: when the other source asserts it, or when the owner later sets a value the
observation disagrees with (sources are captured independently, so either may come
first). Fields no source claims take the latest value from whichever source sends one.

Pure functions over the change events normalize produces; the route stage keeps one
``Canonical`` per key (streams/stages/canonical.py) and does the I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from streams.model.topology import Entity, Topology
from streams.transform.normalize import changed_fields, kind_of

# Provenance and observations are dataclasses, not models: the route builds them for
# every field of every change, and reads and writes them as JSON it shapes itself.


@dataclass(frozen=True, slots=True)
class Provenance:
    """Which source last set a canonical field, and when it committed that value."""

    source: str
    ts_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "ts_ms": self.ts_ms}


@dataclass(frozen=True, slots=True)
class Observation:
    """A value a source holds for a field another source owns."""

    value: Any
    ts_ms: int
    event_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ts_ms": self.ts_ms, "event_id": self.event_id}


class Discrepancy(BaseModel):
    """A non-authoritative source disagrees with the canonical value of a field."""

    model_config = ConfigDict(frozen=True)

    entity: str
    key: str
    field: str
    authoritative_source: str
    authoritative_value: str | None
    authoritative_ts_ms: int | None
    other_source: str
    other_value: str | None
    other_ts_ms: int
    event_id: str  # the change that revealed the difference


@dataclass
class Canonical:
    """What govsync knows of one entity: its canonical state (None until the source that
    owns the key has registered it, or after it deleted it), who set each value, what
    other sources hold for fields they do not own, and values their owners sent before
    the entity existed (``held``, applied when it begins)."""

    state: dict[str, Any] | None
    provenance: dict[str, Provenance] = field(default_factory=dict)
    observed: dict[str, dict[str, Observation]] = field(default_factory=dict)
    held: dict[str, Observation] = field(default_factory=dict)
    _json: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> bytes:
        """Its changelog form (written to the changelog and the local store: built once)."""
        if self._json is None:
            self._json = orjson.dumps(
                {
                    "state": self.state,
                    "provenance": {n: p.to_dict() for n, p in self.provenance.items()},
                    "observed": {
                        s: {n: o.to_dict() for n, o in fields.items()}
                        for s, fields in self.observed.items()
                    },
                    "held": {n: o.to_dict() for n, o in self.held.items()},
                }
            )
        return self._json

    @classmethod
    def from_json(cls, data: bytes) -> Canonical:
        raw = orjson.loads(data)
        return cls(
            state=raw["state"],
            provenance={n: Provenance(**p) for n, p in raw["provenance"].items()},
            observed={
                s: {n: Observation(**o) for n, o in fields.items()}
                for s, fields in raw["observed"].items()
            },
            held={n: Observation(**o) for n, o in raw.get("held", {}).items()},
        )


@dataclass(frozen=True)
class Merge:
    """A source's change applied to what govsync knows of the entity."""

    change: dict[str, Any]  # the canonical change event: before/after are canonical states
    canonical: Canonical
    discrepancies: list[Discrepancy]

    @property
    def changes_state(self) -> bool:
        return self.change["before"] != self.change["after"]


class Authority:
    """Who owns which field of one entity, and the merge that honours it."""

    def __init__(self, topology: Topology, entity_name: str) -> None:
        self.entity_name = entity_name
        self.entity: Entity = topology.entity(entity_name)
        sources = topology.sources_for(entity_name)
        inbound = topology.inbound_for(entity_name)
        # An upstream node is a source like a table: what it sends, and what it owns.
        self.owner: dict[str, str] = {
            name: source.id for source in sources for name in source.authoritative
        } | {name: feed.id for feed in inbound for name in feed.feed.owned}
        self._mapped = {
            source.id: [name for name in self.entity.fields if name in source.columns]
            for source in sources
        } | {
            feed.id: [name for name in self.entity.fields if name in feed.feed.fields]
            for feed in inbound
        }
        self._owned = {
            source: [n for n in mapped if self.owner.get(n, source) == source]
            for source, mapped in self._mapped.items()
        }

    def owned_by(self, source_id: str) -> list[str]:
        """The fields whose canonical value ``source_id`` sets: its own, and unclaimed ones."""
        return self._owned[source_id]

    def merge(self, change: dict[str, Any], current: Canonical | None) -> Merge:
        source, key, row = change["source"], change["key"], change["after"]
        owned = self.owned_by(source)
        current = current or Canonical(state=None)
        before = dict(current.state) if current.state is not None else None
        provenance = dict(current.provenance)
        observed = dict(current.observed)

        held = dict(current.held)
        key_owner = self.owner.get(self.entity.key)
        values = {name: row.get(name) for name in owned} if row is not None else {}
        if row is None and key_owner in (None, source):
            after, held = None, {}  # the source that owns the key deleted the entity
        elif row is None:
            after = None if before is None else {**before, **dict.fromkeys(owned)}
            for name in owned:
                held.pop(name, None)
        elif before is not None:
            after = {**before, **values}
        elif key_owner in (None, source) and any(v is not None for v in values.values()):
            # The entity begins, with what other owners sent while waiting for it.
            after = dict.fromkeys(self.entity.fields)
            after.update({name: h.value for name, h in held.items()})
            after.update(values)
            after[self.entity.key] = key
            held = {}
        else:
            # Only the key's owner brings an entity into being; until it does, values from
            # the owners of other fields wait (capture order across sources is arbitrary).
            after = None
            held.update(
                {
                    name: Observation(
                        value=value, ts_ms=change["source_ts_ms"], event_id=change["event_id"]
                    )
                    for name, value in values.items()
                }
            )
        if after is None and not held:
            provenance = {}
        elif row is not None:
            previous = before if before is not None else {}
            for name in owned:
                set_by = provenance.get(name)
                if set_by is None or set_by.source != source or previous.get(name) != values[name]:
                    provenance[name] = Provenance(source=source, ts_ms=change["source_ts_ms"])

        others = [n for n in self._mapped[source] if n not in owned and n != self.entity.key]
        if row is None:
            observed.pop(source, None)
        elif others:
            observed[source] = {
                name: Observation(
                    value=row.get(name), ts_ms=change["source_ts_ms"], event_id=change["event_id"]
                )
                for name in others
            }
        merged = Canonical(after, provenance, observed, held)
        canonical_change = {
            **change,
            "kind": kind_of(_op(change, before, after), before, after, self.entity),
            "before": before,
            "after": after,
            "changed_fields": changed_fields(before, after),
        }
        found = self._asserted(change, merged, others) + self._revealed(change, before, merged)
        return Merge(canonical_change, merged, found)

    def _asserted(
        self, change: dict[str, Any], merged: Canonical, others: list[str]
    ) -> list[Discrepancy]:
        """Values this non-owning source states anew that differ from the owner's."""
        if change["after"] is None:
            return []
        asserted = [n for n in others if n in change["changed_fields"]]
        return [
            finding
            for name in asserted
            if (finding := self._compare(merged, name, change["source"], change["event_id"]))
        ]

    def _revealed(
        self, change: dict[str, Any], before: dict[str, Any] | None, merged: Canonical
    ) -> list[Discrepancy]:
        """Observations the owner's new value now contradicts."""
        if merged.state is None:
            return []
        found = []
        for name in self.owned_by(change["source"]):
            if self.owner.get(name) != change["source"]:
                continue
            if before is not None and before.get(name) == merged.state.get(name):
                continue
            for other in sorted(merged.observed):
                if name in merged.observed[other]:
                    finding = self._compare(merged, name, other, change["event_id"])
                    if finding is not None:
                        found.append(finding)
        return found

    def _compare(
        self, merged: Canonical, name: str, other: str, event_id: str
    ) -> Discrepancy | None:
        """A finding if ``other``'s observation of ``name`` differs from what its owner
        has said; nothing while the owner has not spoken about this entity yet."""
        owner = self.owner[name]
        set_by = merged.provenance.get(name)
        observation = merged.observed.get(other, {}).get(name)
        if merged.state is None or set_by is None or set_by.source != owner or observation is None:
            return None
        value = merged.state.get(name)
        if observation.value == value:
            return None
        return Discrepancy(
            entity=self.entity_name,
            key=merged.state[self.entity.key],
            field=name,
            authoritative_source=owner,
            authoritative_value=_text(value),
            authoritative_ts_ms=set_by.ts_ms,
            other_source=other,
            other_value=_text(observation.value),
            other_ts_ms=observation.ts_ms,
            event_id=event_id,
        )


def _op(change: dict[str, Any], before: dict | None, after: dict | None) -> str:
    """The Debezium operation the canonical change amounts to."""
    if after is None:
        return "d"
    if change["kind"] == "snapshot":
        return "r"
    return "c" if before is None else "u"


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else json.dumps(value)
