"""Azure Monitor's activity log API, served from the sandbox's own activity log.

``GET /subscriptions/{s}/providers/Microsoft.Insights/eventtypes/management/values
?api-version=2015-04-01&$filter=...&$select=...``, newest events first, in pages linked by
``nextLink``. The ``$filter`` grammar is the service's own, restricted one: ``eventTimestamp ge
'<time>'`` is required, ``eventTimestamp le '<time>'`` is optional (now), at most one of
``resourceGroupName``, ``resourceUri`` (``resourceId``), ``resourceProvider`` and
``correlationId`` ``eq '<value>'`` narrows it, and ``caller eq`` / ``status eq`` / ``levels eq``
may be added (the Azure CLI sends those), all joined with ``and``. Anything else is Azure's
``400 BadRequest`` naming what is wrong. Errors are the service's flat ``{"code", "message"}``.

RBAC: ``Microsoft.Insights/eventtypes/values/read`` at the subscription.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from azure_agent_mcp.sandbox.activitylog import iso_timestamp
from azure_agent_mcp.sandbox.arm import ArmFailure
from azure_agent_mcp.sandbox.protocol import json_response

if TYPE_CHECKING:
    from azure_agent_mcp.sandbox.access import Principal
    from azure_agent_mcp.sandbox.arm import ArmPlane
    from azure_agent_mcp.sandbox.armpath import ArmTarget
    from azure_agent_mcp.sandbox.protocol import Request, Response

API_VERSIONS = ("2015-04-01",)
OPERATION = "Microsoft.Insights/eventtypes/values/read"
PAGE_SIZE = 200
SELECTABLE = (
    "authorization", "caller", "category", "channels", "claims", "correlationId", "description", "eventDataId",
    "eventName", "eventTimestamp", "httpRequest", "id", "level", "operationId", "operationName", "properties",
    "resourceGroupName", "resourceProviderName", "resourceId", "resourceType", "status", "submissionTimestamp",
    "subStatus", "subscriptionId", "tenantId",
)
# Clauses that choose what the listing is about: the service allows one of them.
_SUBJECTS = {"resourcegroupname": "resourceGroupName", "resourceuri": "resourceUri", "resourceid": "resourceUri",
             "resourceprovider": "resourceProvider", "correlationid": "correlationId"}
_REFINEMENTS = {"caller": "caller", "status": "status", "levels": "levels", "eventchannels": "eventChannels"}
_TIME = re.compile(r"^\s*eventTimestamp\s+(ge|le)\s+(?:'([^']*)'|(\S+))\s*$", re.IGNORECASE)
_EQ = re.compile(r"^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_FRACTION = re.compile(r"(\.\d{6})\d+")
GRAMMAR = ("eventTimestamp ge '<ISO 8601 time>' [and eventTimestamp le '<ISO 8601 time>'] [and one of "
           "resourceGroupName eq '<group>', resourceUri eq '<resource id>', resourceProvider eq '<namespace>', "
           "correlationId eq '<id>'] [and caller eq '<caller>'] [and status eq '<status>'] "
           "[and levels eq '<level>[,<level>...]']")


class MonitorError(Exception):
    """Azure Monitor's error answer: HTTP status, code and message, in the service's flat shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> Response:
        return json_response(self.status, {"code": self.code, "message": self.message}, error_code=self.code)


def unsupported_version(api_version: str, resource_type: str, supported: tuple[str, ...]) -> ArmFailure:
    """ARM's answer for an api-version the provider does not register (before the provider sees the request)."""
    return ArmFailure(400, "NoRegisteredProviderFound",
                      f"No registered resource provider found for location 'global' and API version '{api_version}' "
                      f"for type '{resource_type}'. The supported api-versions are '{', '.join(supported)}'.")


def bad_request(message: str) -> MonitorError:
    return MonitorError(400, "BadRequest", message)


def parse_time(text: str, what: str) -> datetime.datetime:
    """An ISO 8601 time; without an offset it is UTC (the Azure CLI sends such times)."""
    cleaned = _FRACTION.sub(r"\1", text.strip())
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(cleaned)
    except ValueError:
        raise bad_request(f"The {what} '{text}' is not a valid ISO 8601 date-time, e.g. "
                          "'2026-01-21T20:00:00Z'.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


@dataclass
class EventFilter:
    start: datetime.datetime
    end: datetime.datetime
    equals: dict[str, str] = field(default_factory=dict)  # canonical clause name -> value

    def __post_init__(self) -> None:
        # Events carry one fixed-width UTC format (activitylog.iso_timestamp): as text, they sort in time.
        self._bounds = (iso_timestamp(self.start.timestamp()), iso_timestamp(self.end.timestamp()))

    def matches(self, event: dict[str, Any]) -> bool:
        if not self._bounds[0] <= event["eventTimestamp"] <= self._bounds[1]:
            return False
        for name, value in self.equals.items():
            wanted = value.lower()
            if name == "resourceGroupName" and event.get("resourceGroupName", "").lower() != wanted:
                return False
            if name == "resourceUri" and event.get("resourceId", "").lower() != wanted.rstrip("/"):
                return False
            if name == "resourceProvider" and event["resourceProviderName"]["value"].lower() != wanted:
                return False
            if name == "correlationId" and event.get("correlationId", "").lower() != wanted:
                return False
            if name == "caller" and event.get("caller", "").lower() != wanted:
                return False
            if name == "status" and event["status"]["value"].lower() != wanted:
                return False
            if name == "levels" and event.get("level", "").lower() not in {
                    v.strip() for v in wanted.split(",")}:
                return False
            if name == "eventChannels" and not {"admin", "operation"} & {v.strip() for v in wanted.split(",")}:
                return False
        return True


def parse_filter(raw: str | None, now: datetime.datetime) -> EventFilter:
    if raw is None or not raw.strip():
        raise bad_request("The $filter query parameter is required: the activity log is listed for a time range. "
                          f"Use: {GRAMMAR}.")
    start: datetime.datetime | None = None
    end: datetime.datetime | None = None
    equals: dict[str, str] = {}
    for part in re.split(r"\s+and\s+", raw.strip(), flags=re.IGNORECASE):
        timed = _TIME.match(part)
        if timed:
            moment = parse_time(timed.group(2) if timed.group(2) is not None else timed.group(3),
                                f"eventTimestamp {timed.group(1).lower()} value")
            if timed.group(1).lower() == "ge":
                start = moment
            else:
                end = moment
            continue
        clause = _EQ.match(part)
        name = clause.group(1).lower() if clause else ""
        canonical = _SUBJECTS.get(name) or _REFINEMENTS.get(name)
        if clause is None or canonical is None:
            raise bad_request(f"The $filter clause '{part.strip()[:200]}' is not supported. Use: {GRAMMAR}.")
        if canonical in equals:
            raise bad_request(f"The $filter names {canonical} twice.")
        equals[canonical] = clause.group(2).replace("''", "'")
    if start is None:
        raise bad_request(f"The $filter must start the time range with eventTimestamp ge '<time>'. Use: {GRAMMAR}.")
    subjects = [name for name in equals if name in _SUBJECTS.values()]
    if len(subjects) > 1:
        raise bad_request(f"The $filter may narrow by one of resourceGroupName, resourceUri, resourceProvider and "
                          f"correlationId, not by {' and '.join(subjects)}.")
    end = end or now
    if end < start:
        raise bad_request("The $filter's eventTimestamp le time is earlier than its eventTimestamp ge time.")
    return EventFilter(start, end, equals)


def parse_select(raw: str | None) -> list[str] | None:
    if raw is None or not raw.strip():
        return None
    known = {name.lower(): name for name in SELECTABLE}
    chosen = []
    for name in (n.strip() for n in raw.split(",")):
        if not name:
            continue
        if name.lower() not in known:
            raise bad_request(f"The $select property '{name[:100]}' is not an event property. Use a comma separated "
                              f"list of: {', '.join(SELECTABLE)}.")
        chosen.append(known[name.lower()])
    return chosen


def _encode_token(event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": event_id}).encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after = data["after"]
        if not isinstance(after, str):
            raise TypeError
        return after
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise bad_request("The $skiptoken is not valid. Use the nextLink of the previous page as it was "
                          "returned.") from exc


class ActivityLogRoom:
    """The activity log listing of one subscription (an ``ArmRoom``)."""

    def __init__(self, plane: ArmPlane, page_size: int = PAGE_SIZE) -> None:
        self.plane = plane
        self.page_size = page_size

    def serves(self, method: str, lowered_parts: list[str]) -> bool:
        return (method == "GET" and len(lowered_parts) == 7 and lowered_parts[0] == "subscriptions"
                and lowered_parts[2:] == ["providers", "microsoft.insights", "eventtypes", "management", "values"])

    def handle(self, request: Request, parts: list[str], target: ArmTarget, principal: Principal) -> Response:
        try:
            return self._list(request, parts, principal)
        except MonitorError as exc:
            return exc.response()

    def _list(self, request: Request, parts: list[str], principal: Principal) -> Response:
        state = self.plane.state
        subscription = parts[1]
        if subscription.lower() not in {s.lower() for s in state.world.subscriptions}:
            raise ArmFailure(404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")
        api_version = request.query_ci("api-version") or ""
        if api_version not in API_VERSIONS:
            raise unsupported_version(api_version, "eventtypes/values", API_VERSIONS)
        self.plane.require(principal, OPERATION, f"/subscriptions/{subscription}")
        now = datetime.datetime.fromtimestamp(state.activity.clock(), datetime.timezone.utc)
        event_filter = parse_filter(request.query_ci("$filter"), now)
        select = parse_select(request.query_ci("$select"))
        matching = [e for e in reversed(state.activity.shared(subscription)) if event_filter.matches(e)]
        token = request.query_ci("$skiptoken")
        if token:
            after = _decode_token(token)
            index = next((i for i, e in enumerate(matching) if e["eventDataId"] == after), None)
            if index is None:
                raise bad_request("The $skiptoken names an event that is no longer in the activity log; list "
                                  "again without it.")
            matching = matching[index + 1:]
        page = matching[: self.page_size]
        items = [self._selected(e, select) for e in page]
        payload: dict[str, Any] = {"value": items}
        if len(matching) > len(page):
            params = {"api-version": api_version}
            for name in ("$filter", "$select"):
                value = request.query_ci(name)
                if value:
                    params[name] = value
            params["$skiptoken"] = _encode_token(page[-1]["eventDataId"])
            payload["nextLink"] = f"{state.origin}{request.path}?{urlencode(params, quote_via=quote)}"
        return json_response(200, payload)

    @staticmethod
    def _selected(event: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
        if select is None:
            return event
        return {name: event[name] for name in select if name in event}
