"""A subscription's snapshot as change events: what a replay sends before live changes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from streams.contract.replay import SNAPSHOT_SOURCE, ReplayRequest
from streams.model.topology import Entity
from streams.transform.authority import Canonical


def snapshot_changes(
    request: ReplayRequest, entity: Entity, states: Iterator[tuple[str, Canonical]]
) -> Iterator[dict[str, Any]]:
    """One canonical ``snapshot`` change per entity that exists, as the route would route
    any change (its projection and masks then apply as usual)."""
    for key, canonical in states:
        if canonical.state is None:
            continue  # not registered by the key's owner, or deleted
        yield {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"govsync:{request.replay_id}:{key}")),
            "kind": "snapshot",
            "entity": request.entity,
            "key": key,
            "before": None,
            "after": canonical.state,
            "changed_fields": [n for n in entity.fields if canonical.state.get(n) is not None],
            "source": SNAPSHOT_SOURCE,
            "source_ts_ms": request.requested_at_ms,
            "source_position": f"replay={request.replay_id}",
        }
