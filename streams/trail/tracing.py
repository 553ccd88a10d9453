"""OpenTelemetry spans for each hop of a change, exported over OTLP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; otherwise nothing is imported and tracing costs
nothing.

The ledger stage emits them after the fact, once its transaction commits, from the hop
timestamps it records anyway: each span runs from the source commit to its hop (captured,
normalized, delivered to a department, that department's receipt), so a trace view reads
as a waterfall of when each stage was reached. Every span carries the trace id
derived from the event_id (streams/contract/headers.py), the one in the ``traceparent`` headers,
so a tracing backend shows one trace per change however often it was retried or replayed.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from streams.contract import headers
from streams.contract.records import Hop

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE = "govsync"


class Spans(Protocol):
    enabled: bool

    def hop(self, hop: Hop) -> None: ...

    def flush(self) -> None: ...


class _Off:
    """Tracing not configured: every call returns at once."""

    enabled = False

    def hop(self, hop: Hop) -> None:
        return None

    def flush(self) -> None:
        return None


class _Otlp:
    enabled = True

    def __init__(self, service: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer("govsync.ledger")

    def hop(self, hop: Hop) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        change = SpanContext(
            trace_id=int(headers.trace_id(hop.event_id), 16),
            span_id=int(headers.span_id(hop.event_id, "source"), 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        attributes: dict[str, Any] = {
            "govsync.event_id": hop.event_id,
            "govsync.entity": hop.entity,
            "govsync.entity_key": hop.entity_key,
            "govsync.kind": hop.kind,
            "messaging.destination.name": hop.topic,
            "messaging.kafka.destination.partition": hop.partition,
            "messaging.kafka.message.offset": hop.offset,
        }
        if hop.department:
            attributes["govsync.department"] = hop.department
        if hop.outcome:
            attributes["govsync.outcome"] = hop.outcome
        name = f"{hop.stage} {hop.department}" if hop.department else hop.stage
        started_ms = hop.source_ts_ms or hop.at_ms  # receipts may not know the commit time
        span = self._tracer.start_span(
            name,
            context=trace.set_span_in_context(NonRecordingSpan(change)),
            start_time=started_ms * 1_000_000,
            attributes=attributes,
        )
        span.end(end_time=max(hop.at_ms, started_ms) * 1_000_000)

    def flush(self) -> None:
        self._provider.force_flush()


def spans(service: str = SERVICE) -> Spans:
    """OTLP export if the standard OpenTelemetry variable names an endpoint, else nothing."""
    return _Otlp(service) if os.environ.get(ENDPOINT_VARIABLE) else _Off()
