"""``log_query``: a KQL query over a Log Analytics workspace, through its own query API and audience.

The workspace is named by its ARM resource id (or name + resource group), and the query goes to
the resource-centric endpoint ``/v1/{workspace id}/query``: Log Analytics checks
``Microsoft.OperationalInsights/workspaces/query/read`` there, and the policy can decide on that
scope. A workspace GUID (customerId) is sent to ``/v1/workspaces/{guid}/query``, which names no
ARM scope: the policy refuses it with a reason saying to use the resource id, and nothing is sent.

Rows are capped (``top``), and the answer says when it was cut; a partial result from Log
Analytics (``PartialError``) is returned with its error, not as success.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from typing import Any

from azure_agent_mcp.tools import arguments
from azure_agent_mcp.tools import schemas as s
from azure_agent_mcp.tools.base import AzureTool, DeclaredOperation, PlannedRequest, ToolInputError, ToolOutput
from azure_agent_mcp.tools.clients import AzureRequestError, AzureSession, retry_after_seconds
from azure_agent_mcp.tools.logs_timespan import parse_timespan

WORKSPACE_TYPE = "Microsoft.OperationalInsights/workspaces"
QUERY_OPERATION = "Microsoft.OperationalInsights/workspaces/query/read"
DEFAULT_TIMESPAN = "P1D"
DEFAULT_ROWS = 100
MAX_ROWS = 1000
MAX_QUERY_CHARS = 256 * 1024
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_WORKSPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{2,61}[A-Za-z0-9]")
_WORKSPACE_HINT = (
    "Pass the workspace's ARM resource id (/subscriptions/<guid>/resourceGroups/<group>/providers/"
    "Microsoft.OperationalInsights/workspaces/<name>, as resource_list returns it), or its name with resource_group."
)


def _target(azure: AzureSession, workspace: str, resource_group: str | None, subscription: str | None) -> tuple[str, str]:
    """("resource", canonical workspace id) or ("guid", customerId)."""
    value = workspace.strip()
    if _GUID.fullmatch(value):
        return "guid", value.lower()
    if value.startswith("/"):
        if resource_group or subscription:
            raise ToolInputError("Pass either a workspace resource id or a name with resource_group, not both.",
                                 hint=_WORKSPACE_HINT)
        parsed = arguments.resource_id(value)
        if f"{parsed.namespace}/{parsed.resource_type}".lower() != WORKSPACE_TYPE.lower() or len(parsed.segments) != 8:
            raise ToolInputError(f"'{value[:200]}' is not a Log Analytics workspace id.", hint=_WORKSPACE_HINT)
        return "resource", parsed.path
    if not _WORKSPACE_NAME.fullmatch(value):
        raise ToolInputError(f"'{value[:80]}' is not a Log Analytics workspace name, id or GUID.", hint=_WORKSPACE_HINT)
    if not resource_group:
        raise ToolInputError(f"The workspace '{value}' is named without its resource_group.", hint=_WORKSPACE_HINT)
    sub = azure.subscription_id(subscription)
    group = arguments.group_name(resource_group)
    rid = arguments.resource_id(
        f"/subscriptions/{sub}/resourceGroups/{group}/providers/{WORKSPACE_TYPE}/{value}"
    )
    return "resource", rid.path


def _checked(query: str, timespan: str | None, top: int | None) -> tuple[Any, int]:
    if not query.strip():
        raise ToolInputError("query is empty.", hint="Write a KQL query, e.g. AppRequests | where ResultCode == '500' | take 20.")
    if len(query) > MAX_QUERY_CHARS:
        raise ToolInputError(f"query is {len(query)} characters long; this server sends at most {MAX_QUERY_CHARS}.")
    span = parse_timespan(timespan) if timespan is not None else None
    if top is None:
        return span, DEFAULT_ROWS
    if top < 1 or top > MAX_ROWS:
        raise ToolInputError(f"top must be between 1 and {MAX_ROWS}, got {top}.")
    return span, top


def _url(azure: AzureSession, kind: str, target: str) -> str:
    base = azure.env.logs_endpoint.rstrip("/") + "/v1"
    return f"{base}/workspaces/{target}/query" if kind == "guid" else f"{base}{target}/query"


def _plan(
    azure: AzureSession,
    workspace: str,
    query: str,
    resource_group: str | None = None,
    subscription: str | None = None,
    timespan: str | None = DEFAULT_TIMESPAN,
    top: int | None = None,
) -> list[PlannedRequest]:
    _checked(query, timespan, top)
    kind, target = _target(azure, workspace, resource_group, subscription)
    return [PlannedRequest("POST", _url(azure, kind, target))]


def log_query(
    azure: AzureSession,
    workspace: str,
    query: str,
    resource_group: str | None = None,
    subscription: str | None = None,
    timespan: str | None = DEFAULT_TIMESPAN,
    top: int | None = None,
) -> ToolOutput:
    from azure.core.exceptions import HttpResponseError
    from azure.monitor.query import LogsQueryStatus

    span, limit = _checked(query, timespan, top)
    kind, target = _target(azure, workspace, resource_group, subscription)
    client = azure.logs()
    try:
        if kind == "guid":
            result = client.query_workspace(target, query, timespan=span)
        else:
            result = client.query_resource(target, query, timespan=span)
    except HttpResponseError as exc:
        raise logs_error(exc) from None
    partial = result.status == LogsQueryStatus.PARTIAL
    tables, shown, total = _tables(result.partial_data if partial else result.tables, limit)
    data: dict[str, Any] = {
        "workspace": target,
        "timespan": timespan,
        "status": "PartialError" if partial else "Success",
        "tables": tables,
        "partial_error": None,
    }
    summary = f"{total} row(s) from {target.rsplit('/', 1)[-1]}" + (f" over {timespan}." if timespan else ".")
    if shown < total:
        summary += f" Showing the first {shown} (top={limit}): narrow the query (where, summarize, take) or raise top."
    if partial:
        error = result.partial_error
        data["partial_error"] = {"code": error.code, "message": _partial_message(error)}
        summary += f" Partial result: Log Analytics stopped early ({error.code}: {data['partial_error']['message']})."
    return ToolOutput(summary, data)


def _partial_message(error: Any) -> str:
    """The partial error's message and, from its details, the innermost message that says what stopped it."""
    parts = [str(error.message or "").rstrip(".")]
    for detail in error.details or []:
        inner, depth = detail, 0  # the SDK's ErrorDetail models are Mappings, not dicts
        while isinstance(inner, Mapping) and isinstance(inner.get("innererror"), Mapping) and depth < 8:
            inner, depth = inner["innererror"], depth + 1
        if isinstance(inner, Mapping) and inner.get("message"):
            parts.append(str(inner["message"]).rstrip("."))
    return ". ".join(p for p in parts if p) + "."


def _tables(tables: Any, limit: int) -> tuple[list[dict[str, Any]], int, int]:
    out, shown, total = [], 0, 0
    for table in tables or []:
        rows = list(table.rows)
        total += len(rows)
        kept = rows[: max(limit - shown, 0)]
        shown += len(kept)
        out.append({
            "name": table.name,
            "columns": [{"name": n, "type": t} for n, t in zip(table.columns, table.columns_types)],
            "rows": [[_json_value(v, t) for v, t in zip(row, table.columns_types)] for row in kept],
            "row_count": len(rows),
            "truncated": len(kept) < len(rows),
        })
    return out, shown, total


def _json_value(value: Any, column_type: str) -> Any:
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    if column_type == "dynamic" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def logs_error(exc: Any) -> AzureRequestError:
    """Log Analytics' error as the agent needs it: the outer code, and every inner message down to the one
    that names the problem (and where, for a KQL error)."""
    status = exc.status_code or 0
    headers = getattr(getattr(exc, "response", None), "headers", None)
    body: Any = None
    try:
        body = json.loads(exc.response.text()) if exc.response is not None else None
    except (ValueError, AttributeError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return AzureRequestError(status, f"HTTP{status}", (exc.message or "").splitlines()[0][:500], retry_after_seconds(headers))
    code = str(error.get("code") or f"HTTP{status}")
    parts = [str(error.get("message") or "")]
    inner, depth = error.get("innererror"), 0
    while isinstance(inner, dict) and depth < 8:
        where = ", ".join(f"{k} {inner[k]}" for k in ("line", "pos", "token", "operator") if inner.get(k) is not None)
        parts.append(f"{inner.get('code')}: {inner.get('message')}" + (f" ({where})" if where else ""))
        inner, depth = inner.get("innererror"), depth + 1
    return AzureRequestError(status, code, " ".join(p.rstrip(".") + "." for p in parts if p), retry_after_seconds(headers))


TOOLS = (
    AzureTool(
        name="log_query",
        description=(
            "Log Analytics KQL (AzureActivity, AppRequests...). workspace: ARM id, or name + resource_group. "
            "timespan: duration (default P1D) or start/end."
        ),
        run=log_query,
        plan=_plan,
        operations=(DeclaredOperation(QUERY_OPERATION),),
        output_schema=s.obj(
            ("status", "tables"),
            status=s.STRING,
            tables=s.OBJECTS,  # each {name, columns: [{name, type}], rows: [[...]]}
            partial_error=s.nullable(s.ANY_OBJECT),
        ),
    ),
)
