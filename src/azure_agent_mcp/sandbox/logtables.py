"""The tables a sandbox Log Analytics workspace holds: ``AzureActivity`` and ``AppRequests``.

``AzureActivity`` is the activity log of the workspace's subscription (as a subscription's
diagnostic setting sends it), one row per ``EventData`` event, with the columns and value
conventions of Azure's table: upper-case ``OperationNameValue``, ``ResourceGroup`` and
``ResourceProviderValue``, lower-case ``_ResourceId``, ``ActivityStatusValue`` ``Success`` /
``Failure`` / ``Start``, ``Claims`` as a JSON string and ``Claims_d`` as dynamic.

``AppRequests`` holds the requests of the web apps in the workspace's subscription, the way
Application Insights writes them: one request every two minutes over the 24 hours before the
sandbox's world was built, deterministic (the same operations, codes and durations every run).
In the last 45 minutes ``POST /api/orders`` of the production app fails with 500 in a burst, so
"why is this app returning 500s" has an answer; a few 404s are spread over the day.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterable
from typing import Any

ROW_INTERVAL = datetime.timedelta(minutes=2)
HISTORY = datetime.timedelta(hours=24)
BURST = datetime.timedelta(minutes=45)
_OPERATIONS = (
    ("GET", "/api/orders", 0.38),
    ("GET", "/api/orders/{id}", 0.27),
    ("POST", "/api/orders", 0.15),
    ("GET", "/health", 0.12),
    ("GET", "/api/catalog", 0.08),
)
APP_REQUESTS_COLUMNS = (
    ("TenantId", "string"), ("TimeGenerated", "datetime"), ("Id", "string"), ("Source", "string"),
    ("Name", "string"), ("Url", "string"), ("Success", "bool"), ("ResultCode", "string"), ("DurationMs", "real"),
    ("PerformanceBucket", "string"), ("OperationName", "string"), ("OperationId", "string"), ("ParentId", "string"),
    ("AppRoleName", "string"), ("AppRoleInstance", "string"), ("ClientType", "string"), ("ClientIP", "string"),
    ("ItemCount", "long"), ("SDKVersion", "string"), ("_ResourceId", "string"), ("SourceSystem", "string"),
    ("Type", "string"),
)
AZURE_ACTIVITY_COLUMNS = (
    ("TenantId", "string"), ("SourceSystem", "string"), ("TimeGenerated", "datetime"), ("CallerIpAddress", "string"),
    ("CategoryValue", "string"), ("CorrelationId", "string"), ("Authorization", "string"),
    ("Authorization_d", "dynamic"), ("Claims", "string"), ("Claims_d", "dynamic"), ("Level", "string"),
    ("OperationNameValue", "string"), ("Properties", "string"), ("Properties_d", "dynamic"), ("Caller", "string"),
    ("EventDataId", "string"), ("EventSubmissionTimestamp", "datetime"), ("HTTPRequest", "string"),
    ("OperationId", "string"), ("ResourceGroup", "string"), ("ResourceProviderValue", "string"),
    ("ActivityStatusValue", "string"), ("ActivitySubstatusValue", "string"), ("Hierarchy", "string"),
    ("SubscriptionId", "string"), ("_ResourceId", "string"), ("Type", "string"),
)
SCHEMAS = {"AppRequests": APP_REQUESTS_COLUMNS, "AzureActivity": AZURE_ACTIVITY_COLUMNS}
_STATUS_VALUES = {"succeeded": "Success", "failed": "Failure", "started": "Start", "accepted": "Accept"}


def _unit(*parts: Any) -> float:
    """A stable number in [0, 1) for these parts (the same every run)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _guid(*parts: Any) -> str:
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _pick_operation(value: float) -> tuple[str, str]:
    total = 0.0
    for method, route, weight in _OPERATIONS:
        total += weight
        if value < total:
            return method, route
    return _OPERATIONS[-1][0], _OPERATIONS[-1][1]


def app_requests(site: dict[str, Any], customer_id: str, anchor: datetime.datetime) -> list[dict[str, Any]]:
    """A web app's request log for the day before ``anchor``."""
    name = site["name"]
    host = (site.get("properties") or {}).get("defaultHostName") or f"{name}.azurewebsites.net"
    failing = "prod" in name
    rows: list[dict[str, Any]] = []
    count = int(HISTORY / ROW_INTERVAL)
    for index in range(count):
        at = anchor - HISTORY + index * ROW_INTERVAL
        method, route = _pick_operation(_unit(name, index, "op"))
        burst = failing and anchor - at <= BURST
        if burst and index % 3 == 0:  # checkout traffic: orders keep being placed, and fail
            method, route = "POST", "/api/orders"
        order = 1000 + int(_unit(name, index, "order") * 9000)
        path = route.replace("{id}", str(order))
        code, duration = "200", 20 + _unit(name, index, "ms") * 180
        if method == "POST":
            code = "201"
        if burst and method == "POST" and route == "/api/orders":
            code, duration = "500", 2900 + _unit(name, index, "slow") * 2200  # the database times out
        elif route == "/api/orders/{id}" and _unit(name, index, "missing") < 0.05:
            code = "404"
        operation_id = _guid(name, index, "operation")[:32].replace("-", "")
        rows.append({
            "TenantId": customer_id,
            "TimeGenerated": at,
            "Id": _guid(name, index, "request")[:16].replace("-", ""),
            "Source": "",
            "Name": f"{method} {route}",
            "Url": f"https://{host}{path}",
            "Success": code.startswith(("2", "3")),
            "ResultCode": code,
            "DurationMs": round(duration, 3),
            "PerformanceBucket": _bucket(duration),
            "OperationName": f"{method} {route}",
            "OperationId": operation_id,
            "ParentId": operation_id,
            "AppRoleName": name,
            "AppRoleInstance": f"{name}-{int(_unit(name, index, 'instance') * 2)}",
            "ClientType": "PC",
            "ClientIP": "0.0.0.0",
            "ItemCount": 1,
            "SDKVersion": "python:3.11",
            "_ResourceId": site["id"].lower(),
            "SourceSystem": "Azure",
            "Type": "AppRequests",
        })
    return rows


def _bucket(duration_ms: float) -> str:
    for limit, label in ((250, "<250ms"), (500, "250ms-500ms"), (1000, "500ms-1sec"), (3000, "1sec-3sec"),
                         (7000, "3sec-7sec")):
        if duration_ms < limit:
            return label
    return "7sec-15sec"


def _value(field: Any) -> str:
    if isinstance(field, dict):
        return str(field.get("value") or "")
    return str(field or "")


def _timestamp(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    value = text[:-1] + "+00:00" if text.endswith("Z") else text
    try:
        return datetime.datetime.fromisoformat(value).astimezone(datetime.timezone.utc)
    except ValueError:
        return None


def azure_activity(events: Iterable[dict[str, Any]], customer_id: str) -> list[dict[str, Any]]:
    """Activity log events (``EventData``) as ``AzureActivity`` rows."""
    rows = []
    for event in events:
        when = _timestamp(event.get("eventTimestamp"))
        if when is None:
            continue
        claims = event.get("claims") or {}
        authorization = event.get("authorization") or {}
        properties = event.get("properties") or {}
        http = event.get("httpRequest") or {}
        resource_id = str(event.get("resourceId") or "")
        status = _value(event.get("status"))
        rows.append({
            "TenantId": customer_id,
            "SourceSystem": "Azure",
            "TimeGenerated": when,
            "CallerIpAddress": http.get("clientIpAddress") or "",
            "CategoryValue": _value(event.get("category")),
            "CorrelationId": event.get("correlationId") or "",
            "Authorization": json.dumps(authorization) if authorization else "",
            "Authorization_d": authorization,
            "Claims": json.dumps(claims) if claims else "",
            "Claims_d": claims,
            "Level": event.get("level") or "",
            "OperationNameValue": _value(event.get("operationName")).upper(),
            "Properties": json.dumps(properties) if properties else "",
            "Properties_d": properties,
            "Caller": event.get("caller") or "",
            "EventDataId": event.get("eventDataId") or "",
            "EventSubmissionTimestamp": _timestamp(event.get("submissionTimestamp")) or when,
            "HTTPRequest": json.dumps(http) if http else "",
            "OperationId": event.get("operationId") or "",
            "ResourceGroup": str(event.get("resourceGroupName") or "").upper(),
            "ResourceProviderValue": _value(event.get("resourceProviderName")).upper(),
            "ActivityStatusValue": _STATUS_VALUES.get(status.lower(), status),
            "ActivitySubstatusValue": _value(event.get("subStatus")),
            "Hierarchy": "",
            "SubscriptionId": event.get("subscriptionId") or "",
            "_ResourceId": resource_id.lower(),
            "Type": "AzureActivity",
        })
    return rows


def as_table(name: str, rows: list[dict[str, Any]]) -> Any:
    """The rows as a KQL table with the table's full schema (an empty table still has its columns)."""
    from azure_agent_mcp.sandbox.kql import Column, Table

    columns = SCHEMAS[name]
    return Table([Column(n, t) for n, t in columns], [[row.get(n) for n, _ in columns] for row in rows])


def in_window(rows: list[dict[str, Any]], start: datetime.datetime, end: datetime.datetime) -> list[dict[str, Any]]:
    return [row for row in rows if start <= row["TimeGenerated"] <= end]
