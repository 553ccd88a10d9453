"""What a department may see of an entity's current state (按需调用): decided exactly as the
push path decides a delivery. The same active subscription (approved, within its approval
days in China Standard Time), the same fields, the same masks under the department's own
key, so a look-up and a push of the same version agree field for field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from streams.contract.records import Hop
from streams.model import standards
from streams.model.topology import CST, Entity, Subscription, Topology
from streams.transform.masking import mask_state

RefusalReason = Literal[
    "not_subscribed", "requested", "rejected", "suspended", "revoked", "expired", "pending"
]


class Refusal(BaseModel):
    """Why a department may not see an entity now (HTTP 403)."""

    reason: RefusalReason
    detail: str
    subscription: str | None = None


class Version(BaseModel):
    """The change a state reflects."""

    event_id: str
    source_ts_ms: int
    source_commit: str  # the same instant, ISO 8601 in UTC


class EntityView(BaseModel):
    """An entity's current state as one subscription receives it."""

    entity: str
    key: str
    subscription: str
    state: dict[str, Any]
    version: Version


class BatchItem(BaseModel):
    """One key of a batch: its state, or the problem (RFC 9457) with that key alone."""

    key: str
    found: EntityView | None = None
    problem: dict[str, Any] | None = None


class Batch(BaseModel):
    items: list[BatchItem]


class Delivered(BaseModel):
    """One delivery of a key to the asking department (from the lineage index)."""

    event_id: str
    kind: str
    subscription: str | None
    delivered_at_ms: int
    source_ts_ms: int
    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, hop: Hop) -> Delivered:
        return cls(
            event_id=hop.event_id,
            kind=hop.kind,
            subscription=hop.subscription,
            delivered_at_ms=hop.at_ms,
            source_ts_ms=hop.source_ts_ms,
            topic=hop.topic,
            partition=hop.partition,
            offset=hop.offset,
        )


class StoredState(BaseModel):
    """A row of the index's ``entity_state`` (master.<entity>, materialized)."""

    state: dict[str, Any]
    event_id: str
    source_ts_ms: int


def subscription_for(
    topology: Topology, department: str, entity: str, at: datetime
) -> Subscription | Refusal:
    """The department's subscription to ``entity`` active at ``at``, or why there is none."""
    mine = [s for s in topology.subscriptions if s.department == department and s.entity == entity]
    for subscription in mine:
        if subscription.is_active(at):
            return subscription
    if not mine:
        return Refusal(
            reason="not_subscribed", detail=f"{department} has no subscription to {entity}"
        )
    subscription = mine[0]
    approval = subscription.approval
    if approval.state != "approved":
        return Refusal(
            reason=approval.state,
            detail=f"subscription {subscription.id} is {approval.state}",
            subscription=subscription.id,
        )
    day = at.astimezone(CST).date()
    if day > approval.expires:
        return Refusal(
            reason="expired",
            detail=f"subscription {subscription.id} expired after {approval.expires}",
            subscription=subscription.id,
        )
    return Refusal(
        reason="pending",
        detail=f"subscription {subscription.id} is approved from {approval.at}",
        subscription=subscription.id,
    )


def standard_key(entity: Entity, raw: str) -> str:
    """The key in its standard form, as normalize writes it: a USCC checked (GB 32100), a
    resident ID checked (GB 11643) and a 15-digit one converted to 18. Raises
    ``standards.StandardViolation`` with the standard's reason."""
    standard = entity.fields[entity.key].standard
    if standard == "uscc":
        return standards.normalize_uscc(raw)
    if standard == "resident_id":
        return standards.normalize_resident_id(raw)
    return raw


def view(
    name: str,
    entity: Entity,
    key: str,
    stored: StoredState,
    subscription: Subscription,
    mask_key: bytes,
) -> EntityView:
    """The stored state reduced to the subscription's fields and masked (the route's
    projection and masks: ``projection.projected`` and ``masking.mask_state``)."""
    fields = subscription.fields_in(entity)
    state = mask_state({f: stored.state.get(f) for f in fields}, subscription, mask_key) or {}
    at = datetime.fromtimestamp(stored.source_ts_ms / 1000, tz=UTC)
    return EntityView(
        entity=name,
        key=key,
        subscription=subscription.id,
        state=state,
        version=Version(
            event_id=stored.event_id,
            source_ts_ms=stored.source_ts_ms,
            source_commit=at.isoformat().replace("+00:00", "Z"),
        ),
    )
