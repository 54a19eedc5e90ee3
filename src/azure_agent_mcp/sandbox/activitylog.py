"""The sandbox's activity log: what its ARM changed, in Azure Monitor's ``EventData`` wire shape.

Azure writes an Administrative event for every write, delete and action ARM serves (reads are not
logged), failed ones included (an ``AuthorizationFailed`` 403 is a Failed event). The sandbox does
the same from a listener on ``ArmPlane.listeners``, so "what did agent sessions do here" can be
answered from Azure's side: each event carries the caller, the operation, the status, the
request's correlation id and the token's claims, the agent-session claim among them.

One event per request, ``EndRequest`` (Azure also writes a ``BeginRequest`` for long operations;
the sandbox answers at once). The claims use the claim type names Azure's events show (the
WS-Federation URIs for ``oid``, ``upn``, ``tid``...; other claims, the agent markers among them,
under their own names). Events never hold a token, a request or response body: a failure's
``statusMessage`` is only ARM's error code and message.

The log is bounded (the oldest events drop first) and thread-safe: the ARM plane appends on the
sandbox's event-loop thread while tests, the activity log room and other readers copy events out.
"""

from __future__ import annotations

import datetime
import http
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from azure_agent_mcp.sandbox.armpath import map_arm, split_path

if TYPE_CHECKING:
    from azure_agent_mcp.sandbox.access import Principal
    from azure_agent_mcp.sandbox.protocol import Request, Response

EVENT_LIMIT = 10_000

# POSTs that Azure RBAC counts as reads (queries): ARM's rule alone names them ``.../action``, but
# they change nothing and the activity log does not record them.
READ_ACTIONS = frozenset(a.lower() for a in (
    "Microsoft.ResourceGraph/resources/action",
    "Microsoft.ResourceGraph/resourcesHistory/action",
    "Microsoft.ResourceGraph/resourceChanges/action",
    "Microsoft.OperationalInsights/workspaces/api/query/action",
    "Microsoft.Insights/metrics/action",
))

# The claim type names Azure's activity log events show for the token's short claim names.
CLAIM_TYPES = {
    "oid": "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "tid": "http://schemas.microsoft.com/identity/claims/tenantid",
    "scp": "http://schemas.microsoft.com/identity/claims/scope",
    "amr": "http://schemas.microsoft.com/claims/authnmethodsreferences",
    "acr": "http://schemas.microsoft.com/claims/authnclassreference",
    "upn": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "sub": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
    "given_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    "family_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    "unique_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
}
OBJECT_ID_CLAIM = CLAIM_TYPES["oid"]

_WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE", "POST"})
_DOTNET_EPOCH_TICKS = 621_355_968_000_000_000  # .NET ticks at 1970-01-01, as Azure's event ids count them


def is_recorded(method: str, operation: str) -> bool:
    """Whether Azure's activity log records this request: writes, deletes and actions, not reads."""
    if method.upper() not in _WRITE_METHODS:
        return False
    lowered = operation.lower()
    return not (lowered.endswith("/read") or lowered in READ_ACTIONS)


def event_claims(claims: dict[str, Any]) -> dict[str, str]:
    """The token's claims as an event shows them: string values, Azure's claim type names."""
    shown: dict[str, str] = {}
    for name, value in claims.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            text = ",".join(str(v) for v in value)
        elif isinstance(value, (dict, bool)):
            text = json.dumps(value, separators=(",", ":"))
        else:
            text = str(value)
        shown[CLAIM_TYPES.get(name, name)] = text
    return shown


def caller_of(claims: dict[str, Any]) -> str:
    """Azure's ``caller``: the user's UPN, else the application's id, else the object id."""
    return str(claims.get("upn") or claims.get("appid") or claims.get("azp") or claims.get("oid") or "")


def iso_timestamp(epoch: float) -> str:
    """Azure's event time format: UTC, seven fractional digits (.NET ticks). Fixed width, so as text
    the stamps sort in time order."""
    seconds = math.floor(epoch)
    ticks = round((epoch - seconds) * 10_000_000)
    if ticks >= 10_000_000:
        seconds, ticks = seconds + 1, ticks - 10_000_000
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ticks:07d}Z"


def _localizable(value: str, localized: str | None = None) -> dict[str, str]:
    return {"value": value, "localizedValue": localized if localized is not None else value}


def _status_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return str(status)


def _status(status: int) -> str:
    if status >= 400:
        return "Failed"
    if status == 202:
        return "Accepted"
    return "Succeeded"


def _resource_type(scope: str) -> str:
    """The type of the resource at ``scope``, as ARM names it (``Microsoft.Resources/subscriptions/...``)."""
    parts = split_path(scope)
    if not parts:
        return "Microsoft.Resources/tenants"
    read = map_arm("GET", parts).operation
    return read[: -len("/read")] if read.endswith("/read") else read


def _scope_fields(scope: str) -> tuple[str, str]:
    """(subscription id, resource group name) of a scope, empty where the scope has none."""
    parts = split_path(scope)
    lowered = [p.lower() for p in parts]
    subscription = parts[1] if len(parts) >= 2 and lowered[0] == "subscriptions" else ""
    group = parts[3] if len(parts) >= 4 and lowered[0] == "subscriptions" and lowered[2] == "resourcegroups" else ""
    return subscription, group


def _error_message(body: bytes) -> str | None:
    """ARM's error code and message only (never the rest of a body)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None
    return json.dumps({"error": {"code": str(error.get("code", "")), "message": str(error.get("message", ""))}},
                      separators=(",", ":"))


def build_event(request: Request, principal: Principal, response: Response, *, tenant_id: str,
                now: float) -> dict[str, Any] | None:
    """The event Azure would log for this ARM answer, or None when it logs none (reads, no operation)."""
    operation = response.log.get("operation")
    scope = response.log.get("scope")
    if not isinstance(operation, str) or not isinstance(scope, str) or response.status == 401:
        return None
    if not is_recorded(request.method, operation):
        return None
    claims = principal.claims
    subscription, group = _scope_fields(scope)
    namespace = operation.split("/", 1)[0]
    event_id = str(uuid.uuid4())
    ticks = _DOTNET_EPOCH_TICKS + int(now * 10_000_000)
    phrase = _status_phrase(response.status)
    properties = {"statusCode": phrase, "eventCategory": "Administrative", "entity": scope, "message": operation}
    if response.status >= 400:
        message = _error_message(response.body)
        if message is not None:
            properties["statusMessage"] = message
    timestamp = iso_timestamp(now)
    event_root = scope.rstrip("/") if scope != "/" else ""
    return {
        "authorization": {"action": operation, "scope": scope},
        "caller": caller_of(claims),
        "channels": "Operation",
        "claims": event_claims(claims),
        "correlationId": request.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4()),
        "description": "",
        "eventDataId": event_id,
        "eventName": _localizable("EndRequest", "End request"),
        "category": _localizable("Administrative"),
        "eventTimestamp": timestamp,
        "id": f"{event_root}/events/{event_id}/ticks/{ticks}",
        "level": "Error" if response.status >= 400 else "Informational",
        "operationId": str(uuid.uuid4()),
        "operationName": _localizable(operation),
        "resourceGroupName": group,
        "resourceProviderName": _localizable(namespace),
        "resourceType": _localizable(_resource_type(scope)),
        "resourceId": scope,
        "status": _localizable(_status(response.status)),
        "subStatus": _localizable(phrase, f"{phrase} (HTTP Status Code: {response.status})"),
        "submissionTimestamp": timestamp,
        "subscriptionId": subscription,
        "tenantId": str(claims.get("tid") or tenant_id),
        "properties": properties,
        "httpRequest": {
            "clientRequestId": request.headers.get("x-ms-client-request-id")
            or request.headers.get("client-request-id") or "",
            "clientIpAddress": request.client_host,
            "method": request.method,
        },
    }


class ActivityLog:
    """The last ``limit`` events, oldest first. ``listener`` goes on ``ArmPlane.listeners``."""

    def __init__(self, tenant_id: str, clock: Callable[[], float] = time.time, limit: int = EVENT_LIMIT) -> None:
        self.tenant_id = tenant_id
        self.clock = clock
        self._events: deque[dict[str, Any]] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def listener(self, request: Request, principal: Principal, response: Response) -> None:
        event = build_event(request, principal, response, tenant_id=self.tenant_id, now=self.clock())
        if event is not None:
            self.append(event)

    def append(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(event)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def events(self, subscription: str | None = None) -> list[dict[str, Any]]:
        """Copies of the events (of one subscription, case-insensitive, if given), oldest first."""
        return [json.loads(json.dumps(e)) for e in self.shared(subscription)]

    def shared(self, subscription: str | None = None) -> list[dict[str, Any]]:
        """The events themselves, oldest first, for readers inside the sandbox that only read them (an
        appended event is never changed): a listing copies only the page it answers, not the whole log."""
        with self._lock:
            snapshot = list(self._events)
        if subscription is None:
            return snapshot
        wanted = subscription.lower()
        return [e for e in snapshot if e["subscriptionId"].lower() == wanted]

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)
