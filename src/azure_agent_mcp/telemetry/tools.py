"""The tool call's span: the MCP SDK's own ``tools/call <tool>`` SERVER span, with our attributes added.

The MCP SDK opens that span (MCP semantic conventions: ``mcp.method.name``, ``gen_ai.tool.name``,
``gen_ai.operation.name``, ``jsonrpc.request.id``, ``mcp.protocol.version``, and the client's
``traceparent`` from ``params._meta``) around our audit middleware, so there is exactly one span per
call and it continues the client's trace. We add the session, transport and, once the call's
audit record is final, its correlation id, agent session, decision, rule and outcome.

Over HTTP a client may send W3C trace context as request headers rather than in ``_meta``;
``HeaderTraceContext`` runs before the SDK's span and makes the headers' context current then, so
``_meta`` wins when both are present.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from azure_agent_mcp.telemetry import attributes as attr

_TRACE_HEADERS = ("traceparent", "tracestate")
_TRANSPORTS = {"stdio": ("pipe", None), "http": ("tcp", "http")}


def annotate_call_start(transport: str, mcp_session: str | None) -> None:
    span = trace.get_current_span()
    if not span.is_recording():
        return
    network, protocol = _TRANSPORTS.get(transport, (None, None))
    values = {attr.NETWORK_TRANSPORT: network, attr.NETWORK_PROTOCOL: protocol, attr.MCP_SESSION_ID: mcp_session}
    span.set_attributes({k: v for k, v in values.items() if v is not None})


def annotate_call_record(record: dict[str, Any]) -> None:
    """The final audit record's identifiers and verdict on the tool span (never its arguments)."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    values: dict[str, Any] = {}
    for key, name in (("correlation_id", attr.CORRELATION_ID), ("session_id", attr.AGENT_SESSION),
                      ("decision", attr.DECISION), ("rule", attr.RULE), ("operation", attr.OPERATION),
                      ("scope", attr.SCOPE), ("status", attr.STATUS), ("error_code", attr.ERROR_CODE),
                      ("cancelled_by", attr.CANCELLED_BY), ("client", attr.MCP_CLIENT)):
        value = record.get(key)
        if isinstance(value, str) and value:
            values[name] = value
    principal = record.get("principal")
    if isinstance(principal, dict):
        for key, name in (("oid", attr.PRINCIPAL_OID), ("tid", attr.PRINCIPAL_TID), ("appid", attr.PRINCIPAL_APPID)):
            if isinstance(principal.get(key), str):
                values[name] = principal[key]
    caller = record.get("caller")
    if isinstance(caller, dict):  # identifiers only: never the upn or display name
        for key, name in (("oid", attr.CALLER_OID), ("tid", attr.CALLER_TID)):
            if isinstance(caller.get(key), str):
                values[name] = caller[key]
    span.set_attributes(values)


class HeaderTraceContext:
    """Server middleware (outermost): an HTTP request's ``traceparent``/``tracestate`` headers as the
    current context, when its ``params._meta`` carries none."""

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        request = getattr(ctx, "request", None)
        headers = getattr(request, "headers", None)
        meta = ctx.meta if isinstance(getattr(ctx, "meta", None), dict) else {}
        if headers is None or "traceparent" in meta or "traceparent" not in headers:
            return await call_next(ctx)
        carrier = {name: headers[name] for name in _TRACE_HEADERS if name in headers}
        extracted = propagate.extract(carrier)
        if not trace.get_current_span(extracted).get_span_context().is_valid:
            return await call_next(ctx)
        token = otel_context.attach(extracted)
        try:
            return await call_next(ctx)
        finally:
            otel_context.detach(token)
