"""Azure Monitor, read-only: the activity log (who changed what, and which agent session), metrics.

All three go through azure-mgmt-monitor's ``MonitorManagementClient``, built like every other
client (guarded transport, correlation id, deadline). Time arguments are checked and turned into
one absolute window before the plan is made, so a malformed timespan never reaches Azure and a
continuation asks for exactly the window its first page did.

The activity log pages 200 events at a time while an agent wants a few: the continuation seals
the page's link with the number of its events already handed out, and goes on to Azure's
``nextLink`` when the page is used up.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import math
import typing
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

from azure_agent_mcp.tools import arguments, schemas, timespans
from azure_agent_mcp.tools import continuation as continuation_tokens
from azure_agent_mcp.tools.base import AzureTool, DeclaredOperation, PlannedRequest, ToolInputError, ToolOutput, clamp_top
from azure_agent_mcp.tools.clients import AzureSession

ACTIVITY_API_VERSION = "2015-04-01"
METRICS_API_VERSION = "2024-02-01"
ACTIVITY_TOOL = "activity_log_list"
DEFAULT_WINDOW = datetime.timedelta(hours=24)
DEFAULT_METRICS_WINDOW = datetime.timedelta(hours=1)
MAX_POINTS = 1440
AGENT_CLAIMS = ("xms_cli_ses", "xms_cli_sid", "xms_agent_session")
# What the listing shows of an event: asked for with $select, so the page carries nothing else.
_SELECT = ("eventTimestamp,caller,operationName,status,subStatus,resourceId,resourceGroupName,correlationId,claims,"
           "level,eventDataId,properties")

Status = Literal["Started", "Accepted", "Succeeded", "Failed"]
Aggregation = Literal["Average", "Minimum", "Maximum", "Total", "Count"]


# -- activity_log_list ---------------------------------------------------------------------------


def _listing_path(sub: str) -> str:
    return f"/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values"


def _quoted(value: str) -> str:
    return value.replace("'", "''")


def _checked_text(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 256 or any(ord(c) < 0x20 for c in text):
        raise ToolInputError(f"{name} must be 1-256 printable characters.")
    return text


def _first_link(azure: AzureSession, sub: str, resource_group: str | None, resource_id: str | None,
                caller: str | None, status: str | None, start: str | None, end: str | None,
                timespan: str | None) -> str:
    """The first page's URL: the window made absolute, and the filters the service itself applies."""
    frame = timespans.window(start, end, timespan, default=DEFAULT_WINDOW)
    clauses = [f"eventTimestamp ge '{timespans.iso(frame.start)}'", f"eventTimestamp le '{timespans.iso(frame.end)}'"]
    if resource_id:
        clauses.append(f"resourceUri eq '{_quoted(resource_id)}'")
    elif resource_group:
        clauses.append(f"resourceGroupName eq '{_quoted(resource_group)}'")
    if caller:
        clauses.append(f"caller eq '{_quoted(caller)}'")
    if status:
        clauses.append(f"status eq '{status}'")
    query = urlencode({"api-version": ACTIVITY_API_VERSION, "$filter": " and ".join(clauses), "$select": _SELECT},
                      quote_via=quote)
    return azure.arm_url(_listing_path(sub) + "?" + query, None)


def _scoped_resource(sub: str, resource_group: str | None, resource_id: str | None) -> str | None:
    if resource_id is None:
        return None
    parsed = arguments.resource_id(resource_id)
    if parsed.subscription.lower() != sub.lower():
        raise ToolInputError(f"resource_id is in subscription {parsed.subscription}, not in {sub}.",
                             hint="Pass the resource's own subscription, or leave subscription out.")
    if resource_group and (len(parsed.segments) < 4 or parsed.segments[3].lower() != resource_group.lower()):
        raise ToolInputError(f"resource_id is not in resource group {resource_group}.",
                             hint="Pass the group the resource is in, or only resource_id.")
    return "/" + "/".join(parsed.segments)


def _page_link(azure: AzureSession, continuation: str | None, sub: str, **window: Any) -> tuple[str, int]:
    if not continuation:
        return _first_link(azure, sub, **window), 0
    link, listing, offset = continuation_tokens.unseal_at(continuation, tool=ACTIVITY_TOOL,
                                                          session_id=azure.session.id, scope=_listing_path(sub))
    parts = urlsplit(link)
    arm = urlsplit(azure.env.arm_endpoint)
    moved = (parts.scheme, parts.netloc.lower()) != (arm.scheme, arm.netloc.lower()) or parts.path.lower() != listing.lower()
    if moved or "#" in link:  # urlsplit drops a fragment ('...values#' reads as the listing); ARM never sends one
        raise ToolInputError("The continuation's link does not continue the activity log listing; nothing was sent.",
                             hint="List again without continuation.")
    return link, offset


def _value(localizable: Any) -> str | None:
    return getattr(localizable, "value", None) if localizable is not None else None


def event_item(event: Any) -> dict[str, Any]:
    """One event as the agent reads it; the agent-session claim when the token carried one."""
    claims = event.claims or {}
    fields = {
        "time": timespans.iso(event.event_timestamp) if event.event_timestamp else "",
        "caller": event.caller,
        "operation": _value(event.operation_name) or "",
        "status": _value(event.status) or "",
        "sub_status": _value(event.sub_status),
        "resource_id": event.resource_id,
        "correlation_id": event.correlation_id,
    }
    item: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    session = next((claims[name] for name in AGENT_CLAIMS if claims.get(name)), None)
    if session is not None:
        item["agent_session"] = session
    message = (event.properties or {}).get("statusMessage")
    if item["status"] == "Failed" and isinstance(message, str):
        try:
            code = json.loads(message).get("error", {}).get("code")
        except (ValueError, AttributeError):
            code = None
        if isinstance(code, str):
            item["error_code"] = code
    return item


def _operation_matches(pattern: str | None, operation: str | None) -> bool:
    if pattern is None:
        return True
    return fnmatch.fnmatchcase((operation or "").lower(), pattern.lower())


def activity_log_list(
    azure: AzureSession,
    subscription: str | None = None,
    resource_group: str | None = None,
    start: str | None = None,
    end: str | None = None,
    timespan: str | None = None,
    caller: str | None = None,
    operation: str | None = None,
    status: Status | None = None,
    resource_id: str | None = None,
    top: int | None = None,
    continuation: str | None = None,
) -> ToolOutput:
    sub, link, offset, limit, pattern = _activity_request(azure, subscription, resource_group, start, end, timespan,
                                                          caller, operation, status, resource_id, top, continuation)
    pages = azure.monitor(sub).activity_logs.list(filter="", select=None).by_page(continuation_token=link)
    events = list(next(pages))
    next_link = pages.continuation_token
    items: list[dict[str, Any]] = []
    consumed = offset
    for index in range(offset, len(events)):
        consumed = index + 1
        if not _operation_matches(pattern, _value(events[index].operation_name)):
            continue
        items.append(event_item(events[index]))
        if len(items) >= limit:
            break
    token = None
    listing = _listing_path(sub)
    if consumed < len(events):
        token = continuation_tokens.seal(link, tool=ACTIVITY_TOOL, session_id=azure.session.id, scope=listing,
                                         offset=consumed)
    elif isinstance(next_link, str) and next_link:
        token = continuation_tokens.seal(next_link, tool=ACTIVITY_TOOL, session_id=azure.session.id, scope=listing)
    where = f"group {resource_group}" if resource_group else f"subscription {sub}"
    summary = f"{len(items)} activity log event(s) in {where}, newest first" + (
        "; more with continuation." if token else ".")
    return ToolOutput(summary, {"subscription": sub, "items": items, "continuation": token})


def _activity_request(azure: AzureSession, subscription: str | None, resource_group: str | None, start: str | None,
                      end: str | None, timespan: str | None, caller: str | None, operation: str | None,
                      status: str | None, resource_id: str | None, top: int | None,
                      continuation: str | None) -> tuple[str, str, int, int, str | None]:
    sub = azure.subscription_id(subscription)
    if resource_group:
        arguments.group_name(resource_group)
    if status is not None and status not in typing.get_args(Status):
        raise ToolInputError(f"status '{str(status)[:40]}' is not an activity log status.",
                             hint="Use one of " + ", ".join(typing.get_args(Status)) + ".")
    limit = clamp_top(top, default=50, maximum=200)
    pattern = _checked_text(operation, "operation")
    rid = _scoped_resource(sub, resource_group, resource_id)
    link, offset = _page_link(azure, continuation, sub, resource_group=resource_group, resource_id=rid,
                              caller=_checked_text(caller, "caller"), status=status, start=start, end=end,
                              timespan=timespan)
    return sub, link, offset, limit, pattern


def _plan_activity_log_list(azure: AzureSession, subscription: str | None = None, resource_group: str | None = None,
                            start: str | None = None, end: str | None = None, timespan: str | None = None,
                            caller: str | None = None, operation: str | None = None, status: str | None = None,
                            resource_id: str | None = None, top: int | None = None,
                            continuation: str | None = None) -> list[PlannedRequest]:
    _, link, _, _, _ = _activity_request(azure, subscription, resource_group, start, end, timespan, caller, operation,
                                         status, resource_id, top, continuation)
    return [PlannedRequest("GET", link)]


# -- metrics_list / metrics_get ------------------------------------------------------------------


def _resource(resource_id: str) -> arguments.ResourceId:
    parsed = arguments.resource_id(resource_id)
    if parsed.namespace == "Microsoft.Resources":
        raise ToolInputError("Metrics belong to a resource, not to a subscription or a resource group.",
                             hint=arguments.RESOURCE_ID_HINT)
    return parsed


def metrics_list(azure: AzureSession, resource_id: str) -> ToolOutput:
    rid = _resource(resource_id)
    definitions = azure.monitor(rid.subscription).metric_definitions.list(rid.path[1:], api_version=METRICS_API_VERSION)
    items = []
    for d in definitions:
        item = {
            "name": _value(d.name) or "",
            "display_name": getattr(d.name, "localized_value", None),
            "unit": d.unit,
            "primary_aggregation": d.primary_aggregation_type,
            "aggregations": list(d.supported_aggregation_types or []),
            "intervals": [_grain(a.time_grain) for a in (d.metric_availabilities or []) if a.time_grain],
        }
        items.append({k: v for k, v in item.items() if v is not None})
    return ToolOutput(f"{len(items)} metric(s) for {rid.path}.", {"resource_id": rid.path, "items": items})


def _grain(value: Any) -> str:
    if isinstance(value, datetime.timedelta):
        seconds = int(value.total_seconds())
        if seconds % 86400 == 0:
            return f"P{seconds // 86400}D"
        if seconds % 3600 == 0:
            return f"PT{seconds // 3600}H"
        return f"PT{seconds // 60}M" if seconds % 60 == 0 else f"PT{seconds}S"
    return str(value)


def _plan_metrics_list(azure: AzureSession, resource_id: str) -> list[PlannedRequest]:
    rid = _resource(resource_id)
    return [PlannedRequest("GET", azure.arm_url(rid.path + "/providers/Microsoft.Insights/metricDefinitions",
                                                METRICS_API_VERSION))]


def _metrics_query(resource_id: str, metric_names: list[str] | None, timespan: str | None, interval: str | None,
                   aggregation: list[str] | None) -> tuple[arguments.ResourceId, dict[str, str]]:
    rid = _resource(resource_id)
    frame = timespans.metrics_timespan(timespan, default=DEFAULT_METRICS_WINDOW)
    grain_text = (interval or "PT1M").strip().upper()
    grain = timespans.duration(grain_text, "interval")
    if grain < datetime.timedelta(minutes=1) or grain.total_seconds() % 60:
        raise ToolInputError(f"interval '{interval}' is shorter than a minute or not whole minutes.",
                             hint="Use a time grain: PT1M, PT5M, PT15M, PT30M, PT1H, PT6H, PT12H or P1D.")
    points = math.ceil(frame.length / grain)
    if points > MAX_POINTS:
        raise ToolInputError(f"timespan {timespans.iso(frame.start)}/{timespans.iso(frame.end)} at interval "
                             f"{grain_text} is {points} points per metric; the limit is {MAX_POINTS}.",
                             hint="Choose a longer interval or a shorter timespan.")
    query = {"timespan": f"{timespans.iso(frame.start)}/{timespans.iso(frame.end)}", "interval": grain_text}
    names = []
    for name in metric_names or []:
        text = _checked_text(name, "metric name")
        assert text is not None
        if "," in text:
            raise ToolInputError(f"metric name '{text[:60]}' has a comma: pass each metric as its own list item.")
        names.append(text)
    if names:
        query["metricnames"] = ",".join(names)
    if aggregation:
        query["aggregation"] = ",".join(dict.fromkeys(aggregation))
    return rid, query


def metrics_get(
    azure: AzureSession,
    resource_id: str,
    metric_names: list[str] | None = None,
    timespan: str | None = None,
    interval: str | None = None,
    aggregation: list[Aggregation] | None = None,
) -> ToolOutput:
    rid, query = _metrics_query(resource_id, metric_names, timespan, interval, aggregation)
    answer = azure.monitor(rid.subscription).metrics.list(rid.path[1:], api_version=METRICS_API_VERSION, **query)
    metrics = []
    for metric in answer.value or []:
        points = []
        for series in metric.timeseries or []:
            for point in series.data or []:
                values = {k: getattr(point, k) for k in ("average", "minimum", "maximum", "total", "count")
                          if getattr(point, k) is not None}
                if values:
                    points.append({"time": timespans.iso(point.time_stamp), **values})
        entry = {"name": _value(metric.name) or "", "unit": metric.unit, "points": points}
        metrics.append({k: v for k, v in entry.items() if v is not None})
    summary = f"{len(metrics)} metric(s) for {rid.path} over {answer.timespan} at {answer.interval}."
    data = {"resource_id": rid.path, "timespan": answer.timespan, "interval": answer.interval, "metrics": metrics}
    return ToolOutput(summary, {k: v for k, v in data.items() if v is not None})


def _plan_metrics_get(azure: AzureSession, resource_id: str, metric_names: list[str] | None = None,
                      timespan: str | None = None, interval: str | None = None,
                      aggregation: list[str] | None = None) -> list[PlannedRequest]:
    rid, query = _metrics_query(resource_id, metric_names, timespan, interval, aggregation)
    path = rid.path + "/providers/Microsoft.Insights/metrics?" + urlencode(query, quote_via=quote)
    return [PlannedRequest("GET", azure.arm_url(path, METRICS_API_VERSION))]


# -- output schemas (small: tools/list carries every tool) ----------------------------------------

_S = schemas

TOOLS = (
    AzureTool(
        name="activity_log_list",
        description=(
            "Activity log events (writes, deletes, actions), newest first; agent_session names agent callers. "
            "timespan (PT1H; default 24 h) or ISO 8601 start/end; operation may use *."
        ),
        run=activity_log_list,
        plan=_plan_activity_log_list,
        operations=(DeclaredOperation("Microsoft.Insights/eventtypes/values/read"),),
        output_schema=_S.listing(_S.ANY_OBJECT, continuation=_S.NULLABLE_STRING),
    ),
    AzureTool(
        name="metrics_list",
        description=(
            "A resource's metric definitions (names, units, aggregations)."
        ),
        run=metrics_list,
        plan=_plan_metrics_list,
        operations=(DeclaredOperation("Microsoft.Insights/metricDefinitions/read"),),
        output_schema=_S.LISTING,
    ),
    AzureTool(
        name="metrics_get",
        description=(
            "Metric values: metric_names (default the first), timespan (PT1H, or start/end), interval "
            "(PT1M..P1D); at most 1440 points per metric."
        ),
        run=metrics_get,
        plan=_plan_metrics_get,
        operations=(DeclaredOperation("Microsoft.Insights/metrics/read"),),
        output_schema=_S.obj(("metrics",), metrics=_S.OBJECTS),  # each {name, unit, points: [{timeStamp, ...}]}
    ),
)
