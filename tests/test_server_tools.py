"""Every tool, through a real MCP client, against the sandbox; hiding, refusal and confirmation per profile."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client
from mcp_types import ElicitResult
from server_helpers import audit_records, error_of, make_runtime, server_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _names(listed: Any) -> set[str]:
    return {tool.name for tool in listed.tools}


def _tool(listed: Any, name: str) -> Any:
    return next(tool for tool in listed.tools if tool.name == name)


async def test_read_only_hides_what_it_can_never_allow(sandbox, tmp_path):
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
    async with Client(server_for(runtime)) as client:
        listed = await client.list_tools()
    names = _names(listed)
    assert {"whoami", "policy_explain", "subscription_list", "resource_list", "keyvault_secret_list"} <= names
    assert not names & {"keyvault_secret_get", "storage_account_keys", "group_create", "resource_delete"}
    arm = _tool(listed, "arm_request")
    assert arm.input_schema["properties"]["method"]["enum"] == ["GET"]
    assert arm.annotations.read_only_hint is True
    for tool in listed.tools:
        assert tool.annotations.read_only_hint is True, tool.name
    catalog_bytes = len(json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools],
                                   separators=(",", ":")))
    assert catalog_bytes < 12 * 1024


async def test_unrestricted_lists_everything_with_truthful_annotations(sandbox, tmp_path):
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl", policy="unrestricted")
    async with Client(server_for(runtime)) as client:
        listed = await client.list_tools()
    from azure_agent_mcp.tools import catalog

    # every tool but the temporary access ones, listed only when the policy has an Elevation block
    assert {t.name for t in listed.tools} == {t.name for t in catalog() if not t.needs_elevation}
    assert _tool(listed, "arm_request").input_schema["properties"]["method"]["enum"] == ["GET", "PUT", "PATCH", "POST", "DELETE"]
    delete = _tool(listed, "resource_delete")
    assert delete.annotations.destructive_hint is True and delete.annotations.read_only_hint is not True
    # a write tool leaves readOnlyHint out (false is MCP's default) but always says whether it is destructive
    writes = [t for t in listed.tools if not t.annotations.read_only_hint]
    assert writes and all(t.annotations.read_only_hint is None and t.annotations.destructive_hint is not None
                          for t in writes)
    assert _tool(listed, "keyvault_secret_get").meta["azure-agent-mcp/secretBearing"] is True
    assert "azure-agent-mcp/secretBearing" not in (_tool(listed, "resource_list").meta or {})  # published only when true
    catalog_bytes = len(json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools],
                                   separators=(",", ":")))
    assert catalog_bytes < 12 * 1024


async def test_read_tools_answer_with_structured_content(sandbox, tmp_path):
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
    manifest = sandbox.manifest
    sub_a = manifest["subscriptions"][0]["id"]
    async with Client(server_for(runtime)) as client:
        subs = await client.call_tool("subscription_list", {})
        assert not subs.is_error
        assert {s["subscriptionId"] for s in subs.structured_content["items"]} >= {s["id"] for s in manifest["subscriptions"]}

        groups = await client.call_tool("group_list", {"subscription": sub_a})
        assert not groups.is_error and len(groups.structured_content["items"]) >= 2

        first = await client.call_tool("resource_list", {"top": 7})
        assert not first.is_error
        assert len(first.structured_content["items"]) == 7
        token = first.structured_content["continuation"]
        assert token
        second = await client.call_tool("resource_list", {"top": 7, "continuation": token})
        assert not second.is_error
        ids_first = {r["id"] for r in first.structured_content["items"]}
        ids_second = {r["id"] for r in second.structured_content["items"]}
        assert ids_second and not ids_first & ids_second

        typed = await client.call_tool("resource_list", {"resource_type": "Microsoft.KeyVault/vaults"})
        assert typed.structured_content["items"]
        assert all(r["type"].lower() == "microsoft.keyvault/vaults" for r in typed.structured_content["items"])

        storage = await client.call_tool("storage_account_list", {})
        accounts = storage.structured_content["items"]
        assert accounts and all(a["type"].lower() == "microsoft.storage/storageaccounts" for a in accounts)

        got = await client.call_tool("resource_get", {"resource_id": accounts[0]["id"]})
        assert not got.is_error, got.content
        assert got.structured_content["resource"]["id"].lower() == accounts[0]["id"].lower()

        raw = await client.call_tool("arm_request", {"method": "GET", "path": f"/subscriptions/{sub_a}/resourcegroups"})
        assert not raw.is_error and raw.structured_content["status"] == 200

        roles = await client.call_tool("role_assignment_list", {"scope": f"/subscriptions/{sub_a}"})
        assert not roles.is_error and roles.structured_content["items"]

        vault = manifest["vaults"][0]["name"]
        secrets = await client.call_tool("keyvault_secret_list", {"vault": vault})
        assert not secrets.is_error
        assert secrets.structured_content["items"]
        assert all("value" not in item for item in secrets.structured_content["items"])

        who = await client.call_tool("whoami", {})
        assert not who.is_error
        assert runtime.default_session.id in json.dumps(who.structured_content)
        assert "eyJ" not in json.dumps(who.structured_content)

        explained = await client.call_tool(
            "policy_explain", {"operation": "Microsoft.Storage/storageAccounts/listKeys/action", "scope": f"/subscriptions/{sub_a}"}
        )
        assert explained.structured_content["effect"] == "deny"


async def test_hidden_tool_called_anyway_is_refused_with_its_rule(sandbox, tmp_path):
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
    vault = sandbox.manifest["vaults"][0]["name"]
    before = len(sandbox.requests(kind="vault"))
    async with Client(server_for(runtime)) as client:
        result = await client.call_tool("keyvault_secret_get", {"vault": vault, "name": "anything"})
    assert result.is_error
    error = error_of(result)
    assert error["code"] == "PolicyDenied"
    assert error["operation"].lower() == "microsoft.keyvault/vaults/secrets/getsecret/action"
    assert error["rule"] and error["hint"]
    assert len(sandbox.requests(kind="vault")) == before


async def test_arm_request_refuses_writes_absolute_urls_and_dot_segments(sandbox, tmp_path):
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
    sub_a = sandbox.manifest["subscriptions"][0]["id"]
    async with Client(server_for(runtime)) as client:
        write = await client.call_tool(
            "arm_request", {"method": "PUT", "path": f"/subscriptions/{sub_a}/resourcegroups/agent-made", "body": {"location": "westeurope"}}
        )
        assert write.is_error and error_of(write)["code"] == "PolicyDenied"
        absolute = await client.call_tool("arm_request", {"method": "GET", "path": "https://evil.example/subscriptions"})
        assert absolute.is_error and error_of(absolute)["code"] == "InvalidArgument"
        dotted = await client.call_tool("arm_request", {"method": "GET", "path": f"/subscriptions/{sub_a}/../../providers"})
        assert dotted.is_error and error_of(dotted)["code"] == "InvalidArgument"
        # the server keeps serving after bad input
        ok = await client.call_tool("subscription_list", {})
        assert not ok.is_error


async def test_bad_arguments_are_errors_not_crashes(sandbox, tmp_path):
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
    async with Client(server_for(runtime)) as client:
        unknown = await client.call_tool("no_such_tool", {})
        assert unknown.is_error
        wrong_type = await client.call_tool("resource_list", {"top": "many"})
        assert wrong_type.is_error
        huge = await client.call_tool("resource_get", {"resource_id": "/subscriptions/" + "a" * (1024 * 1024)})
        assert huge.is_error
        bad_top = await client.call_tool("resource_list", {"top": 0})
        assert bad_top.is_error and error_of(bad_top)["code"] == "InvalidArgument"
        ok = await client.call_tool("group_list", {})
        assert not ok.is_error


async def test_azure_errors_keep_arm_code_and_status(sandbox, tmp_path):
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
    sub_a = sandbox.manifest["subscriptions"][0]["id"]
    missing = f"/subscriptions/{sub_a}/resourceGroups/does-not-exist/providers/Microsoft.Storage/storageAccounts/nope"
    async with Client(server_for(runtime)) as client:
        result = await client.call_tool("resource_get", {"resource_id": missing, "api_version": "2023-05-01"})
    error = error_of(result)
    assert result.is_error and error["status"] == 404
    assert error["code"] in ("ResourceGroupNotFound", "ResourceNotFound")


async def test_no_secrets_writes_and_redacts(sandbox, tmp_path):
    sandbox.reset()
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl", policy="no-secrets")
    sub_b = sandbox.manifest["subscriptions"][0]["id"]
    async with Client(server_for(runtime)) as client:
        names = _names(await client.list_tools())
        assert "group_create" in names and "keyvault_secret_get" not in names and "storage_account_keys" not in names
        created = await client.call_tool("group_create", {"name": "agent-made-rg", "location": "westeurope", "tags": {"by": "agent"}})
        assert not created.is_error, created.content
        assert created.structured_content["group"]["name"] == "agent-made-rg"
        # Delete needs confirmation under no-secrets; this client cannot elicit.
        delete = await client.call_tool("resource_delete", {"resource_id": f"/subscriptions/{sub_b}/resourceGroups/agent-made-rg"})
        assert delete.is_error and error_of(delete)["code"] == "ConfirmationUnavailable"
        # Web app settings carry a connection string: allowed by the RP for untagged?  The local policy
        # denies the listing itself, so the agent gets a refusal, not the secret.
        keys = await client.call_tool("storage_account_keys", {"resource_id": f"/subscriptions/{sub_b}/resourceGroups/x/providers/Microsoft.Storage/storageAccounts/y"})
        assert keys.is_error and error_of(keys)["code"] == "PolicyDenied"
    sandbox.reset()


async def _approve(context: Any, params: Any) -> ElicitResult:
    assert "agent session" in params.message
    return ElicitResult(action="accept", content={"approve": True})


async def _decline(context: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="decline")


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_confirmation_accepted_runs_the_delete(sandbox, tmp_path, mode):
    sandbox.reset()
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl", policy="no-secrets")
    sub_a = sandbox.manifest["subscriptions"][0]["id"]
    async with Client(server_for(runtime), mode=mode, elicitation_callback=_approve) as client:
        created = await client.call_tool("group_create", {"name": "doomed-rg", "location": "westeurope"})
        assert not created.is_error, created.content
        deleted = await client.call_tool("resource_delete", {"resource_id": f"/subscriptions/{sub_a}/resourceGroups/doomed-rg"})
        assert not deleted.is_error, deleted.content
        gone = await client.call_tool("arm_request", {"method": "GET", "path": f"/subscriptions/{sub_a}/resourceGroups/doomed-rg"})
        assert gone.is_error and error_of(gone)["status"] == 404
    tools = audit_records(tmp_path / "audit.jsonl", kind="tool")
    assert [r["tool"] for r in tools] == ["group_create", "resource_delete", "arm_request"]
    assert tools[1]["decision"] == "confirmed"
    # the DELETE and every poll of it carry the tool call's one correlation id
    deleting = [r for r in sandbox.requests(kind="arm") if r.get("correlation_id") == tools[1]["correlation_id"]]
    assert [r["method"] for r in deleting][0] == "DELETE" and len(deleting) >= 2
    sandbox.reset()


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_confirmation_declined_sends_nothing(sandbox, tmp_path, mode):
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl", policy="no-secrets")
    sub_a = sandbox.manifest["subscriptions"][0]["id"]
    target = f"/subscriptions/{sub_a}/resourceGroups/rg-app"
    before = [r for r in sandbox.requests(kind="arm") if r["method"] == "DELETE"]
    async with Client(server_for(runtime), mode=mode, elicitation_callback=_decline) as client:
        result = await client.call_tool("resource_delete", {"resource_id": target})
    assert result.is_error and error_of(result)["code"] == "ConfirmationDeclined"
    after = [r for r in sandbox.requests(kind="arm") if r["method"] == "DELETE"]
    assert after == before


async def test_audit_holds_one_tool_record_per_call_and_verifies(sandbox, tmp_path):
    from azure_agent_mcp.policy import verify_audit

    audit = tmp_path / "audit.jsonl"
    runtime = make_runtime(sandbox, audit)
    async with Client(server_for(runtime)) as client:
        await client.call_tool("subscription_list", {})
        await client.call_tool("group_list", {})
        await client.call_tool("keyvault_secret_get", {"vault": "kv-x", "name": "x"})
        await client.call_tool("resource_list", {"top": "bad"})
    tools = audit_records(audit, kind="tool")
    assert [r["tool"] for r in tools] == ["subscription_list", "group_list", "keyvault_secret_get", "resource_list"]
    assert [r["status"] for r in tools] == ["ok", "ok", "error", "error"]
    assert tools[2]["decision"] == "deny" and tools[2]["rule"]
    assert all(r["session_id"] == runtime.default_session.id for r in tools)
    assert tools[0]["principal"].get("oid")
    text = audit.read_text()
    assert "eyJ" not in text
    assert verify_audit([audit]).ok


async def test_unrestricted_secret_tools_after_confirmation(sandbox, tmp_path):
    """With the RP agent rule off, an approved secret read returns the secret: the local policy let it through."""
    sandbox.reset()
    sandbox.set_agent_rule(False)
    try:
        runtime = make_runtime(sandbox, tmp_path / "audit.jsonl", policy="unrestricted")
        accounts_runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
        async with Client(server_for(accounts_runtime)) as reader:
            accounts = (await reader.call_tool("storage_account_list", {})).structured_content["items"]
        vault = sandbox.manifest["vaults"][0]["name"]
        asked: list[str] = []

        async def approve(context: Any, params: Any) -> ElicitResult:
            asked.append(params.message)
            return ElicitResult(action="accept", content={"approve": True})

        async with Client(server_for(runtime), elicitation_callback=approve) as client:
            keys = await client.call_tool("storage_account_keys", {"resource_id": accounts[0]["id"]})
            assert not keys.is_error, keys.content
            assert keys.structured_content["keys"] and keys.structured_content["keys"][0]["value"]
            secret = await client.call_tool("keyvault_secret_get", {"vault": vault, "name": "db-password"})
            assert not secret.is_error, secret.content
            assert secret.structured_content["value"]
        assert len(asked) == 2
        assert "listKeys/action" in asked[0] and "getSecret/action" in asked[1]
        assert runtime.default_session.id in asked[0]
        audit_text = (tmp_path / "audit.jsonl").read_text()
        assert keys.structured_content["keys"][0]["value"] not in audit_text
        assert secret.structured_content["value"] not in audit_text
    finally:
        sandbox.set_agent_rule(True)
        sandbox.reset()


async def test_policy_explain_knows_data_actions(sandbox, tmp_path):
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
    async with Client(server_for(runtime)) as client:
        metadata = await client.call_tool(
            "policy_explain", {"operation": "Microsoft.KeyVault/vaults/secrets/readMetadata/action", "scope": "/"}
        )
        decrypt = await client.call_tool(
            "policy_explain", {"operation": "Microsoft.KeyVault/vaults/keys/decrypt/action", "scope": "/"}
        )
        summary = await client.call_tool("policy_explain", {})
    assert metadata.structured_content["effect"] == "allow" and metadata.structured_content["data_action"] is True
    assert decrypt.structured_content["effect"] == "deny" and decrypt.structured_content["data_action"] is True
    assert summary.structured_content["policy"] == "read-only"


async def test_expired_session_refuses_every_call_and_explains(sandbox, tmp_path):
    import time

    now = [time.time()]
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl", session_ttl="45m", clock=lambda: now[0])
    async with Client(server_for(runtime)) as client:
        first = await client.call_tool("group_list", {})
        assert not first.is_error
        now[0] += 45 * 60 + 1  # the session's clock passes its end; its token would still be valid
        since = sandbox.last_seq()
        expired = await client.call_tool("group_list", {})
        assert expired.is_error
        error = error_of(expired)
        assert error["code"] == "SessionExpired"
        assert "expired" in error["message"] and error["hint"]
        assert sandbox.requests(since=since) == []


async def test_arm_request_resolves_the_api_version_from_provider_metadata(sandbox, tmp_path):
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
    async with Client(server_for(runtime)) as client:
        accounts = (await client.call_tool("storage_account_list", {})).structured_content["items"]
        result = await client.call_tool("arm_request", {"method": "GET", "path": accounts[0]["id"]})
    assert not result.is_error, result.content
    version = result.structured_content["api_version"]
    provider = [r for r in sandbox.requests(kind="arm") if r["path"].lower().endswith("/providers/microsoft.storage")]
    assert provider, "the api-version was not looked up from provider metadata"
    assert result.structured_content["body"]["id"].lower() == accounts[0]["id"].lower()
    assert version and "preview" not in version


async def test_policy_explain_names_a_tools_operations_and_their_decisions(sandbox, tmp_path):
    """Where a tool's RBAC operations are published (tools/list does not carry them): with the active
    policy's decision for each, so a hidden tool says why it is hidden."""
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
    async with Client(server_for(runtime)) as client:
        keys = await client.call_tool("policy_explain", {"tool": "storage_account_keys"})
        listed = await client.call_tool("policy_explain", {"tool": "resource_list", "scope": "/subscriptions/x"})
        unknown = await client.call_tool("policy_explain", {"tool": "no_such_tool"})
        listing = await client.list_tools()
    decided = keys.structured_content["operations"]
    assert [(d["operation"], d["effect"]) for d in decided] == [
        ("Microsoft.Storage/storageAccounts/listKeys/action", "deny")]
    assert decided[0]["rule"], decided
    assert {d["effect"] for d in listed.structured_content["operations"]} == {"allow"}
    assert listed.structured_content["scope"] == "/subscriptions/x"
    assert unknown.is_error and "no_such_tool" in unknown.structured_content["error"]["message"]
    assert "resource_list" in unknown.structured_content["error"]["hint"]
    assert all("azure-agent-mcp/operations" not in (tool.meta or {}) for tool in listing.tools)
