"""Log Analytics' query API under ``/loganalytics`` on the sandbox origin (``api.loganalytics.io`` in Azure).

Served: ``GET|POST /v1/workspaces/{customerId}/query`` and the resource-centric
``GET|POST /v1/{workspace resource id}/query`` (GET takes ``?query=&timespan=``, POST the JSON body
``{query, timespan, workspaces}``). Tokens must be for ``https://api.loganalytics.io``: this is the
only plane that accepts that audience, and it accepts no other. The caller needs
``Microsoft.OperationalInsights/workspaces/query/read`` on the workspace (RBAC authorizer).

Answers are Log Analytics' own shapes: ``{"tables": [{"name": "PrimaryResult", "columns":
[{"name", "type"}], "rows": [[...]]}]}``; datetimes as ISO 8601 strings, dynamic values as JSON
strings, as the service writes them. Errors are OneAPI objects: ``BadArgumentError`` with an
``innererror`` ``SyntaxError`` or ``SemanticError`` naming the problem (and its line and position);
``InsufficientAccessError`` (403); ``ResourceNotFoundError`` / ``WorkspaceNotFoundError`` (404).
A result over the record limit (500,000 rows in Azure, settable through the admin API) is cut
there and answered 200 with a ``PartialError``, as Azure does.

The sandbox's own choices, not Azure's documented ones: a query over ``MAX_QUERY_CHARS`` is refused
with ``BadArgumentError`` / ``QueryTooLong``; cross-workspace queries (``workspaces``) are not served.
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

from azure_agent_mcp.sandbox import logtables
from azure_agent_mcp.sandbox.access import AuthFailure, Principal, authenticate
from azure_agent_mcp.sandbox.protocol import BadRequestBodyError, Request, Response, json_response
from azure_agent_mcp.sandbox.timespans import TimespanError, parse_timespan

LOGS_AUDIENCES = frozenset({"https://api.loganalytics.io", "https://api.loganalytics.io/"})
QUERY_READ = "Microsoft.OperationalInsights/workspaces/query/read"
WORKSPACE_TYPE = "microsoft.operationalinsights/workspaces"
RECORD_LIMIT = 500_000
MAX_QUERY_CHARS = 64 * 1024
_INVALID = "The request had some invalid properties"


class LogsFailure(Exception):
    def __init__(self, status: int, code: str, message: str, inner: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner


def logs_error(status: int, code: str, message: str, inner: dict[str, Any] | None = None,
               headers: list[tuple[str, str]] | None = None) -> Response:
    error: dict[str, Any] = {"message": message, "code": code, "correlationId": str(uuid.uuid4())}
    if inner:
        error["innererror"] = inner
    return json_response(status, {"error": error}, headers, error_code=code)


def _bad_argument(inner_code: str, message: str, detail: dict[str, Any] | None = None) -> LogsFailure:
    inner: dict[str, Any] = {"code": inner_code, "message": message}
    if detail:
        inner["innererror"] = detail
    return LogsFailure(400, "BadArgumentError", _INVALID, inner)


class LogAnalyticsPlane:
    def __init__(self, state: Any) -> None:
        self.state = state
        self._world: Any = None
        self._anchor = datetime.datetime.now(datetime.timezone.utc)
        self._app_rows: dict[str, list[dict[str, Any]]] = {}

    def handle(self, request: Request, parts: list[str]) -> Response:
        # parts: ["loganalytics", "v1", ...]
        principal = authenticate(self.state.tokens, request, LOGS_AUDIENCES)
        if isinstance(principal, AuthFailure):
            return self._unauthenticated(principal)
        log = principal.log_fields()
        try:
            response = self._serve(request, parts[1:], principal, log)
        except LogsFailure as exc:
            response = logs_error(exc.status, exc.code, exc.message, exc.inner)
        response.log.update(log)
        return response

    def _unauthenticated(self, failure: AuthFailure) -> Response:
        if failure.code == "AuthenticationFailed":
            challenge = f'Bearer authorization_uri="{self.state.authority}", error="invalid_token", ' \
                        f'error_description="{failure.description}"'
            return logs_error(401, "AuthenticationFailed", failure.message, headers=[("www-authenticate", challenge)])
        return logs_error(403, failure.code, failure.message)

    # -- routing --------------------------------------------------------------------------------

    def _serve(self, request: Request, rest: list[str], principal: Principal, log: dict[str, Any]) -> Response:
        low = [r.lower() for r in rest]
        if len(rest) < 3 or low[0] != "v1" or low[-1] != "query":
            raise LogsFailure(404, "PathNotFoundError", f"The requested path does not exist: /{'/'.join(rest)}.")
        if request.method not in ("GET", "POST"):
            raise LogsFailure(405, "MethodNotAllowed", f"The query API accepts GET and POST, not {request.method}.")
        if low[1] == "workspaces" and len(rest) == 4:
            workspace = self._by_customer_id(rest[2])
        else:
            workspace = self._by_resource_id("/" + "/".join(rest[1:-1]))
        log["operation"] = QUERY_READ
        log["scope"] = workspace["id"]
        if not self.state.authorizer.allowed(principal.object_id, QUERY_READ, workspace["id"], data_action=False):
            raise LogsFailure(403, "InsufficientAccessError",
                              "The provided credentials have insufficient access to perform the requested operation",
                              {"code": "AuthorizationFailedError",
                               "message": f"'{principal.display}' (object id {principal.object_id}) does not have "
                                          f"'{QUERY_READ}' on the workspace '{workspace['id']}'."})
        query, timespan = self._arguments(request)
        return self._run(workspace, query, timespan)

    def _by_customer_id(self, customer_id: str) -> dict[str, Any]:
        for resource in self.state.world.resources.values():
            if resource["type"].lower() == WORKSPACE_TYPE and \
                    str(resource["properties"].get("customerId", "")).lower() == customer_id.lower():
                return resource
        raise LogsFailure(404, "WorkspaceNotFoundError", f"The workspace {customer_id} could not be found.")

    def _by_resource_id(self, resource_id: str) -> dict[str, Any]:
        resource = self.state.world.resources.get(resource_id.lower())
        if resource is None:
            raise LogsFailure(404, "ResourceNotFoundError", f"The resource {resource_id} was not found.")
        if resource["type"].lower() != WORKSPACE_TYPE:
            raise LogsFailure(400, "BadArgumentError", _INVALID,
                              {"code": "UnsupportedResourceType",
                               "message": f"The sandbox answers resource-centric queries for Log Analytics workspaces "
                                          f"only, not for {resource['type']}."})
        return resource

    def _arguments(self, request: Request) -> tuple[str, str | None]:
        if request.method == "GET":
            query, timespan = request.query_ci("query"), request.query_ci("timespan")
        else:
            try:
                body = request.json()
            except BadRequestBodyError as exc:
                raise _bad_argument("InvalidBody", f"The request body is not JSON: {exc}.") from None
            if not isinstance(body, dict):
                raise _bad_argument("InvalidBody", "The request body must be a JSON object {query, timespan}.")
            query, timespan = body.get("query"), body.get("timespan")
            if body.get("workspaces"):
                raise _bad_argument("UnsupportedProperty", "The sandbox does not query across workspaces "
                                                           "('workspaces'); query each workspace on its own.")
        if not isinstance(query, str) or not query.strip():
            raise _bad_argument("MissingQuery", "The 'query' property is required: a KQL query over the "
                                                "workspace's tables (AzureActivity, AppRequests).")
        if len(query) > MAX_QUERY_CHARS:
            raise _bad_argument("QueryTooLong", f"The query is {len(query)} characters long; this workspace "
                                                f"accepts at most {MAX_QUERY_CHARS}.")
        if timespan is not None and not isinstance(timespan, str):
            raise _bad_argument("InvalidTimespan", "'timespan' must be an ISO 8601 duration or interval string.")
        return query, timespan or None

    # -- evaluation -----------------------------------------------------------------------------

    def _tables(self, workspace: dict[str, Any], timespan: str | None) -> dict[str, list[dict[str, Any]]]:
        world = self.state.world
        if world is not self._world:  # a reset rebuilt the world: the request log starts again from now
            self._world = world
            self._anchor = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
            self._app_rows = {}
        customer_id = str(workspace["properties"].get("customerId", ""))
        subscription = workspace["id"].split("/")[2]
        key = workspace["id"].lower()
        if key not in self._app_rows:
            sites = [r for r in world.resources.values()
                     if r["type"].lower() == "microsoft.web/sites" and r["id"].split("/")[2].lower() == subscription.lower()]
            self._app_rows[key] = [row for site in sites for row in logtables.app_requests(site, customer_id, self._anchor)]
        events = self.state.activity.events(subscription=subscription) if hasattr(self.state, "activity") else []
        tables = {"AzureActivity": logtables.azure_activity(events, customer_id), "AppRequests": self._app_rows[key]}
        if timespan is not None:
            try:
                start, end = parse_timespan(timespan, datetime.datetime.now(datetime.timezone.utc))
            except TimespanError as exc:
                raise _bad_argument("InvalidTimespan", f"Invalid timespan: {exc}.") from None
            tables = {name: logtables.in_window(rows, start, end) for name, rows in tables.items()}
        return tables

    def _run(self, workspace: dict[str, Any], query: str, timespan: str | None) -> Response:
        from azure_agent_mcp.sandbox import kql

        tables = {name: logtables.as_table(name, rows) for name, rows in self._tables(workspace, timespan).items()}
        try:
            result = kql.evaluate(query, tables)
        except kql.KqlError as exc:
            raise kql_failure(exc) from None
        columns = [{"name": c.name, "type": c.type} for c in result.columns]
        rows = [_wire_row(row, result.columns) for row in result.rows]
        payload: dict[str, Any] = {"tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}]}
        limit = int(getattr(self.state, "logs_record_limit", RECORD_LIMIT))
        if len(rows) > limit:
            payload["tables"][0]["rows"] = rows[:limit]
            payload["error"] = {
                "code": "PartialError",
                "message": "There were some errors when processing your query.",
                "details": [{
                    "code": "EngineError",
                    "message": "Something went wrong processing your query on the server.",
                    "innererror": {
                        "code": "-2133196797",
                        "message": f"Query result set has exceeded the internal record count limit {limit} "
                                   "(E_QUERY_RESULT_SET_TOO_LARGE; see https://aka.ms/kustoquerylimits)",
                        "severity": 2,
                        "severityName": "Error",
                    },
                }],
            }
        return json_response(200, payload)


_KQL_INNER = {
    "syntax": ("SyntaxError", "A recognition error occurred in the query.", "SYN0002"),
    "semantic": ("SemanticError", "A semantic error occurred.", "SEM0100"),
    "unsupported": ("SemanticError", "A semantic error occurred.", "SEM0002"),
}


def kql_failure(exc: Any) -> LogsFailure:
    """A KqlError as Log Analytics' BadArgumentError, the innermost error naming the problem and where."""
    kind = str(getattr(exc, "kind", "semantic") or "semantic").lower()
    code, summary, inner_code = _KQL_INNER.get(kind, _KQL_INNER["semantic"])
    detail: dict[str, Any] = {"code": inner_code, "message": str(getattr(exc, "message", None) or exc)}
    for source, target in (("line", "line"), ("position", "pos"), ("token", "token"), ("operator", "operator")):
        value = getattr(exc, source, None)
        if value is not None:
            detail[target] = value
    return _bad_argument(code, summary, detail)


def _wire_row(row: Any, columns: list[Any]) -> list[Any]:
    values = [row.get(c.name) for c in columns] if isinstance(row, dict) else list(row)
    return [_wire_value(v) for v in values]


def _wire_value(value: Any) -> Any:
    from azure_agent_mcp.sandbox.kql_values import format_datetime, format_timespan

    if isinstance(value, datetime.datetime):
        return format_datetime(value)
    if isinstance(value, datetime.timedelta):
        return format_timespan(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value
