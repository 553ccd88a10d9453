"""OpenTelemetry export of a change's hops: off without OTEL_EXPORTER_OTLP_ENDPOINT; with
it, real OTLP/HTTP requests whose spans carry the change's own trace id."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from streams import headers, tracing
from streams.lineage import Hop

COMMIT = 1_700_000_000_000


class Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace endpoint: keeps every export request it is sent."""

    requests: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.requests.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(b"")

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture()
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, bytes]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.requests = []
    monkeypatch.setenv(tracing.ENDPOINT_VARIABLE, f"http://127.0.0.1:{server.server_port}")
    yield Receiver.requests
    server.shutdown()


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


def test_each_hop_is_a_span_of_the_changes_own_trace(collector: list[tuple[str, bytes]]) -> None:
    spans = tracing.spans()
    spans.hop(hop("captured", 90))
    spans.hop(hop("delivered", 270, department="tax", subscription="tax.enterprise"))
    spans.flush()
    assert collector and {path for path, _ in collector} == {"/v1/traces"}
    exported = []
    for _, body in collector:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            assert service["service.name"] == "govsync"
            exported += [s for scope in resource.scope_spans for s in scope.spans]
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
