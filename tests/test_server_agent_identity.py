"""`serve` with an agent's own identity: Entra Agent ID flows, identity pinning and the sidecar, over stdio."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from server_helpers import audit_records, error_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _params(sandbox, tmp_path: Path, *extra: str) -> StdioServerParameters:
    env = dict(os.environ, AZURE_AGENT_MCP_STATE_DIR=str(tmp_path / "state"))
    for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG", "AZURE_AGENT_MCP_CREDENTIAL"):
        env.pop(key, None)
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "azure_agent_mcp", "serve", "--sandbox", str(sandbox.manifest_path),
              "--audit-log", str(tmp_path / "audit.jsonl"), *extra],
        env=env,
    )


async def test_agent_identity_acting_autonomously_end_to_end(sandbox, tmp_path):
    agent = sandbox.manifest["agent_identity"]
    since = sandbox.last_seq()
    async with Client(_params(sandbox, tmp_path, "--credential", "agent-identity")) as client:
        who = await client.call_tool("whoami", {})
        assert not who.is_error, who.content
        assert who.structured_content["agentic"]["summary"] == "agent identity acting autonomously"
        groups = await client.call_tool("group_list", {})
        assert not groups.is_error, groups.content
        workspace = next(w for w in sandbox.manifest["workspaces"] if w["name"] == "log-sandbox-prod")
        logs = await client.call_tool("log_query", {"workspace": workspace["id"], "query": "AppRequests | count"})
        assert not logs.is_error, logs.content  # the sidecar's "loganalytics" API: a third audience
    arm = sandbox.requests(kind="arm", since=since)
    assert arm and {r["token_claims"]["appid"] for r in arm} == {agent["agent_identity_id"]}
    queried = sandbox.requests(kind="logs", since=since)
    assert queried and {r["token_claims"]["appid"] for r in queried} == {agent["agent_identity_id"]}
    grants = [r for r in sandbox.requests(kind="token", since=since) if r.get("fmi_path")]
    assert grants and grants[0]["fmi_path"] == agent["agent_identity_id"]
    assert agent["blueprint_client_secret"] not in (tmp_path / "audit.jsonl").read_text()


async def test_agent_user_end_to_end(sandbox, tmp_path):
    agent = sandbox.manifest["agent_identity"]
    since = sandbox.last_seq()
    params = _params(sandbox, tmp_path, "--credential", "agent-identity", "--agent-user", agent["agent_user_upn"])
    async with Client(params) as client:
        who = await client.call_tool("whoami", {})
        assert who.structured_content["agentic"]["summary"] == "agent user"
        groups = await client.call_tool("group_list", {})
        assert not groups.is_error, groups.content
    arm = sandbox.requests(kind="arm", since=since)
    assert arm and {r["token_claims"].get("upn") for r in arm} == {agent["agent_user_upn"]}


async def test_pinning_refuses_the_wrong_identity_and_audits_both(sandbox, tmp_path):
    agent = sandbox.manifest["agent_identity"]
    sandbox.set_wrong_identity(True)
    try:
        since = sandbox.last_seq()
        params = _params(
            sandbox, tmp_path, "--credential", "agent-identity", "--expect-principal", agent["agent_identity_id"]
        )
        async with Client(params) as client:
            result = await client.call_tool("group_list", {})
        assert result.is_error
        error = error_of(result)
        assert error["code"] == "IdentityMismatch"
        assert agent["agent_identity_id"] in error["message"] and agent["project_identity_client_id"] in error["message"]
        assert sandbox.requests(kind="arm", since=since) == []
        record = audit_records(tmp_path / "audit.jsonl", kind="tool")[-1]
        flat = json.dumps(record)
        assert record["status"] == "error"
        assert agent["agent_identity_id"] in flat and agent["project_identity_client_id"] in flat
    finally:
        sandbox.set_wrong_identity(False)


async def test_sidecar_supplies_tokens_without_a_credential_in_the_server(sandbox, tmp_path):
    agent = sandbox.manifest["agent_identity"]
    since = sandbox.last_seq()
    params = _params(sandbox, tmp_path, "--credential", "sidecar", "--sidecar-url", sandbox.manifest["sidecar"])
    async with Client(params) as client:
        groups = await client.call_tool("group_list", {})
        assert not groups.is_error, groups.content
        workspace = next(w for w in sandbox.manifest["workspaces"] if w["name"] == "log-sandbox-prod")
        logs = await client.call_tool("log_query", {"workspace": workspace["id"], "query": "AppRequests | count"})
        assert not logs.is_error, logs.content  # the sidecar's "loganalytics" API: a third audience
    arm = sandbox.requests(kind="arm", since=since)
    assert arm and {r["token_claims"]["appid"] for r in arm} == {agent["agent_identity_id"]}
    queried = sandbox.requests(kind="logs", since=since)
    assert queried and {r["token_claims"]["appid"] for r in queried} == {agent["agent_identity_id"]}


async def test_a_wrong_blueprint_secret_is_an_authentication_error_that_never_echoes_it(sandbox, tmp_path):
    wrong = "bp~not-the-secret-0123456789abcdef"
    params = _params(sandbox, tmp_path, "--credential", "agent-identity", "--blueprint-client-secret", wrong)
    async with Client(params) as client:
        result = await client.call_tool("group_list", {})
        assert result.is_error
        assert error_of(result)["code"] == "AuthenticationFailed"
        assert wrong not in json.dumps(result.structured_content)
        still = await client.call_tool("policy_explain", {})
        assert not still.is_error
    assert wrong not in (tmp_path / "audit.jsonl").read_text()
