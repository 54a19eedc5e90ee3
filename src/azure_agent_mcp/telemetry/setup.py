"""The providers: a TracerProvider and a LoggerProvider, each batching to its OTLP/HTTP exporter.

Imported only when ``telemetry.start()`` found an endpoint. The exporters are built without
arguments so the SDK reads every ``OTEL_EXPORTER_OTLP_*`` variable itself. The tracer provider
becomes the global one: the MCP SDK's tools/call span (the MCP semantic conventions' server span)
is created through the global tracer, and ours are its children. The logger provider stays ours
(only audit records go through it), and neither provider registers an atexit hook: the server
shuts them down itself, within a bound (``telemetry.shutdown``).

The Python SDK publishes its logs signal (``opentelemetry.sdk._logs``, status Development) only
under that name; the OTLP log exporter is found through the SDK's own entry point, as its
auto-configuration does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from azure_agent_mcp import __version__
from azure_agent_mcp.telemetry import SERVICE_NAME, Signals

INSTRUMENTATION = "azure_agent_mcp"


def resource() -> Any:
    """The SDK's resource from the environment; ``service.name`` defaults to ours, not ``unknown_service``."""
    from opentelemetry.sdk.resources import Resource

    detected = Resource.create()
    attributes = dict(detected.attributes)
    if str(attributes.get("service.name", "")).startswith("unknown_service"):
        attributes["service.name"] = SERVICE_NAME
    attributes.setdefault("service.version", __version__)
    return Resource(attributes, detected.schema_url)


def _log_exporter() -> Any:
    (found,) = entry_points(group="opentelemetry_logs_exporter", name="otlp_proto_http")
    return found.load()()


class Telemetry:
    """The running providers, the tracer our spans use, and the audit-record logger."""

    def __init__(self, tracer_provider: Any | None, logger_provider: Any | None) -> None:
        self.tracer_provider = tracer_provider
        self.logger_provider = logger_provider
        self.tracer = tracer_provider.get_tracer(INSTRUMENTATION, __version__) if tracer_provider else None
        self.logger = logger_provider.get_logger(INSTRUMENTATION, __version__) if logger_provider else None
        self.request_span: Callable[[Any], Any] | None = None
        """request -> a CLIENT span around that attempt (the guard's ``spans``); None when traces are off."""
        if self.tracer is not None:
            from azure_agent_mcp.telemetry.requests import RequestSpan

            self.request_span = functools.partial(RequestSpan, self.tracer)

    @classmethod
    def from_environment(cls, signals: Signals) -> Telemetry:
        shared = resource()
        tracer_provider = logger_provider = None
        if signals.traces:
            from opentelemetry import trace
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            tracer_provider = TracerProvider(resource=shared, shutdown_on_exit=False)
            tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            trace.set_tracer_provider(tracer_provider)
        if signals.logs:
            from opentelemetry.sdk._logs import LoggerProvider
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

            logger_provider = LoggerProvider(resource=shared, shutdown_on_exit=False)
            logger_provider.add_log_record_processor(BatchLogRecordProcessor(_log_exporter()))
        return cls(tracer_provider, logger_provider)

    # -- hooks (each a no-op for a signal that is off) -----------------------------------------

    def audit_listener(self) -> Any:
        """The callable an ``AuditLog`` calls with each appended record, or None when logs are off."""
        if self.logger is None:
            return None
        from azure_agent_mcp.telemetry.audit_logs import AuditLogEmitter

        return AuditLogEmitter(self.logger)

    def shutdown(self) -> None:
        for provider in (self.tracer_provider, self.logger_provider):
            if provider is not None:
                provider.shutdown()
