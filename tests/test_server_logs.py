"""``log_query`` through `serve` over stdio, with the official MCP client, against the session sandbox."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client, StdioServerParameters
from server_helpers import audit_records

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _params(sandbox, tmp_path: Path, *extra: str, session: str | None = None) -> StdioServerParameters:
    env = dict(os.environ, AZURE_AGENT_MCP_STATE_DIR=str(tmp_path / "state"))
    for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG",
                "AZURE_AGENT_MCP_CREDENTIAL"):
        env.pop(key, None)
    if session is not None:
        env["COPILOT_AGENT_SESSION_ID"] = session
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "azure_agent_mcp", "serve", "--sandbox", str(sandbox.manifest_path),
              "--audit-log", str(tmp_path / "audit.jsonl"), *extra],
        env=env,
    )


def _workspace(sandbox, name: str) -> dict[str, Any]:
    return next(w for w in sandbox.manifest["workspaces"] if w["name"] == name)


def _error(result: Any) -> dict[str, Any]:
    return (result.structured_content or {}).get("error") or {}


def _records(result: Any) -> list[dict[str, Any]]:
    table = result.structured_content["tables"][0]
    names = [c["name"] for c in table["columns"]]
    return [dict(zip(names, row)) for row in table["rows"]]


async def test_log_query_under_read_only(sandbox, tmp_path):
    prod = _workspace(sandbox, "log-sandbox-prod")
    session = f"logs-ro-{uuid.uuid4().hex[:8]}"
    since = sandbox.last_seq()
    async with Client(_params(sandbox, tmp_path, session=session)) as client:
        listed = await client.list_tools()
        tool = next(t for t in listed.tools if t.name == "log_query")
        assert tool.annotations.read_only_hint is True and tool.annotations.destructive_hint is not True
        explained = await client.call_tool("policy_explain", {"tool": "log_query"})
        assert [(o["operation"], o["effect"]) for o in explained.structured_content["operations"]] == [
            ("Microsoft.OperationalInsights/workspaces/query/read", "allow")]
        schema = tool.output_schema
        assert schema is not None and len(json.dumps(schema)) < 1500

        # "why is this app returning 500s": by name, from the workspace named by name + group
        why = await client.call_tool("log_query", {
            "workspace": "log-sandbox-prod", "resource_group": "rg-prod-app", "timespan": "PT1H",
            "query": "AppRequests | where ResultCode == '500' | summarize failures = count(), "
                     "slowest = max(DurationMs) by Name, AppRoleName"})
        assert not why.is_error, why.content
        jsonschema.validate(why.structured_content, schema)
        rows = _records(why)
        assert [(r["Name"], r["AppRoleName"]) for r in rows] == [("POST /api/orders", "app-orders-prod")]
        assert rows[0]["failures"] >= 5 and rows[0]["slowest"] > 2900
        assert why.structured_content["status"] == "Success" and why.structured_content["timespan"] == "PT1H"

        # rows are capped, and the answer says so; datetimes are ISO 8601 strings
        capped = await client.call_tool("log_query", {"workspace": prod["id"], "query": "AppRequests", "top": 5,
                                                      "timespan": "P2D"})
        assert not capped.is_error, capped.content
        jsonschema.validate(capped.structured_content, schema)
        table = capped.structured_content["tables"][0]
        assert len(table["rows"]) == 5 and table["row_count"] == 720 and table["truncated"] is True
        assert "first 5" in capped.content[0].text
        at = _records(capped)[0]["TimeGenerated"]
        assert isinstance(at, str) and at.endswith("Z") and "T" in at

        # KQL errors: Log Analytics' shape, passed on naming the problem
        syntax = await client.call_tool("log_query", {"workspace": prod["id"], "query": "AppRequests | whre x == 1"})
        assert syntax.is_error
        error = _error(syntax)
        assert error["code"] == "BadArgumentError" and error["status"] == 400
        assert "SyntaxError" in error["message"] and "whre" in error["message"] and "line 1" in error["message"]
        unsupported = await client.call_tool("log_query", {
            "workspace": prod["id"], "query": "AppRequests | join (AzureActivity) on CorrelationId"})
        assert unsupported.is_error and "join" in _error(unsupported)["message"]
        assert "SemanticError" in _error(unsupported)["message"]
        long_query = await client.call_tool("log_query", {
            "workspace": prod["id"], "query": "AppRequests | take 1 //" + "x" * 70_000})
        assert long_query.is_error and "QueryTooLong" in _error(long_query)["message"]

        # a timespan in the wrong format: a tool error naming the format, nothing sent
        before_bad = sandbox.last_seq()
        bad = await client.call_tool("log_query", {"workspace": prod["id"], "query": "AppRequests", "timespan": "1h"})
        assert bad.is_error and _error(bad)["code"] == "InvalidArgument"
        assert "ISO 8601" in _error(bad)["message"] and "PT1H" in _error(bad)["hint"]
        months = await client.call_tool("log_query", {"workspace": prod["id"], "query": "AppRequests", "timespan": "P1M"})
        assert months.is_error and "months" in _error(months)["message"]
        assert sandbox.requests(kind="logs", since=before_bad) == []

        # the GUID form names no ARM scope: refused by the guard, nothing sent
        before_guid = sandbox.last_seq()
        guid = await client.call_tool("log_query", {"workspace": prod["customer_id"], "query": "AppRequests | take 1"})
        assert guid.is_error
        error = _error(guid)
        assert error["code"] == "PolicyDenied" and error["rule"] == "unmappable request"
        assert "resource id" in error["message"]
        assert sandbox.requests(kind="logs", since=before_guid) == []

        # the server keeps serving after bad input
        ok = await client.call_tool("log_query", {"workspace": prod["id"], "query": "AppRequests | count"})
        assert not ok.is_error and 700 <= _records(ok)[0]["Count"] <= 720  # the default timespan, P1D

    sent = sandbox.requests(kind="logs", since=since)
    assert sent and all(e["token_session"] == session for e in sent)
    assert {e["operation"] for e in sent} == {"Microsoft.OperationalInsights/workspaces/query/read"}
    assert all("azure-agent-mcp/" in (e.get("user_agent") or "") and e.get("correlation_id") for e in sent)
    # every request sent has its intent record, decided on the plane, operation and scope the sandbox saw
    audit = tmp_path / "audit.jsonl"
    intents = [r for r in audit_records(audit, "intent") if r.get("plane") == "loganalytics"]
    assert sorted(r["path"] for r in intents) == sorted(e["raw_path"] for e in sent)
    assert {(r["operation"], r["scope"]) for r in intents} == {
        ("Microsoft.OperationalInsights/workspaces/query/read", prod["id"])}
    refused = [r for r in audit_records(audit) if r.get("tool") == "log_query" and "workspaces/" + prod["customer_id"]
               in json.dumps(r)]
    assert refused, "the GUID call left no audit record"
    raw = audit.read_bytes()
    assert b"eyJ" not in raw  # no token in the audit


async def test_azure_activity_shows_what_the_agent_session_did(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    session = f"logs-act-{uuid.uuid4().hex[:8]}"
    group = f"rg-agent-{uuid.uuid4().hex[:6]}"
    prod = _workspace(sandbox, "log-sandbox-prod")
    async with Client(_params(sandbox, tmp_path, "--policy", "no-secrets", session=session)) as client:
        created = await client.call_tool("group_create", {"name": group, "location": "eastus"})
        assert not created.is_error, created.content
        found = await client.call_tool("log_query", {
            "workspace": prod["id"], "timespan": "PT15M",
            "query": f"AzureActivity | where Claims_d.xms_cli_ses == '{session}' | project TimeGenerated, "
                     "OperationNameValue, Caller, ActivityStatusValue, ResourceGroup, CorrelationId, Claims_d"})
        assert not found.is_error, found.content
        listed = await client.list_tools()
        jsonschema.validate(found.structured_content, next(t for t in listed.tools if t.name == "log_query").output_schema)
    rows = _records(found)
    assert len(rows) == 1
    row = rows[0]
    assert row["OperationNameValue"] == "MICROSOFT.RESOURCES/SUBSCRIPTIONS/RESOURCEGROUPS/WRITE"
    assert row["ResourceGroup"] == group.upper() and row["ActivityStatusValue"] == "Success"
    assert row["Caller"] == "developer@sandbox.onmicrosoft.com"
    assert row["Claims_d"]["xms_cli_ses"] == session  # dynamic values come back as JSON objects
    # the event's correlation id is the one the group_create call sent (and audited)
    arm = [e for e in sandbox.requests(kind="arm") if e["method"] == "PUT" and group in e["path"]]
    assert [e["correlation_id"] for e in arm] == [row["CorrelationId"]]


async def test_a_workspace_the_caller_cannot_read_is_explained(sandbox, tmp_path):
    dev = _workspace(sandbox, "log-sandbox-dev")  # the agent identity is Reader on subscription A only
    since = sandbox.last_seq()
    async with Client(_params(sandbox, tmp_path, "--credential", "agent-identity")) as client:
        refused = await client.call_tool("log_query", {"workspace": dev["id"], "query": "AppRequests | take 1"})
        allowed = await client.call_tool("log_query", {"workspace": _workspace(sandbox, "log-sandbox-prod")["id"],
                                                       "query": "AppRequests | count"})
    assert refused.is_error
    error = _error(refused)
    assert error["status"] == 403 and error["code"] == "InsufficientAccessError"
    assert "workspaces/query/read" in error["message"] and dev["id"] in error["message"]
    assert "Log Analytics Reader" in error["hint"]
    assert not allowed.is_error, allowed.content
    sent = sandbox.requests(kind="logs", since=since)
    assert [e["status"] for e in sent] == [403, 200]
