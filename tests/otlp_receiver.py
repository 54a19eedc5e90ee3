"""A loopback OTLP/HTTP collector for tests: accepts POST /v1/traces and /v1/logs on port 0, decodes
the protobuf payloads with opentelemetry-proto, keeps every raw byte received (for secret greps)."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as the Python value it encodes."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    return getattr(value, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    resource: dict[str, Any]
    scope: str


@dataclass
class LogRecord:
    body: Any
    attributes: dict[str, Any]
    severity_text: str
    severity_number: int
    trace_id: str
    span_id: str
    event_name: str
    resource: dict[str, Any]


@dataclass
class Received:
    raw: list[bytes] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    encodings: list[str] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)


class OTLPReceiver:
    """``endpoint`` is what ``OTEL_EXPORTER_OTLP_ENDPOINT`` should say."""

    def __init__(self) -> None:
        self.received = Received()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                encoding = (self.headers.get("content-encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                with receiver._lock:
                    receiver.received.encodings.append(encoding or "identity")
                try:
                    receiver._take(self.path, body)
                except Exception:  # an undecodable payload is a test failure: answer 400 and keep it
                    self.send_response(400)
                    self.end_headers()
                    raise
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _take(self, path: str, body: bytes) -> None:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        with self._lock:
            self.received.raw.append(body)
            self.received.paths.append(path)
        if path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            spans = [
                Span(span.name, span.kind, span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(),
                     attributes(span.attributes), span.status.code, span.status.message,
                     attributes(rs.resource.attributes), ss.scope.name)
                for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans
            ]
            with self._lock:
                self.received.spans.extend(spans)
        elif path == "/v1/logs":
            request = ExportLogsServiceRequest.FromString(body)
            logs = [
                LogRecord(any_value(record.body), attributes(record.attributes), record.severity_text,
                          record.severity_number, record.trace_id.hex(), record.span_id.hex(), record.event_name,
                          attributes(rl.resource.attributes))
                for rl in request.resource_logs for sl in rl.scope_logs for record in sl.log_records
            ]
            with self._lock:
                self.received.logs.extend(logs)

    def wait_for(self, condition: Callable[[Received], bool], timeout: float = 20) -> Received:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if condition(self.received):
                    return self.received
            time.sleep(0.05)
        raise AssertionError(f"the OTLP receiver did not get what was expected within {timeout} s: "
                             f"{len(self.received.spans)} spans, {len(self.received.logs)} logs")

    def __enter__(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
