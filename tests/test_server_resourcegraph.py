"""resource_graph_query through `serve` over stdio, with the official MCP client, against the session sandbox."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jsonschema
import pytest
from mcp import Client, StdioServerParameters
from server_helpers import audit_records, error_of

pytestmark = pytest.mark.anyio

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
SUB_B = "5a1db0c5-b000-4000-a000-00000000000b"
RG_PATH = "/providers/Microsoft.ResourceGraph/resources"
TLS_QUERY = ("Resources | where type =~ 'microsoft.storage/storageaccounts' "
             "| where properties.minimumTlsVersion != 'TLS1_2' "
             "| project name, tls = tostring(properties.minimumTlsVersion) | order by name asc")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _params(sandbox, tmp_path: Path, *extra: str, **env_extra: str) -> StdioServerParameters:
    env = dict(os.environ, AZURE_AGENT_MCP_STATE_DIR=str(tmp_path / "state"), **env_extra)
    for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG",
                "AZURE_AGENT_MCP_CREDENTIAL"):
        env.pop(key, None)
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "azure_agent_mcp", "serve", "--sandbox", str(sandbox.manifest_path),
              "--audit-log", str(tmp_path / "audit.jsonl"), *extra],
        env=env,
    )


def _graph_requests(sandbox, since: int) -> list[dict]:
    return [r for r in sandbox.requests(kind="arm", since=since) if r["path"].lower() == RG_PATH.lower()]


async def _schema(client) -> dict:
    listed = await client.list_tools()
    tool = next(t for t in listed.tools if t.name == "resource_graph_query")
    assert tool.annotations.read_only_hint is True and not tool.annotations.destructive_hint
    assert "Resources" in tool.description and "ResourceContainers" in tool.description
    return tool.output_schema


async def test_a_real_question_paging_and_refused_queries(sandbox, tmp_path):
    since = sandbox.last_seq()
    async with Client(_params(sandbox, tmp_path)) as client:
        schema = await _schema(client)
        answer = await client.call_tool("resource_graph_query", {"query": TLS_QUERY, "subscriptions": [SUB_A, SUB_B]})
        assert not answer.is_error, answer.content
        jsonschema.validate(answer.structured_content, schema)
        assert answer.structured_content["items"] == [{"name": "stdevshared01", "tls": "TLS1_1"},
                                                      {"name": "stprodlogs01", "tls": "TLS1_0"}]
        assert answer.structured_content["total_records"] == 2 and answer.structured_content["continuation"] is None
        assert (len(_graph_requests(sandbox, since))) == 1

        # paging: every page continues the same query over the same scopes, and together they are the listing
        listing = "Resources | project id, name | order by name asc"
        everything = await client.call_tool("resource_graph_query", {"query": listing, "top": 1000})
        expected = everything.structured_content["items"]
        assert len(expected) == everything.structured_content["total_records"] > 10
        pages, token = [], None
        while True:
            arguments = {"query": listing, "top": 4}
            if token:
                arguments["continuation"] = token
            page = await client.call_tool("resource_graph_query", arguments)
            assert not page.is_error, page.content
            jsonschema.validate(page.structured_content, schema)
            pages.extend(page.structured_content["items"])
            token = page.structured_content["continuation"]
            if not token:
                break
            assert len(page.structured_content["items"]) == 4
        assert pages == expected

        first = await client.call_tool("resource_graph_query", {"query": listing, "top": 2})
        before = sandbox.last_seq()
        other = await client.call_tool("resource_graph_query", {"query": "Resources | project name", "top": 2,
                                                                "continuation": first.structured_content["continuation"]})
        assert other.is_error and error_of(other)["code"] == "InvalidContinuation"
        assert _graph_requests(sandbox, before) == []

        # Resource Graph's refusals, passed on as clear tool errors; the server keeps serving
        syntax = await client.call_tool("resource_graph_query", {"query": "Resources\n| where name == 'x' junk"})
        assert syntax.is_error
        error = error_of(syntax)
        assert error["code"] == "ParserFailure"
        assert "line 2, position 20, at 'junk'" in error["message"] and "BadRequest" in error["message"]

        join = await client.call_tool("resource_graph_query",
                                      {"query": "Resources | join (ResourceContainers) on subscriptionId"})
        assert join.is_error and error_of(join)["code"] == "InvalidQueryLanguage"
        assert "'join'" in error_of(join)["message"] and error_of(join)["hint"]

        text = "Resources | where name == '" + "x" * 20000 + "'"
        long = await client.call_tool("resource_graph_query", {"query": text})
        assert long.is_error and error_of(long)["code"] == "QueryTooLong"
        assert f"{len(text)} characters" in error_of(long)["message"]

        empty = await client.call_tool("resource_graph_query", {"query": "  "})
        assert empty.is_error and error_of(empty)["code"] == "InvalidArgument"

        still = await client.call_tool("resource_graph_query", {"query": "Resources | count"})
        assert not still.is_error and still.structured_content["items"][0]["Count"] > 10

    intents = [r for r in audit_records(tmp_path / "audit.jsonl", kind="intent")
               if r["operation"] == "Microsoft.ResourceGraph/resources/read"]
    assert intents[0]["scopes"] == [f"/subscriptions/{SUB_A}", f"/subscriptions/{SUB_B}"]
    assert all(r["scopes"] == [f"/subscriptions/{SUB_A}"] for r in intents[1:])  # the default subscription


async def test_a_policy_limited_to_another_subscription_refuses_before_anything_is_sent(sandbox, tmp_path):
    policy = tmp_path / "only-dev.json"
    policy.write_text(json.dumps({"Name": "only-dev", "Actions": ["*/read"],
                                  "AssignableScopes": [f"/subscriptions/{SUB_B}"]}))
    since = sandbox.last_seq()
    async with Client(_params(sandbox, tmp_path, "--policy", str(policy))) as client:
        refused = await client.call_tool("resource_graph_query", {"query": "Resources | count"})  # default: A
        both = await client.call_tool("resource_graph_query", {"query": "Resources | count",
                                                                "subscriptions": [SUB_B, SUB_A]})
        tenant = await client.call_tool("resource_graph_query", {"query": "Resources | count",
                                                                  "management_group": sandbox.manifest["tenant_id"]})
        assert _graph_requests(sandbox, since) == []
        allowed = await client.call_tool("resource_graph_query", {"query": "Resources | distinct subscriptionId",
                                                                   "subscriptions": [SUB_B]})
    for result in (refused, both):
        assert result.is_error
        error = error_of(result)
        assert error["code"] == "PolicyDenied" and error["scope"] == f"/subscriptions/{SUB_A}"
        assert error["operation"] == "Microsoft.ResourceGraph/resources/read"
    assert error_of(tenant)["code"] == "PolicyDenied" and "managementGroups" in error_of(tenant)["scope"]
    assert not allowed.is_error and allowed.structured_content["items"] == [{"subscriptionId": SUB_B}]
    assert len(_graph_requests(sandbox, since)) == 1


async def test_resource_graph_shows_only_what_the_identity_may_read(sandbox, tmp_path):
    count = "Resources | summarize n = count() by resourceGroup | order by resourceGroup asc"
    async with Client(_params(sandbox, tmp_path / "developer")) as developer:
        everything = await developer.call_tool("resource_graph_query", {"query": count})
    sp = sandbox.manifest["service_principals"][0]
    automation = _params(sandbox, tmp_path / "automation", "--credential", "service-principal",
                         AZURE_CLIENT_ID=sp["client_id"], AZURE_CLIENT_SECRET=sp["client_secret"],
                         AZURE_TENANT_ID=sandbox.manifest["tenant_id"])
    async with Client(automation) as client:  # Contributor on rg-prod-app only
        narrow = await client.call_tool("resource_graph_query", {"query": count})
    assert not everything.is_error and not narrow.is_error, (everything.content, narrow.content)
    groups = {r["resourceGroup"]: r["n"] for r in everything.structured_content["items"]}
    assert set(groups) == {"rg-prod-app", "rg-prod-data", "rg-prod-network"}
    assert narrow.structured_content["items"] == [{"resourceGroup": "rg-prod-app", "n": groups["rg-prod-app"]}]
    assert sp["client_secret"] not in (tmp_path / "automation" / "audit.jsonl").read_text()
