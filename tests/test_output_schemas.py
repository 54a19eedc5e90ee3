"""Every tool's outputSchema: a valid JSON Schema, met by what the tool returns through `serve`, redacted or not.

The table ``CASES`` holds one successful call per catalog tool. A tool added to the catalog without a
case fails ``test_every_catalog_tool_has_a_case`` until one is added here (one dict entry). The
calls go through ``serve`` over stdio with the official MCP client, which validates
``structuredContent`` against the listed ``outputSchema`` itself; each result is validated again
here with jsonschema, and once more after the server's secret withholding (the form a policy that
denies secrets returns).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mcp import Client, StdioServerParameters
from mcp_types import ElicitResult

from azure_agent_mcp.tools import catalog

pytestmark = pytest.mark.anyio

TOOLS_LIST_LIMIT = 12 * 1024
DEVOPS_TOOLS_LIST_LIMIT = 17 * 1024 + 512
"""tools/list with --devops-organization (every tool, the 14 devops_* ones too); the goal is 16 KiB."""
READER_ROLE = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _sub(manifest: dict[str, Any]) -> str:
    return manifest["subscriptions"][0]["id"]


def _app(manifest: dict[str, Any]) -> str:
    return f"/subscriptions/{_sub(manifest)}/resourceGroups/rg-prod-app"


def _account(manifest: dict[str, Any]) -> str:
    return _app(manifest) + "/providers/Microsoft.Storage/storageAccounts/stprodapp01"


def _vm(manifest: dict[str, Any]) -> str:
    return (f"/subscriptions/{_sub(manifest)}/resourceGroups/rg-prod-network/providers/Microsoft.Compute/"
            "virtualMachines/vm-worker-01")


# One successful call per tool: name -> arguments, built from the sandbox manifest. Order matters only for
# group_create / resource_delete (the group created is the one deleted).
CASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "whoami": lambda m: {},
    "policy_explain": lambda m: {"operation": "Microsoft.Web/sites/restart/action", "scope": _app(m)},
    "subscription_list": lambda m: {},
    "group_list": lambda m: {"subscription": _sub(m)},
    "resource_list": lambda m: {"resource_group": "rg-prod-app", "top": 3},
    "resource_get": lambda m: {"resource_id": _account(m)},
    "arm_request": lambda m: {"method": "GET", "path": f"/subscriptions/{_sub(m)}/resourcegroups"},
    "group_create": lambda m: {"name": "rg-schema-check", "location": "westeurope", "tags": {"made-by": "schemas"}},
    "resource_delete": lambda m: {"resource_id": f"/subscriptions/{_sub(m)}/resourceGroups/rg-schema-check"},
    "keyvault_secret_list": lambda m: {"vault": m["vaults"][0]["name"]},
    "keyvault_secret_get": lambda m: {"vault": "kv-sandbox-prod", "name": "db-password"},
    "storage_account_list": lambda m: {"resource_group": "rg-prod-app"},
    "storage_account_keys": lambda m: {"resource_id": _account(m)},
    "role_assignment_list": lambda m: {"scope": f"/subscriptions/{_sub(m)}"},
    "role_definition_list": lambda m: {"role_name": "Reader"},
    "deployment_list": lambda m: {"resource_group": "rg-prod-app"},
    "deployment_get": lambda m: {"name": "deploy-orders-storage", "resource_group": "rg-prod-app"},
    "resource_graph_query": lambda m: {
        "query": "Resources | where type =~ 'microsoft.storage/storageaccounts' | project name, resourceGroup, "
                 "tls = tostring(properties.minimumTlsVersion) | order by name asc",
        "top": 2,
    },
    "log_query": lambda m: {
        "workspace": next(w["id"] for w in m["workspaces"] if w["name"] == "log-sandbox-prod"),
        "query": "AppRequests | where ResultCode == '500' | summarize failures = count() by Name",
        "timespan": "PT1H",
    },
    "activity_log_list": lambda m: {"timespan": "PT1H", "top": 5},
    "metrics_list": lambda m: {"resource_id": _vm(m)},
    "metrics_get": lambda m: {"resource_id": _vm(m), "metric_names": ["Percentage CPU"], "timespan": "PT30M",
                              "interval": "PT5M", "aggregation": ["Average", "Maximum"]},
    # Azure DevOps (serve --devops-organization): later cases use what earlier ones made (MADE)
    "devops_project_list": lambda m: {},
    "devops_repo_list": lambda m: {"project": "Storefront"},
    "devops_work_item_create": lambda m: {"project": "Storefront", "type": "Task", "title": "schema check"},
    "devops_work_item_get": lambda m: {"project": "Storefront", "id": MADE["devops_work_item_create"]["id"]},
    "devops_work_item_query": lambda m: {"project": "Storefront", "wiql": "SELECT [System.Id] FROM WorkItems WHERE "
                                         "[System.Title] = 'schema check'", "top": 5},
    "devops_work_item_update": lambda m: {"project": "Storefront", "id": MADE["devops_work_item_create"]["id"],
                                          "patch": [{"op": "add", "path": "/fields/System.State", "value": "Active"}]},
    "devops_work_item_comment": lambda m: {"project": "Storefront", "id": MADE["devops_work_item_create"]["id"],
                                           "text": "checked"},
    "devops_branch_list": lambda m: {"project": "Storefront", "repo": "storefront-web"},
    "devops_file_get": lambda m: {"project": "Storefront", "repo": "storefront-web", "path": "/README.md"},
    "devops_push": lambda m: {"project": "Storefront", "repo": "storefront-web", "branch": f"schemas/{uuid.uuid4().hex[:8]}",
                              "message": "schema check", "changes": [{"path": "/schemas.txt", "content": "ok"}]},
    "devops_pr_create": lambda m: {"project": "Storefront", "repo": "storefront-web", "title": "schema check",
                                   "source_branch": MADE["devops_push"]["branch"],
                                   "work_items": [MADE["devops_work_item_create"]["id"]]},
    "devops_pr_get": lambda m: {"project": "Storefront", "repo": "storefront-web",
                                "pull_request_id": MADE["devops_pr_create"]["pullRequestId"]},
    "devops_pr_thread_reply": lambda m: {"project": "Storefront", "repo": "storefront-web", "content": "checked",
                                         "pull_request_id": MADE["devops_pr_create"]["pullRequestId"]},
    "devops_pr_threads_list": lambda m: {"project": "Storefront", "repo": "storefront-web",
                                         "pull_request_id": MADE["devops_pr_create"]["pullRequestId"]},
    # listed only with an Elevation block: run under read-only + Elevation as the reader (ELEVATION_TOOLS)
    "access_request": lambda m: {"operations": ["Microsoft.Web/sites/restart/action"], "duration": "PT10M",
                                 "scope": _app(m) + "/providers/Microsoft.Web/sites/app-orders-prod",
                                 "justification": "output schema check"},
    "access_list": lambda m: {},
    "access_revoke": lambda m: {"grant_id": "from access_request"},
}
ELEVATION_TOOLS = ("access_request", "access_list", "access_revoke")
MADE: dict[str, dict[str, Any]] = {}
"""The results of the cases run so far (the Azure DevOps cases act on what earlier ones created)."""


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["AZURE_AGENT_MCP_STATE_DIR"] = str(tmp_path / "state")
    for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG"):
        env.pop(key, None)
    return env


def _serve(sandbox: Any, tmp_path: Path, policy: str, *extra: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "azure_agent_mcp", "serve", "--sandbox", str(sandbox.manifest_path),
              "--audit-log", str(tmp_path / f"audit-{policy}.jsonl"), "--policy", policy, *extra],
        env=_env(tmp_path),
    )


async def _approve(context: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="accept", content={"approve": True})


def _schemas() -> dict[str, dict[str, Any]]:
    return {tool.name: tool.output_schema for tool in catalog(devops=True) if tool.output_schema is not None}


def _errors(schema: dict[str, Any], instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
            for e in Draft202012Validator(schema).iter_errors(instance)]


def test_every_catalog_tool_has_an_output_schema_that_is_valid_json_schema():
    missing = sorted(tool.name for tool in catalog(devops=True) if tool.output_schema is None)
    assert not missing, f"tools without an output_schema: {missing} (tools/schemas.py has the builders)"
    for name, schema in _schemas().items():
        Draft202012Validator.check_schema(schema)
        # MCP: an outputSchema describes an object; it stays open (the server adds redacted_fields)
        assert schema["type"] == "object" and schema.get("additionalProperties") is not False, name


def test_every_catalog_tool_has_a_case():
    names = {tool.name for tool in catalog(devops=True)}
    missing, stale = sorted(names - set(CASES)), sorted(set(CASES) - names)
    assert not missing, (f"no output-schema case for {missing}: add one successful call per tool to CASES in "
                         "tests/test_output_schemas.py (name -> arguments)")
    assert not stale, f"CASES names tools the catalog does not have: {stale}"


async def _elevation_results(sandbox: Any, tmp_path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The temporary access tools, listed only with an Elevation block: read-only + Elevation, as the reader."""
    policy = tmp_path / "elevation.json"
    policy.write_text(json.dumps({"Profile": "read-only", "Elevation": {
        "MaxDuration": "PT1H", "Roles": ["Website Contributor"], "Operations": ["Microsoft.Web/sites/restart/action"],
        "Scopes": [_app(sandbox.manifest)]}}))
    params = _serve(sandbox, tmp_path, str(policy))
    params.env["AZURE_AGENT_MCP_SANDBOX_USER"] = "reader"
    results: dict[str, dict[str, Any]] = {}
    async with Client(params, elicitation_callback=_approve) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools if tool.name in ELEVATION_TOOLS}
        for name in ELEVATION_TOOLS:
            arguments = CASES[name](sandbox.manifest)
            if name == "access_revoke":
                arguments["grant_id"] = results["access_request"]["grant"]["id"]
            result = await client.call_tool(name, arguments)
            assert not result.is_error, f"{name}: {result.content[0].text}"
            results[name] = result.structured_content
    return listed, results


async def test_each_tool_result_through_serve_validates_against_its_schema(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    sandbox.set_agent_rule(False)  # Azure's own refusal of secrets to agent-tagged tokens (reset restores it)
    schemas = _schemas()
    results: dict[str, dict[str, Any]] = {}
    served = _serve(sandbox, tmp_path, "unrestricted", "--devops-organization", sandbox.manifest["devops_organization"])
    async with Client(served, elicitation_callback=_approve) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        for name, arguments in CASES.items():
            if name in ELEVATION_TOOLS:
                continue
            # the official client validates structuredContent against the listed outputSchema itself
            result = await client.call_tool(name, arguments(sandbox.manifest))
            assert not result.is_error, f"{name}: {result.content[0].text}"
            results[name] = MADE[name] = result.structured_content
    assert set(listed) == set(CASES) - set(ELEVATION_TOOLS)  # no Elevation block: the access tools are not listed
    elevated, elevation_results = await _elevation_results(sandbox, tmp_path)
    listed.update(elevated)
    results.update(elevation_results)
    assert set(listed) == set(CASES)
    failures = {}
    for name, content in results.items():
        assert listed[name].output_schema == schemas[name], f"{name}: the listed outputSchema is not the tool's"
        errors = _errors(schemas[name], content)
        if errors:
            failures[name] = errors
    assert not failures, f"results that do not meet their schema: {failures}"
    # the calls did something to check: values a schema types are there
    assert results["storage_account_keys"]["keys"] and results["keyvault_secret_get"]["value"]
    assert results["deployment_get"]["deployment"]["properties"]["outputs"]["storageKey"]["value"]
    assert results["role_definition_list"]["items"][0]["permissions"][0]["actions"] == ["*/read"]
    _check_redacted_forms(results, schemas)


def _check_redacted_forms(results: dict[str, dict[str, Any]], schemas: dict[str, dict[str, Any]]) -> None:
    """The form a policy that denies secrets returns: each result, withheld and redacted, still validates.

    Under unrestricted the secret-bearing tools answer with their secrets; the server's own
    ``success`` under read-only withholds them (values replaced by ***REDACTED***, outputs withheld by
    shape): the shape a custom policy that allows the call but denies secrets returns.
    """
    from azure_agent_mcp.policy import load_policy
    from azure_agent_mcp.server.results import success
    from azure_agent_mcp.tools.base import ToolOutput

    read_only = load_policy("read-only")
    redacted_somewhere, failures = set(), {}
    for name, content in results.items():
        withheld = success(ToolOutput("", dict(content)), read_only).structured_content
        if withheld.get("redacted_fields"):
            redacted_somewhere.add(name)
        errors = _errors(schemas[name], withheld)
        if errors:
            failures[name] = errors
    assert not failures, f"redacted results that do not meet their schema: {failures}"
    # the check covered the secret-bearing results, redacted
    assert {"keyvault_secret_get", "storage_account_keys", "deployment_get"} <= redacted_somewhere


async def test_a_read_only_deployment_get_is_withheld_and_validates_through_serve(sandbox, tmp_path):
    async with Client(_serve(sandbox, tmp_path, "read-only")) as client:
        result = await client.call_tool("deployment_get", CASES["deployment_get"](sandbox.manifest))
    assert not result.is_error, result.content
    content = result.structured_content
    assert "deployment.properties.outputs.blobEndpoint.value" in content["redacted_fields"]
    assert not _errors(_schemas()["deployment_get"], content)


async def test_tools_list_under_unrestricted_is_under_12_kib(sandbox, tmp_path):
    """Bytes of the tools/list result as serve sends it (compact JSON), every tool listed."""
    from serve_helpers import StdioServe

    with StdioServe(sandbox, tmp_path / "audit.jsonl", tmp_path / "state", "--policy", "unrestricted") as serve:
        answer = serve.request("tools/list")
    tools = answer["result"]["tools"]
    # every tool but the temporary access ones, which need an Elevation block
    assert {tool["name"] for tool in tools} == {tool.name for tool in catalog()} - set(ELEVATION_TOOLS)
    assert all("outputSchema" in tool for tool in tools)
    size = len(json.dumps(answer["result"], separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    print(f"\ntools/list under unrestricted: {size} bytes for {len(tools)} tools "
          f"({size // len(tools)} per tool); {TOOLS_LIST_LIMIT - size} bytes left under 12 KiB")
    assert size < TOOLS_LIST_LIMIT, f"tools/list is {size} bytes: trim descriptions or schemas"


async def test_tools_list_with_an_azure_devops_organization_is_under_its_budget(sandbox, tmp_path):
    """The Azure DevOps tools join tools/list only with --devops-organization; the whole list stays under its budget."""
    from serve_helpers import StdioServe

    org = sandbox.manifest["devops_organization"]
    with StdioServe(sandbox, tmp_path / "audit.jsonl", tmp_path / "state", "--policy", "unrestricted",
                    "--devops-organization", org) as serve:
        answer = serve.request("tools/list")
    tools = answer["result"]["tools"]
    # every tool but the temporary access ones, which need an Elevation block
    assert {tool["name"] for tool in tools} == {tool.name for tool in catalog(devops=True)} - set(ELEVATION_TOOLS)
    size = len(json.dumps(answer["result"], separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    devops = [t for t in tools if t["name"].startswith("devops_")]
    own = len(json.dumps(devops, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    print(f"\ntools/list under unrestricted with --devops-organization: {size} bytes for {len(tools)} tools; "
          f"the {len(devops)} devops_* tools: {own} bytes")
    assert len(devops) == 14 and all("outputSchema" in t for t in devops)
    assert size < DEVOPS_TOOLS_LIST_LIMIT, (f"tools/list with --devops-organization is {size} bytes, over "
                                            f"{DEVOPS_TOOLS_LIST_LIMIT}: trim descriptions or schemas")
