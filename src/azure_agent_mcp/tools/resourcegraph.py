"""``resource_graph_query``: KQL over Azure Resource Graph, the read-only answer to "which of my resources...".

The query goes through azure-mgmt-resourcegraph's ``ResourceGraphClient.resources`` on the guarded
transport. The guard decides it at the subscriptions (or management group) its body names, so the
plan sends the same scopes in the same body shape. ARG's ``$skipToken`` goes out sealed
(``tools/continuation.py``) and only continues the same query over the same scopes in the same
agent session. A query Resource Graph refuses (syntax, an unsupported operator, an over-long text)
comes back as a tool error carrying Resource Graph's codes, message and position.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from azure_agent_mcp.tools import arguments
from azure_agent_mcp.tools import continuation as continuation_tokens
from azure_agent_mcp.tools.base import AzureTool, DeclaredOperation, PlannedRequest, ToolInputError, ToolOutput, clamp_top
from azure_agent_mcp.tools.clients import AzureSession
from azure_agent_mcp.tools.schemas import ANY_OBJECT, INTEGER, NULLABLE_STRING, listing

TOOL = "resource_graph_query"
API_VERSION = "2021-03-01"  # azure-mgmt-resourcegraph 8's default
PATH = "/providers/Microsoft.ResourceGraph/resources"
MAX_SUBSCRIPTIONS = 1000
_MANAGEMENT_GROUP = re.compile(r"[A-Za-z0-9_().-]{1,90}")


class ResourceGraphQueryError(ToolInputError):
    """Resource Graph refused the query; ``code`` is its most specific error code."""

    def __init__(self, code: str, message: str, hint: str) -> None:
        super().__init__(message, hint)
        self.code = code


def _scopes(azure: AzureSession, subscriptions: list[str] | None,
            management_group: str | None) -> tuple[list[str] | None, list[str] | None]:
    if management_group is not None:
        if subscriptions:
            raise ToolInputError("Give subscriptions or management_group, not both.",
                                 hint="A management group query covers the subscriptions under it.")
        if not _MANAGEMENT_GROUP.fullmatch(management_group):
            raise ToolInputError(f"'{management_group[:100]}' is not a management group name.",
                                 hint="A management group name (its id) has 1-90 letters, digits, '-', '_', '.', '(' "
                                 "or ')'.")
        return None, [management_group]
    chosen = subscriptions or [azure.subscription_id(None)]
    if len(chosen) > MAX_SUBSCRIPTIONS:
        raise ToolInputError(f"At most {MAX_SUBSCRIPTIONS} subscriptions per query, got {len(chosen)}.")
    return list(dict.fromkeys(arguments.subscription_id(s).lower() for s in chosen)), None


def _listing(query: str, subscriptions: list[str] | None, groups: list[str] | None) -> str:
    """What a continuation continues: this query text over these scopes."""
    return "arg:" + hashlib.sha256(json.dumps([query, subscriptions, groups]).encode()).hexdigest()[:32]


def _request_body(query: str, subscriptions: list[str] | None, groups: list[str] | None, top: int,
                  skip_token: str | None) -> dict[str, Any]:
    """The QueryRequest as it goes on the wire (the body the guard reads its scopes from)."""
    options: dict[str, Any] = {"$top": top, "resultFormat": "objectArray"}
    if skip_token:
        options["$skipToken"] = skip_token
    body: dict[str, Any] = {"query": query, "options": options}
    if subscriptions is not None:
        body["subscriptions"] = subscriptions
    if groups is not None:
        body["managementGroups"] = groups
    return body


def _prepared(azure: AzureSession, query: str, subscriptions: list[str] | None, management_group: str | None,
              top: int | None, continuation: str | None) -> dict[str, Any]:
    if not isinstance(query, str) or not query.strip():
        raise ToolInputError("query is empty.", hint="Pass a KQL query, e.g. Resources | summarize count() by type.")
    subs, groups = _scopes(azure, subscriptions, management_group)
    skip_token = None
    if continuation:
        skip_token, _ = continuation_tokens.unseal(continuation, tool=TOOL, session_id=azure.session.id,
                                                   scope=_listing(query, subs, groups))
    return _request_body(query, subs, groups, clamp_top(top), skip_token)


def _refusal(error: Any) -> ResourceGraphQueryError:
    """Resource Graph's 400 as a tool error: its codes, the detail's message and where in the query."""
    try:
        body = json.loads(error.response.text())
        outer = body["error"]
    except (AttributeError, KeyError, TypeError, ValueError):
        raise error from None
    details = [d for d in outer.get("details") or [] if isinstance(d, dict)]
    specific = next((d for d in reversed(details) if d.get("code") != "InvalidQuery"), details[-1] if details else {})
    code = str(specific.get("code") or outer.get("code") or "BadRequest")
    said = str(specific.get("message", "")).removeprefix(f"{code}: ")
    message = f"Resource Graph refused the query ({outer.get('code')}/{code}): {said}"
    line, position = specific.get("line"), specific.get("characterPositionInLine")
    if isinstance(line, int) and line >= 0:
        message += f" (line {line}, position {position}, at '{specific.get('token', '')}')"
    hints = {
        "ParserFailure": "Fix the query text at that position.",
        "InvalidQueryLanguage": "Rewrite the query without that operator.",
        "QueryTooLong": "Shorten the query.",
        "DisallowedLogicalTableName": "Query the Resources or ResourceContainers table.",
    }
    return ResourceGraphQueryError(code, message, hints.get(code, "Fix the query and run it again."))


def resource_graph_query(
    azure: AzureSession,
    query: str,
    subscriptions: list[str] | None = None,
    management_group: str | None = None,
    top: int | None = None,
    continuation: str | None = None,
) -> ToolOutput:
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    body = _prepared(azure, query, subscriptions, management_group, top, continuation)
    options = body["options"]
    request = QueryRequest(
        query=query, subscriptions=body.get("subscriptions"), management_groups=body.get("managementGroups"),
        options=QueryRequestOptions(top=options["$top"], skip_token=options.get("$skipToken"),
                                    result_format="objectArray"))
    try:
        answer = azure.resource_graph().resources(request)
    except HttpResponseError as error:
        if error.status_code == 400:
            raise _refusal(error) from None
        raise
    rows = answer.data if isinstance(answer.data, list) else []
    next_token = None
    if answer.skip_token:
        next_token = continuation_tokens.seal(
            answer.skip_token, tool=TOOL, session_id=azure.session.id,
            scope=_listing(query, body.get("subscriptions"), body.get("managementGroups")))
    where = (f"management group {management_group}" if management_group
             else f"{len(body['subscriptions'])} subscription(s)")
    summary = (f"{len(rows)} of {answer.total_records} row(s) from Resource Graph over {where}"
               + ("; more with continuation." if next_token else "."))
    return ToolOutput(summary, {
        "items": rows, "total_records": answer.total_records, "result_truncated": answer.result_truncated == "true",
        "subscriptions": body.get("subscriptions"), "management_group": management_group, "continuation": next_token,
    })


def _plan(
    azure: AzureSession,
    query: str,
    subscriptions: list[str] | None = None,
    management_group: str | None = None,
    top: int | None = None,
    continuation: str | None = None,
) -> list[PlannedRequest]:
    body = _prepared(azure, query, subscriptions, management_group, top, continuation)
    return [PlannedRequest("POST", azure.arm_url(PATH, API_VERSION), json.dumps(body).encode("utf-8"))]


TOOLS = (
    AzureTool(
        name=TOOL,
        description=(
            "KQL over Resource Graph (Resources, ResourceContainers) in subscriptions (default: the default one) "
            "or a management_group; continuation needs the same query and scopes."
        ),
        run=resource_graph_query,
        plan=_plan,
        operations=(DeclaredOperation("Microsoft.ResourceGraph/resources/read"),),
        output_schema=listing(ANY_OBJECT, "total_records", total_records=INTEGER,
                              continuation=NULLABLE_STRING),
    ),
)
