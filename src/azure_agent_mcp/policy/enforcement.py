"""The enforcement point: an azure-core pipeline policy in every SDK client the server builds.

Placed with ``per_retry_policies=[...]`` it runs after the retry policy, so every attempt is
checked before it leaves the process: retries, redirects, ``nextLink`` pages, long-running
operation polls, provider auto-registration. Allowed requests are sent; denied ones raise
``PolicyDeniedError`` (nothing is sent); a Confirm decision asks the server's confirmer and is
denied when there is none or it says no. Every request, sent or not, leaves one audit record.

It is a ``SansIOHTTPPolicy``, not an ``HTTPPolicy``: azure-core rewires an ``HTTPPolicy``'s
``next`` attribute in every pipeline it is put in, so one instance shared by several clients (as
the server does) would send one client's requests through another client's authentication
policy. A SansIO policy is wrapped per pipeline and can be shared safely; raising in
``on_request`` stops the request before the transport, and azure-core's retry policy does not
retry it (our errors are not ``AzureError``).
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy

from azure_agent_mcp.callcontext import CallContext, call_interruption, current_call
from azure_agent_mcp.policy.audit import AuditLog
from azure_agent_mcp.policy.decisions import decide_request
from azure_agent_mcp.policy.effects import Decision, Effect
from azure_agent_mcp.policy.errors import ConfirmationRequiredError, PolicyDeniedError
from azure_agent_mcp.policy.model import Policy
from azure_agent_mcp.policy.operations import Endpoints, MappedRequest

_LOG = logging.getLogger(__name__)
_CONTEXT_KEY = "azure_agent_mcp_policy"
PRINCIPAL_CLAIMS = ("oid", "appid", "upn")
CORRELATION_HEADER = "x-ms-correlation-request-id"

Confirmer = Callable[[Decision], bool]
_POLL_HEADERS = ("azure-asyncoperation", "location", "operation-location")
_POLLERS_REMEMBERED = 512


def _poll_key(url: str) -> str:
    """Scheme, host and path of a poll URL, lowercased (the api-version query may be rewritten)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".lower()


def unverified_principal(authorization: str | None) -> dict[str, str]:
    """oid / appid / upn from a bearer token's payload, read without verification; never the token."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return {}
    try:
        payload = authorization.split(" ", 1)[1].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    if not isinstance(claims, dict):
        return {}
    return {k: str(claims[k]) for k in PRINCIPAL_CLAIMS if k in claims}


class PolicyEnforcementPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Decide every outgoing request against ``policy``; audit each one to ``audit`` (when given)."""

    def __init__(
        self,
        policy: Policy,
        endpoints: Endpoints,
        confirmer: Confirmer | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        super().__init__()
        self.policy = policy
        self.endpoints = endpoints
        self.confirmer = confirmer
        self.audit = audit
        # Long-running-operation polls run on azure-core's poller thread, where the tool call's
        # context (a ContextVar) is not set. Remember which call started each operation, keyed by
        # the poll URLs its response named, so poll records still say whose call they belong to.
        self._pollers: OrderedDict[str, CallContext] = OrderedDict()
        self._pollers_lock = threading.Lock()

    # -- the pipeline hooks ---------------------------------------------------------------

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        http = request.http_request
        started = time.perf_counter()
        call = self._call_for(http.url)
        interrupted = call_interruption(call) if call is not None else None
        if interrupted is not None:  # cancelled or past its deadline: nothing is sent, audited like a denial
            decision, mapped = decide_request(self.policy, self.endpoints, http.method, http.url)
            self._record(request, decision, mapped, interrupted.decision, started, status="not-sent")
            raise interrupted
        decision, mapped = decide_request(self.policy, self.endpoints, http.method, http.url)
        if decision.effect is Effect.DENY:
            self._record(request, decision, mapped, "deny", started, status="not-sent")
            raise PolicyDeniedError(decision)
        outcome = "allow"
        if decision.effect is Effect.CONFIRM:
            previous = request.context.get(_CONTEXT_KEY)
            if previous is not None and previous[2] == "confirmed" and previous[0] == decision:
                # a retry of a request the confirmer already approved: ask once per request, not per attempt
                request.context[_CONTEXT_KEY] = (decision, mapped, "confirmed", started)
                return
            if not self._confirmed(decision):
                self._record(request, decision, mapped, "unconfirmed", started, status="not-sent")
                raise ConfirmationRequiredError(decision)
            outcome = "confirmed"
        request.context[_CONTEXT_KEY] = (decision, mapped, outcome, started)

    def on_response(self, request: PipelineRequest, response: PipelineResponse) -> None:  # type: ignore[type-arg]
        state = request.context.get(_CONTEXT_KEY)
        if state is None:
            return
        decision, mapped, outcome, started = state
        self._remember_pollers(response.http_response.headers)
        self._record(
            request,
            decision,
            mapped,
            outcome,
            started,
            status=response.http_response.status_code,
            answered_correlation=response.http_response.headers.get(CORRELATION_HEADER),
        )

    def on_exception(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        state = request.context.get(_CONTEXT_KEY)
        if state is None:
            return
        decision, mapped, outcome, started = state
        error = sys.exc_info()[0]
        self._record(
            request, decision, mapped, outcome, started, status="error", error=error.__name__ if error else None
        )

    # -- helpers ------------------------------------------------------------------------------

    def _remember_pollers(self, headers: Any) -> None:
        call = current_call()
        if call is None:
            return
        for name in _POLL_HEADERS:
            url = headers.get(name)
            if url:
                with self._pollers_lock:
                    self._pollers[_poll_key(url)] = call
                    while len(self._pollers) > _POLLERS_REMEMBERED:
                        self._pollers.popitem(last=False)

    def _call_for(self, url: str) -> CallContext | None:
        call = current_call()
        if call is not None:
            return call
        with self._pollers_lock:
            return self._pollers.get(_poll_key(url))

    def _confirmed(self, decision: Decision) -> bool:
        if self.confirmer is None:
            return False
        try:
            return bool(self.confirmer(decision))
        except Exception:  # a broken confirmer must not turn into an approval
            _LOG.warning("the confirmer failed; treating %s as not confirmed", decision.operation, exc_info=True)
            return False

    def _record(
        self,
        request: PipelineRequest,  # type: ignore[type-arg]
        decision: Decision,
        mapped: MappedRequest | None,
        outcome: str,
        started: float,
        *,
        status: Any,
        error: str | None = None,
        answered_correlation: str | None = None,
    ) -> None:
        if self.audit is None:
            return
        http = request.http_request
        call = self._call_for(http.url)
        principal: dict[str, Any] = {}
        if call is not None and isinstance(call.extra.get("principal"), dict):
            principal = {k: v for k, v in call.extra["principal"].items() if k in (*PRINCIPAL_CLAIMS, "tid")}
        if not principal:
            principal = unverified_principal(http.headers.get("Authorization"))
        record: dict[str, Any] = {
            "kind": "request",
            "session_id": call.session_id if call else None,
            "tool": call.tool if call else None,
            "client": call.client_name if call else None,
            # what we sent; else what ARM assigned and answered with; else the tool call's id
            "correlation_id": http.headers.get(CORRELATION_HEADER)
            or answered_correlation
            or (call.correlation_id if call else None),
            "method": http.method.upper(),
            "plane": mapped.plane if mapped else None,
            # the path as sent: the guard refuses any path it would not send exactly as decided
            "path": mapped.path if mapped else None,
            "unknown_operation": True if mapped is not None and mapped.unknown_operation else None,
            "operation": decision.operation,
            "scope": decision.scope,
            "data_action": decision.data_action,
            "effect": decision.effect.value,
            "decision": outcome,
            "rule": decision.rule,
            "policy": decision.policy,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "principal": principal or None,
            "error": error,
        }
        self.audit.append({k: v for k, v in record.items() if v is not None})
