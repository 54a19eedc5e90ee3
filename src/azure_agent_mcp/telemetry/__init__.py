"""OpenTelemetry traces and logs, on only when the standard OTLP variables ask for it.

``start()`` reads the environment once at start-up. With none of ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` set (or with
``OTEL_SDK_DISABLED=true``) it returns None and nothing of the OpenTelemetry SDK or its exporters
is imported: a desktop stdio server pays nothing. Every hook in the server and the guard is behind
one ``is not None`` check of the object this returns.

When on, the SDK's own environment handling does the rest (endpoint paths, headers, timeouts,
compression, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, batch delays): we only choose the
processors and exporters and the default ``service.name``.

The MCP SDK depends on ``opentelemetry-api`` and imports it (its tools/call span middleware runs
against the no-op tracer when no provider is set); that small API import is the SDK's, not ours.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure_agent_mcp.telemetry.setup import Telemetry

_LOG = logging.getLogger("azure_agent_mcp.telemetry")

SERVICE_NAME = "azure-agent-mcp"
SHUTDOWN_BUDGET = 5.0
"""Seconds the server waits at exit for the last spans and logs to be exported; an unreachable
collector must not hold a SIGTERM'd process for the exporters' own 10 s timeouts and retries."""

_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
_LOGS_ENDPOINT = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"


@dataclass(frozen=True)
class Signals:
    """Which signals the environment asks to export."""

    traces: bool = False
    logs: bool = False

    @property
    def any(self) -> bool:
        return self.traces or self.logs


def requested_signals(environ: Mapping[str, str] | None = None) -> Signals:
    """Traces when a generic or traces endpoint is set, logs when a generic or logs endpoint is set;
    ``OTEL_SDK_DISABLED=true`` and ``OTEL_{TRACES,LOGS}_EXPORTER=none`` turn them off."""
    env = os.environ if environ is None else environ

    def set_(name: str) -> bool:
        return bool(env.get(name, "").strip())

    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return Signals()
    generic = set_(_ENDPOINT)
    traces = (generic or set_(_TRACES_ENDPOINT)) and env.get("OTEL_TRACES_EXPORTER", "").strip().lower() != "none"
    logs = (generic or set_(_LOGS_ENDPOINT)) and env.get("OTEL_LOGS_EXPORTER", "").strip().lower() != "none"
    return Signals(traces=traces, logs=logs)


_active: Telemetry | None = None
_lock = threading.Lock()


def active() -> Telemetry | None:
    """The running telemetry, or None when it is off (the one check every hook makes)."""
    return _active


def start(environ: Mapping[str, str] | None = None) -> Telemetry | None:
    """Configure the providers when the environment asks for it; None (and no import) otherwise."""
    global _active
    signals = requested_signals(environ)
    if not signals.any:
        return None
    env = os.environ if environ is None else environ
    for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"):
        protocol = env.get(name, "").strip()
        if protocol and protocol != "http/protobuf":
            _LOG.warning("telemetry: %s=%s is not supported; exporting over http/protobuf", name, protocol)
    with _lock:
        if _active is None:
            try:
                from azure_agent_mcp.telemetry.setup import Telemetry

                _active = Telemetry.from_environment(signals)
            except Exception as exc:  # telemetry is not the server's job: serve without it, and say so
                # the type only: a message could quote OTEL_EXPORTER_OTLP_HEADERS, which may hold a key
                _LOG.warning("telemetry: OpenTelemetry export is off, setting it up failed (%s); "
                             "check the OTEL_* variables", type(exc).__name__)
                return None
        return _active


def shutdown(timeout: float = SHUTDOWN_BUDGET) -> None:
    """Export what is buffered and stop the providers, within ``timeout`` seconds (server exit)."""
    global _active
    with _lock:
        telemetry, _active = _active, None
    if telemetry is None:
        return
    done = threading.Event()

    def run() -> None:
        try:
            telemetry.shutdown()
        except Exception as exc:  # the process is ending: say so, never hide the exit status
            _LOG.warning("telemetry: shutting down the exporters failed: %s", type(exc).__name__)
        finally:
            done.set()

    threading.Thread(target=run, name="azure-agent-mcp telemetry shutdown", daemon=True).start()
    if not done.wait(timeout):
        _LOG.warning("telemetry: spans or logs not exported within %.0f s of shutdown were dropped", timeout)
