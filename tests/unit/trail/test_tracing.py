"""OpenTelemetry export of a change's hops: off without OTEL_EXPORTER_OTLP_ENDPOINT; with
it, real OTLP/HTTP requests whose spans carry the change's own trace id."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.contract import headers
from streams.contract.records import Hop
from streams.trail import tracing
from tests.otlp import Collector, collector

COMMIT = 1_700_000_000_000


@pytest.fixture()
def otlp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Collector]:
    with collector() as received:
        monkeypatch.setenv(tracing.ENDPOINT_VARIABLE, received.url)
        yield received


def hop(stage: str, at: int, **extra: str) -> Hop:
    return Hop(
        event_id="3c3322cd-334c-50b2-a381-0e35c597e1e4",
        stage=stage,  # type: ignore[arg-type]
        kind="deregistered",
        entity="enterprise",
        entity_key="91310000MA1FL8XQ30",
        topic=f"{stage}.topic",
        partition=3,
        offset=42,
        at_ms=COMMIT + at,
        source_ts_ms=COMMIT,
        **extra,
    )


def test_without_an_endpoint_tracing_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tracing.ENDPOINT_VARIABLE, raising=False)
    spans = tracing.spans()
    assert not isinstance(spans, tracing._Otlp)
    spans.hop(hop("captured", 90))  # a no-op
    spans.flush()


def test_each_hop_is_a_span_of_the_changes_own_trace(otlp: Collector) -> None:
    spans = tracing.spans()
    spans.hop(hop("captured", 90))
    spans.hop(hop("delivered", 270, department="tax", subscription="tax.enterprise"))
    spans.flush()
    assert otlp.requests and {path for path, _ in otlp.requests} == {"/v1/traces"}
    exported = [span for service, span in otlp.spans() if service["service.name"] == "govsync"]
    event_id = "3c3322cd-334c-50b2-a381-0e35c597e1e4"
    assert sorted(s.name for s in exported) == ["captured", "delivered tax"]
    for span in exported:
        assert span.trace_id == bytes.fromhex(headers.trace_id(event_id))
        assert span.parent_span_id == bytes.fromhex(headers.span_id(event_id, "source"))
        assert span.start_time_unix_nano == COMMIT * 1_000_000
        attributes = {a.key: a.value for a in span.attributes}
        assert attributes["govsync.event_id"].string_value == event_id
        assert attributes["messaging.kafka.message.offset"].int_value == 42
    delivered = next(s for s in exported if s.name == "delivered tax")
    assert delivered.end_time_unix_nano == (COMMIT + 270) * 1_000_000
