"""The record headers every topic from ``changes.*`` on carries (a contract: see
docs/architecture.md).

``event_id``, ``traceparent`` (W3C Trace Context), ``source`` (the topology's source id) and
``source_ts`` (commit time, epoch ms). The trace id is derived from the event id, so
retries and replays of one change share a trace. Records on ``changes.*`` also name the
cdc record they were normalized from (``captured``), for the lineage on govsync.trace.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

Headers = list[tuple[str, bytes]]

CAPTURED = "captured"
# On a change event that came from an upstream node (streams/transform/inbound.py): the
# mirrored record it was made from, and when the upstream delivered it.
UPSTREAM = "upstream"
# On a change event made by `govsync dlq reprocess` from a held record: that run's id.
REPROCESSED = "reprocess_id"
# Control records share changes.* with change events (e.g. a snapshot request, which the
# route must meet in order with the changes around it); they carry this header and a JSON
# value, and every reader of data skips them.
CONTROL = "govsync.control"
REPLAY = "replay"


@functools.lru_cache(maxsize=4096)  # every output of one change asks for it
def trace_id(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()[:32]


def span_id(event_id: str, stage: str) -> str:
    return hashlib.sha256(f"{event_id}/{stage}".encode()).hexdigest()[:16]


def traceparent(event_id: str, stage: str) -> str:
    return f"00-{trace_id(event_id)}-{span_id(event_id, stage)}-01"


def for_change(change: Mapping[str, Any], stage: str) -> Headers:
    return [
        ("event_id", change["event_id"].encode()),
        ("traceparent", traceparent(change["event_id"], stage).encode()),
        ("source", change["source"].encode()),
        ("source_ts", str(change["source_ts_ms"]).encode()),
    ]


def as_dict(
    headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes] | None,
) -> dict[str, str]:
    """Decode headers (confluent-kafka's list of pairs, or a mapping) into text."""
    if headers is None:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {key: (value or b"").decode(errors="replace") for key, value in pairs}


def captured(topic: str, partition: int, offset: int, timestamp_ms: int) -> tuple[str, bytes]:
    """Where normalize read a change: the cdc record's position and when Connect wrote it."""
    return CAPTURED, f"{topic}/{partition}/{offset}/{timestamp_ms}".encode()


def parse_captured(value: str | None) -> tuple[str, int, int, int] | None:
    """The ``captured`` header back as (topic, partition, offset, timestamp ms)."""
    try:
        topic, partition, offset, timestamp_ms = (value or "").split("/")
        return topic, int(partition), int(offset), int(timestamp_ms)
    except ValueError:
        return None


def upstream(
    node: str, topic: str, partition: int, offset: int, timestamp_ms: int
) -> tuple[str, bytes]:
    """Where normalize read a change from an upstream node: the mirrored record's
    position here, and its timestamp (MirrorMaker keeps it: the upstream's delivery)."""
    return UPSTREAM, f"{node}/{topic}/{partition}/{offset}/{timestamp_ms}".encode()


def parse_upstream(value: str | None) -> tuple[str, str, int, int, int] | None:
    """The ``upstream`` header back as (node, topic, partition, offset, timestamp ms)."""
    try:
        node, topic, partition, offset, timestamp_ms = (value or "").split("/")
        return node, topic, int(partition), int(offset), int(timestamp_ms)
    except ValueError:
        return None


def control(pairs: Iterable[tuple[str, bytes | None]] | None) -> bytes | None:
    """The control verb of a record (e.g. ``b"snapshot"``), or None for a data record."""
    for name, value in pairs or []:
        if name == CONTROL:
            return value
    return None
