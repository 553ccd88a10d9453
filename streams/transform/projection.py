"""Projection: a canonical change reduced to what one subscription may see (最小必要).

A department receives only the fields its approved subscription names. An update that
touches none of them tells the department nothing, so it is not delivered at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streams.model.topology import Entity, Subscription

# Envelope fields copied as they are; everything else is rebuilt, so nothing the
# subscription did not ask for can ride along.
_ENVELOPE = ("event_id", "kind", "entity", "key", "source", "source_ts_ms", "source_position")


def project(
    event: dict[str, Any], subscription: Subscription, entity: Entity
) -> dict[str, Any] | None:
    """The delivery record (shape of ``delivery_schema``) for ``event``, or None when the
    event is an update of fields the subscription does not receive."""
    if event["entity"] != subscription.entity:
        raise ValueError(
            f"a {event['entity']} event cannot be projected for subscription {subscription.id}"
        )
    return projected(event, subscription.id, subscription.fields_in(entity))


def projected(
    event: dict[str, Any], subscription_id: str, fields: Sequence[str]
) -> dict[str, Any] | None:
    """:func:`project` with the subscription's fields (in the entity's order) worked out
    once by the caller: the route projects every change."""
    changed = [name for name in event["changed_fields"] if name in fields]
    if event["kind"] == "updated" and not changed:
        return None
    delivery = {name: event[name] for name in _ENVELOPE}
    delivery["before"] = _reduce(event["before"], fields)
    delivery["after"] = _reduce(event["after"], fields)
    delivery["changed_fields"] = changed
    delivery["subscription"] = subscription_id
    return delivery


def _reduce(state: dict[str, Any] | None, fields: Sequence[str]) -> dict[str, Any] | None:
    """A field missing from the canonical state is unknown, the same as null."""
    if state is None:
        return None
    return {name: state.get(name) for name in fields}
