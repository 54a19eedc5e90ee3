"""The guard's classes of bypass, attacked through the real server against the sandbox.

Each attack is a tool call an MCP client controls. The outcome is checked where it lands: what
reached the sandbox (its request log), what the audit holds (every byte of it), and the result.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run
from mcp import Client
from server_helpers import audit_records, error_of, make_runtime, server_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _arm_sent(sandbox: Any, since: int) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests(since=since) if r["kind"] in ("arm", "vault")]


def _sub(sandbox: Any) -> str:
    return sandbox.manifest["subscriptions"][0]["id"]


async def _one_call(sandbox: Any, tmp_path: Path, tool: str, arguments: dict[str, Any], **runtime: Any) -> tuple[Any, list, list]:
    """Call one tool; return its result, what reached the sandbox meanwhile, and the audit's tool records."""
    audit = tmp_path / "audit.jsonl"
    server = server_for(make_runtime(sandbox, audit, **runtime))
    mark = sandbox.last_seq()
    async with Client(server) as client:
        result = await client.call_tool(tool, arguments)
    return result, _arm_sent(sandbox, mark), audit_records(audit, kind="tool")


# -- 1. the policy decides the path that is sent -----------------------------------------------

NON_CANONICAL = [
    "/subscriptions/{sub}/resourceGroups/rg-prod-app/providers/Microsoft.Storage/storageAccounts/x/../stprodapp01",
    "/subscriptions/{sub}/resourceGroups/rg-prod-app/./providers",
    "/subscriptions/{sub}//resourceGroups",
    "/subscriptions/{sub}/resourceGroups/",
    "/subscriptions/{sub}/resourceGroups/rg-prod-app%2F..%2F..",
    "/subscriptions/{sub}/resource%47roups",
    "/subscriptions/{sub}/resourceGroups/rg\\..\\x",
    "/subscriptions/{sub}/resourceGroups/r\u00e9",
]


@pytest.mark.parametrize("path", NON_CANONICAL)
async def test_non_canonical_arm_paths_are_refused_and_nothing_is_sent(sandbox, tmp_path, path):
    result, sent, tools = await _one_call(sandbox, tmp_path, "arm_request", {"method": "GET", "path": path.format(sub=_sub(sandbox))})
    assert result.is_error and error_of(result)["code"] == "InvalidArgument"
    assert "canonical" in error_of(result)["message"] or "not printable" in error_of(result)["message"]
    assert sent == []
    assert len(tools) == 1 and tools[0]["status"] == "error"


def test_policy_explain_refuses_a_dot_segment_like_any_denial(tmp_path):
    url = "https://management.azure.com/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a/x/../listKeys"
    done = run(tmp_path, "policy", "explain", "--json", "--method", "POST", "--url", url, "--policy", "unrestricted")
    assert done.returncode == 3, done.stderr
    explained = json.loads(done.stdout)
    assert explained["effect"] == "deny" and "dot segment '..'" in explained["reason"]
    assert "storageAccounts/a/listKeys" in explained["reason"]  # the canonical alternative


def test_policy_explain_maps_post_reads_and_refuses_unknown_operations(tmp_path):
    graph = run(tmp_path, "policy", "explain", "--json", "--method", "POST",
                "--url", "https://management.azure.com/providers/Microsoft.ResourceGraph/resources?api-version=2022-10-01")
    assert graph.returncode == 0, graph.stdout
    assert json.loads(graph.stdout)["operation"] == "Microsoft.ResourceGraph/resources/read"
    query = run(tmp_path, "policy", "explain", "--json", "--method", "POST", "--url",
                "https://management.azure.com/subscriptions/s/resourceGroups/g/providers/Microsoft.OperationalInsights/"
                "workspaces/w/api/query")
    assert query.returncode == 0 and json.loads(query.stdout)["operation"] == "Microsoft.OperationalInsights/workspaces/query/read"
    typo = run(tmp_path, "policy", "explain", "--json", "--method", "GET", "--url",
               "https://management.azure.com/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a/listKeyz")
    assert typo.returncode == 3
    assert json.loads(typo.stdout)["rule"] == "unknown_operation"


async def test_unknown_operation_is_refused_under_read_only_and_marked(sandbox, tmp_path):
    path = f"/subscriptions/{_sub(sandbox)}/resourceGroups/rg-prod-app/providers/Microsoft.Storage/storageAccounts/stprodapp01/listKeyz"
    result, sent, tools = await _one_call(sandbox, tmp_path, "arm_request", {"method": "GET", "path": path})
    assert result.is_error and error_of(result)["rule"] == "unknown_operation"
    assert "does not name it" in error_of(result)["message"]
    assert sent == []
    [tool] = tools
    assert (tool["decision"], tool["rule"]) == ("deny", "unknown_operation")
    assert tool["operation"] == "Microsoft.Storage/storageAccounts/listKeyz/read"


def test_the_guard_itself_refuses_and_marks_an_unknown_operation(sandbox, tmp_path):
    """Below the tools: the transport refuses it even when no tool planned the request."""
    from azure.core.rest import HttpRequest

    from azure_agent_mcp.policy import AuditLog, Endpoints, Guard, PolicyDeniedError, load_policy

    audit = AuditLog(tmp_path / "audit.jsonl")
    guard = Guard(load_policy("read-only"), Endpoints.from_environment(sandbox.environment()), audit=audit)
    url = (f"{sandbox.manifest['arm_endpoint']}/subscriptions/{_sub(sandbox)}/resourceGroups/rg-prod-app/providers/"
           "Microsoft.Storage/storageAccounts/stprodapp01/listKeyz?api-version=2023-05-01")
    mark = sandbox.last_seq()
    with guard.transport(connection_verify=sandbox.manifest["ca_bundle"]) as transport:
        with pytest.raises(PolicyDeniedError) as caught:
            transport.send(HttpRequest("GET", url))
    assert caught.value.decision.rule == "unknown_operation"
    assert _arm_sent(sandbox, mark) == []
    [refused] = audit_records(tmp_path / "audit.jsonl", kind="refused")
    assert refused["unknown_operation"] is True and refused["status"] == "not-sent"


async def test_unknown_operation_is_sent_but_marked_under_no_secrets(sandbox, tmp_path):
    path = f"/subscriptions/{_sub(sandbox)}/resourceGroups/rg-prod-app/providers/Microsoft.Storage/storageAccounts/stprodapp01/fooBar"
    result, sent, _ = await _one_call(sandbox, tmp_path, "arm_request", {"method": "GET", "path": path}, policy="no-secrets")
    [reached] = [r for r in sent if r["raw_path"] == path]  # the sandbox answers as ARM would for an unknown type
    [intent] = [r for r in audit_records(tmp_path / "audit.jsonl", kind="intent") if r["path"] == path]
    assert intent["unknown_operation"] is True and reached["correlation_id"] == intent["correlation_id"]


# -- 2. every URL input typed -------------------------------------------------------------------

HOSTILE = [
    ("group_list", {"subscription": "../../providers/Microsoft.Storage"}),
    ("group_list", {"subscription": "00000000-0000-0000-0000-00000000000a/resourceGroups/rg-prod-app"}),
    ("resource_list", {"resource_group": "rg-prod-app/providers/Microsoft.KeyVault/vaults/kv-sandbox-prod"}),
    ("resource_list", {"resource_group": "rg?api-version=1"}),
    ("resource_get", {"resource_id": "/subscriptions/{sub}/resourceGroups/rg-prod-app/providers/Microsoft.Storage/storageAccounts/stprodapp01/listKeys", "api_version": "2023-05-01"}),
    ("resource_get", {"resource_id": "/subscriptions/{sub}/resourceGroups/rg-prod-app/providers/Microsoft.Storage/storageAccounts/a%2f..%2fb", "api_version": "2023-05-01"}),
    ("resource_get", {"resource_id": "/subscriptions/{sub}/resourceGroups/rg-prod-app/providers/Microsoft.Storage/storageAccounts/a?x=1", "api_version": "2023-05-01"}),
    ("keyvault_secret_list", {"vault": "https://evil.example/vaults/kv-sandbox-prod"}),
    ("keyvault_secret_list", {"vault": "kv-sandbox-prod/../../subscriptions"}),
    ("role_assignment_list", {"scope": "/subscriptions/{sub}/../../providers/Microsoft.Storage"}),
    ("storage_account_list", {"resource_group": "rg-prod-app#frag"}),
]


@pytest.mark.parametrize(("tool", "arguments"), HOSTILE)
async def test_hostile_url_arguments_are_refused_before_anything_is_sent(sandbox, tmp_path, tool, arguments):
    filled = {k: v.format(sub=_sub(sandbox)) if isinstance(v, str) else v for k, v in arguments.items()}
    result, sent, tools = await _one_call(sandbox, tmp_path, tool, filled)
    assert result.is_error, result
    assert error_of(result)["code"] == "InvalidArgument" and error_of(result)["hint"]
    assert sent == []
    assert len(tools) == 1 and tools[0]["error_code"] == "InvalidArgument"


async def test_a_vault_url_under_the_configured_template_is_accepted(sandbox, tmp_path):
    vault = sandbox.manifest["vaults"][0]
    result, sent, _ = await _one_call(sandbox, tmp_path, "keyvault_secret_list", {"vault": vault["url"]})
    assert not result.is_error and result.structured_content["items"]
    assert {r["kind"] for r in sent} == {"vault"}


async def test_continuations_are_sealed_to_the_session_the_tool_and_the_listing(sandbox, tmp_path):
    audit = tmp_path / "audit.jsonl"
    runtime = make_runtime(sandbox, audit)
    async with Client(server_for(runtime)) as client:
        first = await client.call_tool("resource_list", {"resource_group": "rg-prod-app", "top": 1})
        token = first.structured_content["continuation"]
        assert token and "://" not in token
        good = await client.call_tool("resource_list", {"continuation": token, "top": 1})
        assert not good.is_error and good.structured_content["items"]
        mark = sandbox.last_seq()
        body, tag = token.split(".")
        forged = {
            "edited": body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + tag,
            "a URL": "https://127.0.0.1:1/subscriptions",
            "another listing": None,
        }
        results = {}
        for name, value in forged.items():
            arguments = {"continuation": value or token, "top": 1}
            if value is None:
                arguments["resource_group"] = "rg-prod-data"
            results[name] = await client.call_tool("resource_list", arguments)
        assert _arm_sent(sandbox, mark) == []
    for name, result in results.items():
        assert result.is_error and error_of(result)["code"] == "InvalidContinuation", name
    # replayed in another agent session (another server runtime: another session and process key)
    other = make_runtime(sandbox, tmp_path / "other.jsonl")
    async with Client(server_for(other)) as client:
        replayed = await client.call_tool("resource_list", {"continuation": token})
    assert error_of(replayed)["code"] == "InvalidContinuation" and "another agent session" in error_of(replayed)["message"]


# -- 3. secret-bearing reads and outputs ----------------------------------------------------------

def _deployment_id(sandbox: Any) -> str:
    return (f"/subscriptions/{_sub(sandbox)}/resourceGroups/rg-prod-app/providers/Microsoft.Resources/"
            "deployments/deploy-orders-storage")


async def test_deployment_outputs_are_withheld_under_read_only(sandbox, tmp_path):
    result, sent, _ = await _one_call(sandbox, tmp_path, "resource_get",
                                      {"resource_id": _deployment_id(sandbox), "api_version": "2024-03-01"})
    assert not result.is_error and len(sent) == 1 and sent[0]["status"] == 200
    outputs = result.structured_content["resource"]["properties"]["outputs"]
    # by shape, whatever the output is called: an endpoint is withheld as well as a key
    assert outputs["blobEndpoint"] == {"type": "String", "value": "***REDACTED***"}
    assert "***REDACTED***" in json.dumps(outputs["storageKey"])  # (its name alone also marks it)
    assert "resource.properties.outputs.blobEndpoint.value" in result.structured_content["redacted_fields"]
    key = sandbox.state.world.deployments[_deployment_id(sandbox).lower()].outputs["storageKey"].value
    assert key not in json.dumps(result.model_dump(mode="json"))


async def test_deployment_outputs_are_shown_when_the_policy_allows_secrets(sandbox, tmp_path):
    result, _, _ = await _one_call(sandbox, tmp_path, "resource_get",
                                   {"resource_id": _deployment_id(sandbox), "api_version": "2024-03-01"},
                                   policy="unrestricted")
    assert result.structured_content["resource"]["properties"]["outputs"]["blobEndpoint"]["value"].startswith("https://")


async def test_a_vpn_shared_key_read_is_secret_bearing(sandbox, tmp_path):
    path = (f"/subscriptions/{_sub(sandbox)}/resourceGroups/rg-prod-network/providers/Microsoft.Network/"
            "connections/vpn-1/sharedkey")
    result, sent, _ = await _one_call(sandbox, tmp_path, "arm_request", {"method": "GET", "path": path})
    assert result.is_error and "secret-bearing" in error_of(result)["message"]
    assert sent == []


# -- 4. no secret material in the audit, by structure -----------------------------------------------

PLANTED = "pl4nted-S3cret-" + hashlib.sha256(b"guard").hexdigest()[:24]


async def test_a_secret_planted_through_every_writing_tool_never_reaches_the_audit(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    sub = _sub(sandbox)
    audit = tmp_path / "audit.jsonl"
    runtime = make_runtime(sandbox, audit, policy="unrestricted", skip_confirmation=True)
    vault_secret = f"/subscriptions/{sub}/resourceGroups/rg-prod-app/providers/Microsoft.KeyVault/vaults/kv-sandbox-prod/secrets/planted"
    calls = [
        ("group_create", {"name": "rg-planted", "location": "eastus", "tags": {"token": PLANTED}}),
        ("arm_request", {"method": "PUT", "path": vault_secret, "api_version": "2023-07-01",
                         "body": {"properties": {"value": PLANTED}}}),
        ("arm_request", {"method": "PATCH", "path": f"/subscriptions/{sub}/resourceGroups/rg-planted",
                         "body": {"tags": {"note": PLANTED}}}),
        ("arm_request", {"method": "GET", "path": f"/subscriptions/{sub}/resourceGroups?x={PLANTED}"}),
        ("resource_delete", {"resource_id": f"/subscriptions/{sub}/resourceGroups/rg-planted"}),  # identifiers only
        ("storage_account_keys", {"resource_id": f"/subscriptions/{sub}/resourceGroups/rg-prod-app/providers/"
                                                 "Microsoft.Storage/storageAccounts/stprodapp01"}),
        ("resource_get", {"resource_id": "/subscriptions/" + PLANTED * 200}),  # a read with an argument over 4 KiB
    ]
    async with Client(server_for(runtime)) as client:
        for tool, arguments in calls:
            await client.call_tool(tool, arguments)
    everything = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert PLANTED.encode() not in everything
    tools = audit_records(audit, kind="tool")
    assert [t["tool"] for t in tools] == [c[0] for c in calls]
    body = next(t for t in tools if t["tool"] == "arm_request")["arguments"]["body"]
    expected = hashlib.sha256(json.dumps({"properties": {"value": PLANTED}}, sort_keys=True, separators=(",", ":")).encode())
    assert body == {"digest": "sha256", "size": len(json.dumps({"properties": {"value": PLANTED}}, separators=(",", ":"))),
                    "sha256": expected.hexdigest(), "keys": ["properties"]}
    assert tools[0]["arguments"]["name"] == "rg-planted" and tools[0]["arguments"]["tags"]["digest"] == "sha256"
    assert tools[-1]["arguments"]["resource_id"]["size"] > 4096
