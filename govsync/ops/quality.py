"""Reading the 一数一源 findings on ``govsync.quality`` for `govsync quality`."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.config.settings import Settings
from streams.contract.topics import QUALITY_TOPIC
from streams.kafka import topic_reader
from streams.kafka.serde import ValueDeserializer, registry_client
from streams.transform.authority import Discrepancy


class Finding(Discrepancy):
    """A discrepancy as stored, with when it was recorded."""

    recorded_at: datetime


def findings(
    settings: Settings,
    *,
    entity: str | None = None,
    key: str | None = None,
    source: str | None = None,
) -> list[Finding]:
    """Every recorded finding matching the filters, oldest first."""
    decode = ValueDeserializer(registry_client(settings))
    start = topic_reader.beginning(settings.bootstrap, [QUALITY_TOPIC])
    found = [
        Finding(
            **record.value,
            recorded_at=datetime.fromtimestamp(record.timestamp_ms / 1000, UTC),
        )
        for record in topic_reader.read(settings.bootstrap, decode, start, timeout=300)
        if record.value is not None
    ]
    return sorted(
        (
            f
            for f in found
            if (entity is None or f.entity == entity)
            and (key is None or f.key == key)
            and (source is None or source in (f.other_source, f.authoritative_source))
        ),
        key=lambda f: f.recorded_at,
    )
