"""Azure Resource Graph in the sandbox: ``POST /providers/Microsoft.ResourceGraph/resources``.

A room under ARM's origin and token (``rooms.ArmRoom``). It evaluates the sandbox's KQL subset
(``sandbox/kql.py``) over the seeded world's ``Resources`` and ``ResourceContainers``, filtered
to the subscriptions asked and to what the caller may read, as Resource Graph filters by RBAC
rather than refusing the query. Requests and answers follow the service's QueryRequest and
QueryResponse (azure-rest-api-specs, specification/resourcegraph); errors are its 400
``BadRequest`` with an ``InvalidQuery`` detail and one naming the problem (``ParserFailure`` with
line, position and token; ``InvalidQueryLanguage`` naming the unsupported operator).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from azure_agent_mcp.sandbox.access import Principal
from azure_agent_mcp.sandbox.armpath import ArmTarget
from azure_agent_mcp.sandbox.kql import KqlError, Table, evaluate, format_datetime, parse, tostring
from azure_agent_mcp.sandbox.protocol import BadRequestBodyError, Request, Response, json_response
from azure_agent_mcp.sandbox.resourcegraph_tables import table_for

API_VERSIONS = ("2018-09-01-preview", "2019-04-01", "2020-04-01-preview", "2021-03-01", "2021-06-01-preview",
                "2022-10-01", "2024-04-01")
# The sandbox's bound on query text, checked before parsing. Resource Graph bounds query length too; its
# published figure was not found, so this is the sandbox's own choice (16 KiB of characters).
MAX_QUERY_LENGTH = 16_384
MAX_TOP = 1000
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_INVALID_QUERY = ("Query is invalid. Please refer to the documentation for the Azure Resource Graph service and fix "
                  "the error before retrying.")
# ARG's table-format column types (ColumnDataType in the REST spec) for KQL's types.
_TABLE_TYPES = {"string": "string", "long": "integer", "int": "integer", "real": "number", "decimal": "number",
                "bool": "boolean", "dynamic": "object", "datetime": "datetime", "timespan": "string"}


class _Refusal(Exception):
    def __init__(self, status: int, code: str, details: list[dict[str, Any]]) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.details = details


def _bad_request(*details: dict[str, Any]) -> _Refusal:
    return _Refusal(400, "BadRequest", list(details))


def _detail(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


class ResourceGraphRoom:
    def __init__(self, state: Any) -> None:
        self.state = state

    def serves(self, method: str, lowered_parts: list[str]) -> bool:
        return method == "POST" and lowered_parts == ["providers", "microsoft.resourcegraph", "resources"]

    def handle(self, request: Request, parts: list[str], target: ArmTarget, principal: Principal) -> Response:
        correlation = request.headers.get("x-ms-client-request-id") or str(uuid.uuid4())
        try:
            return json_response(200, self._answer(request, principal))
        except _Refusal as refusal:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
            body = {"error": {"code": refusal.code,
                              "message": f"Please provide below info when asking for support: timestamp = {stamp}, "
                                         f"correlationId = {correlation}.",
                              "details": refusal.details}}
            codes = [d["code"] for d in refusal.details]
            return json_response(refusal.status, body, error_code=refusal.code, error_detail=",".join(codes))

    # -- the request ---------------------------------------------------------------------------------

    def _answer(self, request: Request, principal: Principal) -> dict[str, Any]:
        api_version = request.query_ci("api-version") or ""
        if api_version not in API_VERSIONS:
            raise _Refusal(400, "NoRegisteredProviderFound", [_detail(
                "NoRegisteredProviderFound",
                f"No registered resource provider found for location 'global' and API version '{api_version}' for "
                f"type 'resources'. The supported api-versions are '{', '.join(API_VERSIONS)}'.")])
        body = self._body(request)
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise _bad_request(_detail("InvalidQuery", "The request must carry 'query', the KQL text to run."))
        if len(query) > MAX_QUERY_LENGTH:
            raise _bad_request(_detail("InvalidQuery", _INVALID_QUERY), _detail(
                "QueryTooLong", f"The query is {len(query)} characters long; the limit is {MAX_QUERY_LENGTH}. "
                                "Shorten the query."))
        subscriptions = self._scopes(body)
        top, skip, result_format = self._options(body, query, subscriptions)
        table = self._evaluate(query, principal, subscriptions)
        total = len(table.rows)
        page = table.rows[skip:skip + top]
        answer: dict[str, Any] = {"totalRecords": total, "count": len(page), "resultTruncated": "false",
                                  "facets": []}
        if skip + top < total:
            answer["$skipToken"] = _seal(skip + top, query, subscriptions)
        if result_format == "table":
            answer["data"] = {"columns": [{"name": c.name, "type": _TABLE_TYPES.get(c.type, "object")}
                                          for c in table.columns],
                              "rows": [[_jsonable(v) for v in row] for row in page]}
        else:
            names = [c.name for c in table.columns]
            answer["data"] = [{n: _jsonable(v) for n, v in zip(names, row)} for row in page]
        return answer

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = request.json()
        except BadRequestBodyError as exc:
            raise _bad_request(_detail("InvalidRequestContent",
                                       f"The request content was invalid and could not be deserialized: '{exc}'."))
        if not isinstance(body, dict):
            raise _bad_request(_detail("InvalidRequestContent",
                                       "The request content must be a QueryRequest JSON object with a 'query'."))
        return body

    def _scopes(self, body: dict[str, Any]) -> list[str]:
        """The subscriptions the query runs over: those named, those of the management groups named, or all."""
        world = self.state.world
        subs = body.get("subscriptions")
        groups = body.get("managementGroups")
        chosen: list[str] = []
        if subs is not None:
            if not isinstance(subs, list) or not all(isinstance(s, str) for s in subs):
                raise _bad_request(_detail("InvalidSubscriptions", "'subscriptions' must be a list of subscription ids."))
            bad = [s for s in subs if not _GUID.match(s)]
            if bad:
                raise _bad_request(_detail("InvalidSubscriptionId",
                                           f"The subscription id '{bad[0][:64]}' is not a GUID."))
            chosen.extend(s.lower() for s in subs)
        if groups is not None:
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                raise _bad_request(_detail("InvalidManagementGroups",
                                           "'managementGroups' must be a list of management group names."))
            for group in groups:
                # the sandbox's one management group is the Tenant Root Group, named by the tenant id
                if group.lower() != self.state.tenant_id.lower():
                    raise _bad_request(_detail("ManagementGroupNotFound",
                                               f"The management group '{group[:90]}' was not found."))
                chosen.extend(s.lower() for s in world.subscriptions)
        if subs is None and groups is None:
            chosen = [s.lower() for s in world.subscriptions]
        return sorted(set(chosen))

    def _options(self, body: dict[str, Any], query: str, subscriptions: list[str]) -> tuple[int, int, str]:
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise _bad_request(_detail("InvalidOptions", "'options' must be a QueryRequestOptions object."))
        top = options.get("$top", MAX_TOP)
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP:
            raise _bad_request(_detail("InvalidTop", f"'$top' must be a whole number from 1 to {MAX_TOP}."))
        skip = 0
        token = options.get("$skipToken")
        if token is not None:
            if not isinstance(token, str):
                raise _bad_request(_detail("InvalidSkipToken", "'$skipToken' must be the string a previous page gave."))
            skip = _unseal(token, query, subscriptions)
        if "$skip" in options:
            skip = options["$skip"]
            if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
                raise _bad_request(_detail("InvalidSkip", "'$skip' must be a whole number of 0 or more."))
        result_format = options.get("resultFormat", "objectArray")
        if not isinstance(result_format, str) or result_format.lower() not in ("objectarray", "table"):
            raise _bad_request(_detail("InvalidResultFormat", "'resultFormat' must be 'objectArray' or 'table'."))
        partial = options.get("allowPartialScopes", False)
        if not isinstance(partial, bool):
            raise _bad_request(_detail("InvalidOptions", "'allowPartialScopes' must be true or false."))
        return top, skip, "table" if result_format.lower() == "table" else "objectArray"

    def _evaluate(self, query: str, principal: Principal, subscriptions: list[str]) -> Table:
        try:
            parsed = parse(query)
            table = table_for(parsed.table, self.state, principal, subscriptions)
            if table is None:
                raise _bad_request(_detail("InvalidQuery", _INVALID_QUERY), _detail(
                    "DisallowedLogicalTableName",
                    f"Logical table '{parsed.table}' is invalid, unsupported or disallowed. The tables are "
                    "Resources and ResourceContainers."))
            return evaluate(parsed, {parsed.table: table})
        except KqlError as error:
            raise _bad_request(_detail("InvalidQuery", _INVALID_QUERY), _kql_detail(error)) from None


def _kql_detail(error: KqlError) -> dict[str, Any]:
    where = {"line": error.line if error.line is not None else -1,
             "characterPositionInLine": error.position if error.position is not None else -1,
             "token": error.token if error.token is not None else ""}
    if error.kind == "syntax":
        return _detail("ParserFailure", f"ParserFailure: {error.message}", **where)
    if error.kind == "unsupported":
        return _detail("InvalidQueryLanguage", f"InvalidQueryLanguage: {error.message}", **where,
                       operator=error.operator)
    return _detail("SemanticError", error.message, **where)


def _digest(query: str, subscriptions: list[str]) -> str:
    return hashlib.sha256(json.dumps([query, subscriptions]).encode()).hexdigest()[:16]


def _seal(offset: int, query: str, subscriptions: list[str]) -> str:
    raw = json.dumps({"o": offset, "h": _digest(query, subscriptions)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unseal(token: str, query: str, subscriptions: list[str]) -> int:
    """The offset a skip token carries; it must come from the same query over the same scopes."""
    refusal = _bad_request(_detail("InvalidSkipToken", "The '$skipToken' is not one this query gave: send it back "
                                                       "with the same query and subscriptions, unchanged."))
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise refusal from None
    if (not isinstance(state, dict) or state.get("h") != _digest(query, subscriptions)
            or isinstance(state.get("o"), bool) or not isinstance(state.get("o"), int) or state["o"] < 0):
        raise refusal
    return int(state["o"])


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, timedelta):
        return tostring(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
