"""Each audit record, once appended, also leaves as an OpenTelemetry log record.

The body is the record exactly as stored (hash chain fields included), so a collector holds the
same facts the file does and can match them by ``seq`` and ``hash``; a few fields are repeated as
attributes to filter on. The record is free of tokens and secrets by construction (``audit_records``
and ``redaction``); nothing is added to it here. The log record carries the trace and span ids of
the span current on the appending thread: the request span for intent, refusal and outcome
records, the tool span for the tool call's record.
"""

from __future__ import annotations

from typing import Any

from opentelemetry._logs import SeverityNumber

from azure_agent_mcp.telemetry import attributes as attr

_WARN_STATUSES = frozenset({"error", "cancelled", "not-sent"})
_WARN_KINDS = frozenset({"refused", "gap", "repair", "seal"})
_WARN_DECISIONS = frozenset({"deny", "unconfirmed", "declined", "cancelled", "deadline", "error"})


def severity(record: dict[str, Any]) -> tuple[SeverityNumber, str]:
    """WARN for refusals, errors, cancellations, HTTP errors and log repairs; INFO otherwise."""
    status = record.get("status")
    warn = (
        record.get("kind") in _WARN_KINDS
        or status in _WARN_STATUSES
        or (isinstance(status, int) and not isinstance(status, bool) and status >= 400)
        or record.get("decision") in _WARN_DECISIONS
    )
    return (SeverityNumber.WARN, "WARN") if warn else (SeverityNumber.INFO, "INFO")


class AuditLogEmitter:
    """An ``AuditLog`` listener emitting through the telemetry's logger (batched, off the caller's I/O)."""

    __slots__ = ("_logger",)

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def __call__(self, record: dict[str, Any]) -> None:
        number, text = severity(record)
        values: dict[str, Any] = {attr.AUDIT_KIND: str(record.get("kind"))}
        for key, name in (("seq", attr.AUDIT_SEQ), ("correlation_id", attr.CORRELATION_ID),
                          ("session_id", attr.AGENT_SESSION), ("decision", attr.DECISION),
                          ("tool", attr.TOOL), ("operation", attr.OPERATION), ("request_id", attr.AUDIT_REQUEST_ID)):
            value = record.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                values[name] = value
        self._logger.emit(
            severity_number=number, severity_text=text, body=dict(record), attributes=values,
            event_name=attr.AUDIT_EVENT,
        )

    def __repr__(self) -> str:
        return "AuditLogEmitter()"
