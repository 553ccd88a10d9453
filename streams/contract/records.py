"""The records govsync writes about itself: lineage hops on ``govsync.trace``, the
links of the audit chain on ``govsync.audit``, and the held records of the dead-letter
queue with their closures. Types only; the stages write them, the trail and the
operations tools read them, and ``contract.schemas`` gives the Avro form of the first two.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

# ``sent``: an upstream node delivered the change to this one (federation).
HopStage = Literal["captured", "sent", "normalized", "delivered", "receipt"]
LINEAGE_STAGES: list[str] = list(get_args(HopStage))


class Hop(BaseModel):
    """One stage of one change, as written to ``govsync.trace``."""

    event_id: str
    stage: HopStage
    kind: str
    entity: str
    entity_key: str
    department: str | None = None
    subscription: str | None = None
    topic: str
    partition: int
    offset: int
    at_ms: int
    source_ts_ms: int
    outcome: str | None = None
    reason: str | None = None

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def parse_position(text: str) -> tuple[str, int, int]:
    """``topic[partition]@offset`` (a hop's ``position``, an audit entry's ``at``) back
    into its parts."""
    match = _POSITION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a position (topic[partition]@offset)")
    return match["topic"], int(match["partition"]), int(match["offset"])


_POSITION = re.compile(r"(?P<topic>[^\[\]]+)\[(?P<partition>\d+)\]@(?P<offset>\d+)")


AuditKind = Literal[
    "delivery",
    "receipt",
    "topology_change",
    "replay",
    "checkpoint",
    "query",
    "receipt_refused",
    # 申请—审核—授权 (contract/approvals.py): a verified request or decision, or one refused
    "subscription_request",
    "subscription_decision",
    # 使用—评价 (contract/objections.py): one step of an objection, raised or answered
    "objection",
    "signature_refused",
    # Federation: a change this node received from an upstream node (what a node sends is
    # a ``delivery`` to the department that stands for the receiving node)
    "received",
]
AUDIT_KINDS: list[str] = list(get_args(AuditKind))


class AuditRecord(BaseModel):
    """One link of the chain. Values are plain strings so the hash never depends on how a
    type happens to serialise; no format checks, so a damaged record can still be read
    and reported by :func:`verify` instead of failing to load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int
    kind: AuditKind
    at_ms: int
    actor: str
    event_id: str | None = None
    entity: str | None = None
    entity_key: str | None = None
    department: str | None = None
    subscription: str | None = None
    fields: list[str] = Field(default_factory=list)
    approval: dict[str, str] = Field(default_factory=dict)
    detail: dict[str, str] = Field(default_factory=dict)
    prev_sha256: str
    sha256: str

    def body(self) -> dict[str, Any]:
        return hashed_body(self.model_dump(mode="json"))


def hashed_body(record: Mapping[str, Any]) -> dict[str, Any]:
    """What an audit record's hash covers: every field but ``sha256`` itself, leaving out
    empty values, so adding an optional field later keeps every earlier hash valid."""
    return {n: v for n, v in record.items() if n != "sha256" and v not in (None, [], {})}


class QueryRecord(BaseModel):
    """One look-up on the query API, as written to ``govsync.queries`` (JSON, keyed by the
    entity key) for the ledger to chain into the audit trail: who asked for what, when,
    under which subscription, and what they were answered."""

    department: str  # the logged-in principal
    entity: str
    entity_key: str  # in its standard form when it had one; as asked otherwise
    at_ms: int
    status: int  # the HTTP status answered
    subscription: str | None = None
    event_id: str | None = None  # the version shown
    reason: str | None = None  # why not shown (a refusal's reason, a key's standard code)


DeadLetterOutcome = Literal["reprocessed", "superseded"]


class Closure(BaseModel):
    """A held record closed, as written to ``govsync.dlq.closed`` (JSON, keyed by the
    held record's position): never a deletion, so the queue stays an audit of what failed."""

    outcome: DeadLetterOutcome
    closed_at: str
    reprocess_id: str
    event_id: str | None = None


class HeldRecord(BaseModel):
    """One record on ``govsync.dlq`` (``position`` = ``<partition>:<offset>``): why it was
    refused and which cdc record it is."""

    position: str
    error_code: str
    error_message: str
    source_topic: str
    source_partition: int
    source_offset: int
    dead_lettered_at: str | None
    closure: Closure | None = None

    @property
    def open(self) -> bool:
        return self.closure is None
