"""The guard's per-attempt cost with telemetry off and on, in one run.

Run: /work/venv/bin/python bench/telemetry.py [--attempts 20000]

A GuardedTransport around a stub transport that answers 200 at once (no network, no audit file), so
what is measured is the enforcement point itself: map + decide, and with tracing on one CLIENT
span per attempt (start, attributes, traceparent injection, end into a BatchSpanProcessor whose
exporter drops everything), against the same guard with telemetry off and a bare SDK span, all in
the same run. Also one audit record emitted as a log record (the listener) against the bare append
of the same record to a log on tmpfs. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest

from azure_agent_mcp.callcontext import call_scope
from azure_agent_mcp.policy import AuditLog, Endpoints, Guard, load_policy

ARM = "https://management.azure.com"
URL = f"{ARM}/subscriptions/5a1db0c5-a000-4000-a000-00000000000a/resources?api-version=2022-09-01&$top=20"


class _Answer:
    status_code = 200
    headers = {"x-ms-request-id": "bench"}


class _Stub(HttpTransport):  # type: ignore[type-arg]
    def send(self, request: Any, **kwargs: Any) -> Any:
        return _Answer()

    def open(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> _Stub:
        return self

    def __exit__(self, *args: Any) -> None: ...


def _interleaved(guards: dict[str, Guard], attempts: int, rounds: int) -> dict[str, float]:
    """Median seconds per attempt of each guard, rounds interleaved so the machine's load hits all alike."""
    transports = {name: guard.transport(_Stub()) for name, guard in guards.items()}
    samples: dict[str, list[float]] = {name: [] for name in guards}
    with call_scope(correlation_id="bench-call", session_id="bench-session", tool="resource_list"):
        for _ in range(rounds):
            for name, transport in transports.items():
                started = time.perf_counter()
                for _ in range(attempts):
                    transport.send(HttpRequest("GET", URL, headers={"x-ms-correlation-request-id": "bench-call"}))
                samples[name].append((time.perf_counter() - started) / attempts)
    return {name: statistics.median(values) for name, values in samples.items()}


def _bare_span(tracer: Any, count: int, rounds: int) -> float:
    """Median seconds of start_span + end with no attributes: what the SDK itself costs here."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            tracer.start_span("GET").end()
        samples.append((time.perf_counter() - started) / count)
    return statistics.median(samples)


def _tracer_provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return provider


def _append_cost(directory: Path, listener: Any, records: int) -> float:
    with AuditLog(directory / f"audit-{id(listener)}.jsonl") as audit:
        if listener is not None:
            audit.listeners.append(listener)
        record = {"kind": "outcome", "request_id": "r" * 32, "intent_seq": 1, "status": 200, "duration_ms": 3.2}
        started = time.perf_counter()
        for _ in range(records):
            audit.append(record, durable=False)
        return (time.perf_counter() - started) / records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=20000)
    parser.add_argument("--records", type=int, default=5000)
    args = parser.parse_args()

    from azure_agent_mcp.telemetry.requests import RequestSpan

    policy, endpoints = load_policy("read-only"), Endpoints.public_cloud()
    provider = _tracer_provider()
    tracer = provider.get_tracer("bench")
    measured = _interleaved({
        "off": Guard(policy, endpoints),
        "off, again": Guard(policy, endpoints),
        "on": Guard(policy, endpoints, spans=lambda request: RequestSpan(tracer, request)),
    }, args.attempts // 10, 21)
    bare = _bare_span(tracer, args.attempts // 10, 21)
    provider.shutdown()
    off, again, on = measured["off"], measured["off, again"], measured["on"]
    print(f"guarded attempt (map + decide, stub transport), median of 21 interleaved rounds of {args.attempts // 10}")
    print(f"  telemetry off             {off * 1e6:8.2f} us")
    print(f"  telemetry off, again      {again * 1e6:8.2f} us   {again / off:.2f}x (run-to-run noise)")
    print(f"  tracing on (one span)     {on * 1e6:8.2f} us   {on / off:.2f}x off   +{(on - off) * 1e6:.2f} us per attempt")
    print(f"  a bare SDK span (floor)   {bare * 1e6:8.2f} us   ours costs {(on - off) / bare:.1f}x that "
          "(the SDK's per-attribute work, about 20 attributes)")

    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult

    from azure_agent_mcp.telemetry.audit_logs import AuditLogEmitter

    class DropLogs(LogRecordExporter):
        def export(self, batch: Any) -> LogRecordExportResult:
            return LogRecordExportResult.SUCCESS

        def shutdown(self) -> None: ...

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    logs = LoggerProvider(shutdown_on_exit=False)
    logs.add_log_record_processor(BatchLogRecordProcessor(DropLogs()))
    emitter = AuditLogEmitter(logs.get_logger("bench"))
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        bare = _append_cost(Path(tmp), None, args.records)
        logged = _append_cost(Path(tmp), emitter, args.records)
    logs.shutdown()
    print(f"\naudit append (durable=False, tmpfs), {args.records} records")
    print(f"  no listener               {bare * 1e6:8.2f} us")
    print(f"  emitted as a log record   {logged * 1e6:8.2f} us   {logged / bare:.2f}x   +{(logged - bare) * 1e6:.2f} us per record")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
