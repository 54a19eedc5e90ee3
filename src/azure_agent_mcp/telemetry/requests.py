"""One CLIENT span per Azure request attempt, opened by the guard's transport (retries and polls included).

The span starts once the guard knows which tool call the attempt belongs to: on the call's own
worker thread that is the current context (the tool span's child); a long-running-operation poll on
azure-core's poller thread has no context, so it is parented on the context its call left in
``CallContext.extra`` with its first request. The span is current while the guard audits and sends,
so the intent, refusal and outcome log records carry its ids, and the attempt leaves with a
``traceparent`` (and the client's ``tracestate``) naming it, never the client's ``baggage``.

Attributes: HTTP client conventions (method, ``url.full`` through ``span_url``, server address and
port, status) and ours (correlation id, call, agent session, RBAC operation and scope, decision,
rule); the tool's name is on the parent span. Never a header value other than the correlation and request ids, never a body, never an
exception message (a transport error's text may quote the URL with its query).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from azure_agent_mcp.callcontext import CallContext, current_call
from azure_agent_mcp.telemetry import attributes as attr
from azure_agent_mcp.telemetry.urls import server_address, span_url

CONTEXT_KEY = "otel.context"
# W3C trace context only, whatever OTEL_PROPAGATORS says: baggage a client sent in _meta must not be
# forwarded to Azure, and Azure reads traceparent.
_W3C = TraceContextTextMapPropagator()
CORRELATION_HEADER = "x-ms-correlation-request-id"
SERVICE_REQUEST_HEADER = "x-ms-request-id"


class RequestSpan:
    """A context manager around one attempt; the guard reports its decision and outcome to it."""

    __slots__ = ("_later", "_request", "_span", "_token", "_tracer")

    def __init__(self, tracer: Any, request: Any) -> None:
        self._tracer = tracer
        self._request = request
        self._span: Any = None
        self._token: Any = None
        # outcome attributes, set in one pass at the end: the SDK's per-attribute cost is not small
        self._later: dict[str, Any] = {}

    def __enter__(self) -> RequestSpan:
        return self

    def start(self, call: CallContext | None, decided: dict[str, Any] | None = None) -> None:
        """Open the span (once), parented on the call's context, and name it in the request's traceparent."""
        if self._span is not None:
            return
        request = self._request
        own = call is not None and current_call() is call
        parent = None
        if own:
            assert call is not None
            call.extra.setdefault(CONTEXT_KEY, otel_context.get_current())
        elif call is not None:
            parent = call.extra.get(CONTEXT_KEY)
        host, port = server_address(request.url)
        values: dict[str, Any] = {
            attr.HTTP_METHOD: request.method.upper(),
            attr.URL_FULL: span_url(request.url),
            attr.SERVER_ADDRESS: host,
        }
        if port is not None:
            values[attr.SERVER_PORT] = port
        correlation = request.headers.get(CORRELATION_HEADER)
        if correlation:
            values[attr.CORRELATION_ID] = correlation
        if call is not None:
            values[attr.CALL_CORRELATION_ID] = call.correlation_id
            if call.session_id:
                values[attr.AGENT_SESSION] = call.session_id
        if decided:
            values.update(decided)
        self._span = self._tracer.start_span(
            request.method.upper(), context=parent, kind=SpanKind.CLIENT, attributes=values
        )
        here = trace.set_span_in_context(self._span, parent)
        self._token = otel_context.attach(here)
        _W3C.inject(request.headers, context=here)

    def decided(self, call: CallContext | None, decision: Any, mapped: Any) -> None:
        values: dict[str, Any] = {
            attr.OPERATION: decision.operation,
            attr.SCOPE: decision.scope,
            attr.EFFECT: decision.effect.value,
        }
        if decision.data_action:
            values[attr.DATA_ACTION] = True
        if decision.rule:
            values[attr.RULE] = decision.rule
        if decision.policy:
            values[attr.POLICY] = decision.policy
        if mapped is not None and mapped.plane:
            values[attr.PLANE] = mapped.plane
        self.start(call, values)  # one attribute pass: the span opens once the decision is known

    def refused(self, outcome: str, rule: str | None) -> None:
        """Not sent: the decision, and an error status saying why (the rule's name, never more)."""
        self._later[attr.DECISION] = outcome
        self._span.set_status(StatusCode.ERROR, f"not sent: {outcome}" + (f" by rule {rule}" if rule else ""))

    def admitted(self, outcome: str, request_id: str | None) -> None:
        self._later[attr.DECISION] = outcome
        if request_id:
            self._later[attr.AUDIT_REQUEST_ID] = request_id

    def answered(self, response: Any) -> None:
        status = response.status_code
        self._later[attr.HTTP_STATUS] = status
        service_request = response.headers.get(SERVICE_REQUEST_HEADER)
        if service_request:
            self._later[attr.AZURE_SERVICE_REQUEST_ID] = service_request
        if status >= 400:
            self._later[attr.ERROR_TYPE] = str(status)
            self._span.set_status(StatusCode.ERROR)

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if self._span is None:  # the guard failed before it knew the call: still one span per attempt
            self.start(current_call())
        if exc is not None:
            self._later[attr.ERROR_TYPE] = type(exc).__name__
            if self._span.status.status_code is StatusCode.UNSET:  # keep a refusal's description
                self._span.set_status(StatusCode.ERROR)
        if self._later:
            self._span.set_attributes(self._later)
        self._span.end()
        if self._token is not None:
            otel_context.detach(self._token)
