"""The server's own door to Azure for managing its short-lived agent identities: a fixed allowlist, audited.

Why not the guard: the agent's policy decides what the *agent* may do; creating the agent's identity,
giving it its time-bound roles and deleting it again are the *server's* acts, done before the agent
exists and after it is gone, and a read-only agent policy must not be able to stop the clean-up.
So these requests pass a fixed allowlist instead, bound to the configuration (Graph's agent
identity endpoints of the one blueprint, PIM schedule requests at exactly the configured scopes),
and everything else is refused. Every attempt is audited like the guard's: a durable ``intent``
record before anything is sent (no record, no request), an ``outcome`` after, ``refused`` for
what the allowlist stops; the records carry ``door: server-management`` and the rule that let
them out. A correlation id is set on each request so the audit and Azure's logs meet.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline.transport import HttpTransport

_LOG = logging.getLogger(__name__)
CORRELATION_HEADER = "x-ms-correlation-request-id"
DOOR = "server-management"
RULE = "ephemeral-agent allowlist"
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_AGENTS = r"/(?:v1\.0|beta)/servicePrincipals/microsoft\.graph\.agentIdentity"
_AGENT = rf"/(?:v1\.0|beta)/servicePrincipals/{_GUID}(?:/microsoft\.graph\.agentIdentity)?"
_SCHEDULE_REQUEST = rf"/providers/Microsoft\.Authorization/roleAssignmentScheduleRequests/{_GUID}"


class ManagementRequestRefused(PermissionError):
    """A request outside the server-management allowlist: not sent."""


@dataclass(frozen=True)
class Allowed:
    method: str
    host: str
    path: re.Pattern[str]
    operation: str


def allowlist(graph_endpoint: str, arm_endpoint: str, scopes: tuple[str, ...]) -> tuple[Allowed, ...]:
    """Graph's agent identity create/list/get/update/delete, and PIM schedule requests at ``scopes`` only."""
    graph, arm = _origin(graph_endpoint), _origin(arm_endpoint)
    graph_prefix = urlsplit(graph_endpoint).path.rstrip("/")
    arm_prefix = urlsplit(arm_endpoint).path.rstrip("/")
    rules = [
        Allowed("POST", graph, re.compile(re.escape(graph_prefix) + _AGENTS, re.I), "microsoft.graph/agentIdentities/create"),
        Allowed("GET", graph, re.compile(re.escape(graph_prefix) + _AGENTS, re.I), "microsoft.graph/agentIdentities/read"),
        Allowed("GET", graph, re.compile(re.escape(graph_prefix) + _AGENT, re.I), "microsoft.graph/agentIdentities/read"),
        Allowed("PATCH", graph, re.compile(re.escape(graph_prefix) + _AGENT, re.I), "microsoft.graph/agentIdentities/update"),
        Allowed("DELETE", graph, re.compile(re.escape(graph_prefix) + _AGENT, re.I), "microsoft.graph/agentIdentities/delete"),
    ]
    for scope in scopes:
        rules.append(Allowed("PUT", arm, re.compile(re.escape(arm_prefix + scope.rstrip("/")) + _SCHEDULE_REQUEST, re.I),
                             "Microsoft.Authorization/roleAssignmentScheduleRequests/write"))
    return tuple(rules)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class ManagementTransport(HttpTransport):  # type: ignore[type-arg]
    """An HttpTransport that sends only what the allowlist names, each attempt audited first."""

    def __init__(self, inner: HttpTransport, rules: tuple[Allowed, ...], audit: Any,  # type: ignore[type-arg]
                 session_id: Any = None, on_response: Any = None) -> None:
        self.inner = inner
        self.rules = rules
        self.audit = audit
        self.session_id = session_id
        """A callable naming the agent session the request is made for (or None): it is in the records."""
        self.on_response = on_response
        """Told every response (the manager reads Azure's clock from its ``Date``)."""

    def _match(self, request: Any) -> tuple[Allowed | None, str]:
        parts = urlsplit(request.url)
        origin, path = f"{parts.scheme.lower()}://{parts.netloc.lower()}", parts.path
        for rule in self.rules:
            if rule.method == request.method.upper() and rule.host == origin and rule.path.fullmatch(path):
                return rule, path
        return None, path

    def send(self, request: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        if not request.headers.get(CORRELATION_HEADER):
            request.headers[CORRELATION_HEADER] = str(uuid.uuid4())
        rule, path = self._match(request)
        record = {
            "door": DOOR,
            "session_id": self.session_id() if callable(self.session_id) else self.session_id,
            "correlation_id": request.headers.get(CORRELATION_HEADER),
            "method": request.method.upper(),
            "host": urlsplit(request.url).netloc.lower(),
            "path": path,
            "operation": rule.operation if rule else None,
            "rule": RULE,
        }
        record = {k: v for k, v in record.items() if v is not None}
        if rule is None:
            self.audit.append({"kind": "refused", **record, "decision": "deny", "effect": "deny", "status": "not-sent",
                               "duration_ms": round((time.perf_counter() - started) * 1000, 3)})
            raise ManagementRequestRefused(
                f"{request.method.upper()} {path} is not a request the server makes for its ephemeral agent identities "
                "(Graph agent identities of its blueprint, PIM schedule requests at the configured scopes): not sent")
        request_id = uuid.uuid4().hex
        stored = self.audit.append({"kind": "intent", **record, "decision": "allow", "effect": "allow",
                                    "request_id": request_id}, durable=True)
        try:
            response = self.inner.send(request, **kwargs)
        except BaseException as exc:
            self._outcome(request_id, stored, started, status="error", error=type(exc).__name__)
            raise
        self._outcome(request_id, stored, started, status=response.status_code)
        if self.on_response is not None:
            self.on_response(response)
        return response

    def _outcome(self, request_id: str, stored: dict[str, Any], started: float, **fields: Any) -> None:
        try:
            self.audit.append({"kind": "outcome", "door": DOOR, "request_id": request_id, "intent_seq": stored.get("seq"),
                               "duration_ms": round((time.perf_counter() - started) * 1000, 3), **fields},
                              durable=False)
        except Exception:  # the request was answered: a lost outcome record must not hide the answer
            _LOG.warning("the audit outcome record of management request %s could not be written", request_id)

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> ManagementTransport:
        self.inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self.inner.__exit__(*args)
