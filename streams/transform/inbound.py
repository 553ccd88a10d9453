"""A delivery from an upstream govsync node, as a change event of this node.

The upstream routed, projected and (for a node, normally not) masked the change for its
subscription ``<login>.<entity>``; MirrorMaker 2 copied the record here unchanged, headers
and timestamp included. Here it becomes a change of the source ``<node>.<entity>``: the
same event_id (so a record mirrored twice is dropped by the route's dedup like any
re-emitted change, and both nodes' traces share one trace id), the upstream's commit time
and log position, and states holding only the fields the upstream sends.
"""

from __future__ import annotations

from typing import Any

from streams.model.topology import Entity, Inbound
from streams.transform.normalize import NormalizeError

_CHANGE_FIELDS = ("event_id", "kind", "entity", "key", "source_ts_ms", "source_position")


def inbound_change(
    delivery: dict[str, Any] | None, key: bytes | None, inbound: Inbound, entity: Entity
) -> dict[str, Any]:
    """The change event ``delivery`` stands for; NormalizeError (dead-lettered) when it
    is not one of ``inbound``'s entity, or its key disagrees with the record's."""
    if delivery is None:
        raise NormalizeError("tombstone", "record has no value")
    if not isinstance(delivery, dict):
        raise NormalizeError("not_a_delivery", f"a {type(delivery).__name__}, not a record")
    missing = [name for name in _CHANGE_FIELDS if delivery.get(name) is None]
    if missing:
        raise NormalizeError("not_a_delivery", f"no {', '.join(missing)}")
    if delivery["entity"] != inbound.entity:
        raise NormalizeError(
            "wrong_entity", f"a {delivery['entity']} change on {inbound.id}'s topic"
        )
    if key is None or key.decode(errors="replace") != delivery["key"]:
        shown = key.decode(errors="replace") if key is not None else "none"
        raise NormalizeError(
            "key_mismatch", f"record key {shown} but the change is of {delivery['key']}"
        )
    sent = inbound.feed.fields
    before, after = (
        _state(delivery.get("before"), sent, entity),
        _state(delivery.get("after"), sent, entity),
    )
    return {
        **{name: delivery[name] for name in _CHANGE_FIELDS},
        "before": before,
        "after": after,
        "changed_fields": [n for n in delivery.get("changed_fields") or [] if n in sent],
        "source": inbound.id,
    }


def _state(state: dict[str, Any] | None, sent: list[str], entity: Entity) -> dict[str, Any] | None:
    """All of the entity's fields, those the upstream does not send left empty."""
    if state is None:
        return None
    if not isinstance(state, dict):
        raise NormalizeError("not_a_delivery", f"a state that is a {type(state).__name__}")
    return {name: state.get(name) if name in sent else None for name in entity.fields}
