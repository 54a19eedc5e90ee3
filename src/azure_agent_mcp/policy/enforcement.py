"""The enforcement point: the transport of every SDK client the server builds, the only door out.

A pipeline policy would not do: authentication policies re-send a request themselves after a
401 challenge (Key Vault's first, unauthenticated request; a claims challenge from ARM), and a
re-send from inside a policy passes only the policies after it. The transport is where every
attempt leaves the process (retries, redirects, challenge re-sends, ``nextLink`` pages,
long-running-operation polls), so the guard wraps it, as the Kubernetes MCP server's
access-control round tripper does.

For each attempt, in order:

1. decide the request exactly as it will be written on the wire (``decisions.decide_request``);
2. a refusal (deny, unconfirmed confirm, unknown operation) is audited as ``refused`` and raised:
   nothing is sent;
3. an allowed request gets a durable ``intent`` record first (write-ahead: no record, no request;
   if the audit cannot be written the request is not sent and ``AuditUnavailable`` is raised);
4. it is sent, and an ``outcome`` record (status, duration) linked to the intent follows.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline.transport import HttpTransport

from azure_agent_mcp.callcontext import CallContext, call_interruption, current_call
from azure_agent_mcp.policy.audit import AuditLog
from azure_agent_mcp.policy.body_scopes import is_body_scoped
from azure_agent_mcp.policy.decisions import NOT_GIVEN, decide_request
from azure_agent_mcp.policy.effects import Decision, Effect
from azure_agent_mcp.policy.errors import ConfirmationRequiredError, PolicyDeniedError
from azure_agent_mcp.policy.model import Policy
from azure_agent_mcp.policy.operations import Endpoints, MappedRequest

_LOG = logging.getLogger(__name__)
PRINCIPAL_CLAIMS = ("oid", "appid", "upn")
CORRELATION_HEADER = "x-ms-correlation-request-id"

Confirmer = Callable[[Decision], bool]
_POLL_HEADERS = ("azure-asyncoperation", "location", "operation-location")
# Headers that make a service run another method than the one decided on (Azure DevOps honours
# X-HTTP-Method-Override on a POST): no Azure SDK sends them, so the guard refuses any request with one.
METHOD_OVERRIDE_HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")
METHOD_OVERRIDE_RULE = "method override header"
_POLLERS_REMEMBERED = 512
DECISIONS_CACHED = 4096
"""(method, URL) decisions kept per guard: a decision is a pure function of the (immutable) policy,
the endpoints and the request as written, and the same URL is decided when planned and when sent."""


def _poll_key(url: str) -> str:
    """Scheme, host and path of a poll URL, lowercased (the api-version query may be rewritten)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".lower()


def _method_override(request: Any) -> str | None:
    headers = getattr(request, "headers", None) or {}
    for name in headers:
        if str(name).lower() in METHOD_OVERRIDE_HEADERS:
            return f"the header {name}"
    return None


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


class Guard:
    """Decides and audits every request one server sends; shared by all its clients' transports."""

    def __init__(
        self,
        policy: Policy,
        endpoints: Endpoints,
        confirmer: Confirmer | None = None,
        audit: AuditLog | None = None,
        spans: Callable[[Any], Any] | None = None,
    ) -> None:
        self.policy = policy
        self.endpoints = endpoints
        self.confirmer = confirmer
        self.audit = audit
        # One span per attempt when tracing is on (``telemetry``): a factory of RequestSpan, else None.
        self.spans = spans
        # Long-running-operation polls may run on azure-core's poller thread, where the tool call's
        # context (a ContextVar) is not set. Remember which call started each operation, keyed by
        # the poll URLs its response named, so poll records still say whose call they belong to.
        self._pollers: OrderedDict[str, CallContext] = OrderedDict()
        self._pollers_lock = threading.Lock()
        # Requests the confirmer approved: a retry of the same request object is not asked again.
        self._approved: weakref.WeakKeyDictionary[Any, Decision] = weakref.WeakKeyDictionary()
        self._decided = functools.lru_cache(maxsize=DECISIONS_CACHED)(functools.partial(decide_request, policy, endpoints))

    def decide(self, method: str, url: str, body: Any = NOT_GIVEN, *,
               read_body: Callable[[], Any] | None = None) -> tuple[Decision, MappedRequest | None]:
        """``decisions.decide_request`` for this guard's policy: remembered per (method, URL), a pure
        function of both, except for the operations decided at the scopes their body names
        (Resource Graph), which are decided afresh on every body."""
        decision, mapped = self._decided(method, url)
        if mapped is not None and (body is not NOT_GIVEN or read_body is not None) and is_body_scoped(mapped.operation):
            return decide_request(self.policy, self.endpoints, method, url, body, read_body=read_body)
        return decision, mapped

    def transport(self, inner: HttpTransport | None = None, **transport_kwargs: Any) -> GuardedTransport:
        """A guarded transport around ``inner`` (default: a new RequestsTransport with ``transport_kwargs``)."""
        if inner is None:
            from azure.core.pipeline.transport import RequestsTransport

            inner = RequestsTransport(**transport_kwargs)
        return GuardedTransport(inner, self)

    # -- one attempt -----------------------------------------------------------------------

    def admit(self, request: Any, span: Any = None) -> dict[str, Any] | None:
        """Decide one attempt; raise for a refusal (audited); return its intent record (written).

        ``span``: the attempt's RequestSpan when tracing is on; told the decision and the outcome.
        """
        started = time.perf_counter()
        call = self._call_for(request.url)
        interrupted = call_interruption(call) if call is not None else None
        # the body as the transport will send it (requests' data=), read only for body-scoped operations
        decision, mapped = self.decide(request.method, request.url, read_body=lambda: getattr(request, "data", None))
        override = _method_override(request)
        if override is not None:
            decision = Decision(
                Effect.DENY, decision.operation, decision.scope, decision.data_action, METHOD_OVERRIDE_RULE,
                decision.policy, f"The request carries {override}, which would make the service run another method "
                f"than {request.method.upper()}, the one decided on.", "Send the method itself; never an override header.",
            )
        if span is not None:
            span.decided(call, decision, mapped)
        if interrupted is not None:  # cancelled or past its deadline: nothing is sent, audited like a denial
            self._refused(request, call, decision, mapped, interrupted.decision, started, span)
            raise interrupted
        if decision.effect is Effect.DENY:
            self._refused(request, call, decision, mapped, "deny", started, span)
            raise PolicyDeniedError(decision)
        outcome = "allow"
        if decision.effect is Effect.CONFIRM:
            if self._approved.get(request) != decision:
                if not self._confirmed(decision):
                    self._refused(request, call, decision, mapped, "unconfirmed", started, span)
                    raise ConfirmationRequiredError(decision)
                self._approved[request] = decision
            outcome = "confirmed"
        if self.audit is None:
            if span is not None:
                span.admitted(outcome, None)
            return None
        intent = self._record(request, call, decision, mapped, outcome, kind="intent")
        own = current_call()  # this thread's call (not a poll attributed to one): its record needs no fsync of its own
        if own is not None:
            own.extra["intents"] = own.extra.get("intents", 0) + 1
        intent["request_id"] = uuid.uuid4().hex
        if span is not None:
            span.admitted(outcome, intent["request_id"])
        stored = self.audit.append(intent, durable=True)  # fsynced before anything is sent, or AuditUnavailable
        return {"request_id": intent["request_id"], "intent_seq": stored.get("seq"), "started": started}

    def answered(self, intent: dict[str, Any] | None, request: Any, response: Any) -> None:
        self._remember_pollers(response.headers)
        if intent is None or self.audit is None:
            return
        self._outcome(intent, status=response.status_code, answered_correlation=response.headers.get(CORRELATION_HEADER))

    def failed(self, intent: dict[str, Any] | None, error: BaseException) -> None:
        if intent is None or self.audit is None:
            return
        self._outcome(intent, status="error", error=type(error).__name__)

    # -- helpers ------------------------------------------------------------------------------

    def _outcome(self, intent: dict[str, Any], *, status: Any, **fields: Any) -> None:
        record = {
            "kind": "outcome",
            "request_id": intent["request_id"],
            "intent_seq": intent["intent_seq"],
            "status": status,
            "duration_ms": round((time.perf_counter() - intent["started"]) * 1000, 3),
            **{k: v for k, v in fields.items() if v is not None},
        }
        assert self.audit is not None
        try:
            self.audit.append(record, durable=False)  # rides on the next fsync (group commit)
        except Exception:  # the request was sent and answered: losing its outcome must not hide the answer
            _LOG.warning("the audit outcome record of request %s could not be written", intent["request_id"], exc_info=True)

    def _refused(
        self,
        request: Any,
        call: CallContext | None,
        decision: Decision,
        mapped: MappedRequest | None,
        outcome: str,
        started: float,
        span: Any = None,
    ) -> None:
        if span is not None:
            span.refused(outcome, decision.rule)
        if self.audit is None:
            return
        record = self._record(request, call, decision, mapped, outcome, kind="refused")
        record.update(status="not-sent", duration_ms=round((time.perf_counter() - started) * 1000, 3))
        self.audit.append(record)  # a refusal that cannot be audited is still a refusal: AuditUnavailable

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
        request: Any,
        call: CallContext | None,
        decision: Decision,
        mapped: MappedRequest | None,
        outcome: str,
        *,
        kind: str,
    ) -> dict[str, Any]:
        principal: dict[str, Any] = {}
        if call is not None and isinstance(call.extra.get("principal"), dict):
            principal = {k: v for k, v in call.extra["principal"].items() if k in (*PRINCIPAL_CLAIMS, "tid")}
        if not principal:
            principal = unverified_principal(request.headers.get("Authorization"))
        record: dict[str, Any] = {
            "kind": kind,
            "session_id": call.session_id if call else None,
            "tool": call.tool if call else None,
            "client": call.client_name if call else None,
            # what we send; else the tool call's id
            "correlation_id": request.headers.get(CORRELATION_HEADER) or (call.correlation_id if call else None),
            "call_id": call.correlation_id if call else None,
            "method": request.method.upper(),
            "plane": mapped.plane if mapped else None,
            # the path as sent: the guard refuses any path it would not send exactly as decided
            "path": mapped.path if mapped else None,
            "unknown_operation": True if mapped is not None and mapped.unknown_operation else None,
            "operation": decision.operation,
            "scope": decision.scope,
            # a body-scoped operation (a Resource Graph query): every scope its body names, each decided
            "scopes": list(mapped.scopes) if mapped is not None and mapped.scopes else None,
            "data_action": decision.data_action,
            "effect": decision.effect.value,
            "decision": outcome,
            "rule": decision.rule,
            "policy": decision.policy,
            "principal": principal or None,
            # who the agent acts for, over authenticated HTTP (tid, oid, upn, azp)
            "caller": call.extra.get("caller") if call is not None else None,
        }
        return {k: v for k, v in record.items() if v is not None}


class GuardedTransport(HttpTransport):  # type: ignore[type-arg]
    """An HttpTransport that lets out only what the guard admits, each attempt audited first."""

    def __init__(self, inner: HttpTransport, guard: Guard) -> None:  # type: ignore[type-arg]
        self.inner = inner
        self.guard = guard

    def send(self, request: Any, **kwargs: Any) -> Any:
        spans = self.guard.spans
        if spans is not None:  # tracing on: the same steps inside the attempt's span
            with spans(request) as span:
                return self._send(request, span, **kwargs)
        return self._send(request, None, **kwargs)

    def _send(self, request: Any, span: Any, **kwargs: Any) -> Any:
        intent = self.guard.admit(request, span)
        try:
            response = self.inner.send(request, **kwargs)
        except BaseException as exc:
            self.guard.failed(intent, exc)
            raise
        if span is not None:
            span.answered(response)
        self.guard.answered(intent, request, response)
        return response

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> GuardedTransport:
        self.inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self.inner.__exit__(*args)
