"""The server as an editor runs it: a subprocess over stdio, and over streamable HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mcp import Client, StdioServerParameters

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["AZURE_AGENT_MCP_STATE_DIR"] = str(tmp_path / "state")
    for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG"):
        env.pop(key, None)
    env.update(extra)
    return env


def _serve_args(sandbox, tmp_path: Path, *extra: str) -> list[str]:
    return ["-m", "azure_agent_mcp", "serve", "--sandbox", str(sandbox.manifest_path),
            "--audit-log", str(tmp_path / "audit.jsonl"), *extra]


async def test_stdio_lists_and_calls_with_the_hosts_session(sandbox, tmp_path):
    session_id = "stdio-test-session-1"
    params = StdioServerParameters(
        command=sys.executable,
        args=_serve_args(sandbox, tmp_path),
        env=_env(tmp_path, COPILOT_AGENT_SESSION_ID=session_id),
    )
    since = sandbox.requests()[-1]["seq"] if sandbox.requests() else 0
    async with Client(params) as client:
        listed = await client.list_tools()
        assert "resource_list" in {t.name for t in listed.tools}
        result = await client.call_tool("group_list", {})
        assert not result.is_error, result.content
        who = await client.call_tool("whoami", {})
        assert who.structured_content["session"]["id"] == session_id
    tokens = [r for r in sandbox.requests(kind="token", since=since)]
    assert any(session_id in (r.get("client_session_body") or "", r.get("client_session_query") or "") for r in tokens)
    arm = [r for r in sandbox.requests(kind="arm", since=since)]
    assert arm and all(r.get("token_session") == session_id for r in arm)
    assert all("azure-agent-mcp/" in (r.get("user_agent") or "") for r in arm)
    assert all(r.get("correlation_id") for r in arm)


def test_stdio_survives_malformed_json_rpc(sandbox, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, *_serve_args(sandbox, tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(tmp_path),
        text=True,
    )
    try:
        def send(obj: object | str) -> None:
            proc.stdin.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
            proc.stdin.flush()

        def receive() -> dict:  # noqa: D401 - readline blocks; the server must answer
            line = proc.stdout.readline()
            assert line, "server closed stdout"
            return json.loads(line)

        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
        assert receive()["id"] == 1
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send("{this is not json")
        answer = receive()
        assert answer.get("error"), answer
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        listed = receive()
        while listed.get("id") != 2:
            listed = receive()
        assert any(t["name"] == "subscription_list" for t in listed["result"]["tools"])
    finally:
        proc.stdin.close()
        proc.wait(timeout=20)


def _start_http(sandbox, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, *_serve_args(sandbox, tmp_path, "--transport", "http", "--port", "0", "--dangerously-allow-anonymous",
                                      *extra)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(tmp_path),
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/mcp)", line or "")
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("HTTP server did not start")


async def test_http_clients_get_their_own_agent_sessions(sandbox, tmp_path):
    proc, url = _start_http(sandbox, tmp_path)
    try:
        since = sandbox.requests()[-1]["seq"] if sandbox.requests() else 0
        sessions = []
        for _ in range(2):
            async with Client(url, mode="legacy") as client:
                who = await client.call_tool("whoami", {})
                assert not who.is_error, who.content
                sessions.append(who.structured_content["session"]["id"])
                groups = await client.call_tool("group_list", {})
                assert not groups.is_error
        assert sessions[0] != sessions[1]
        seen = {r.get("token_session") for r in sandbox.requests(kind="arm", since=since)}
        assert set(sessions) <= seen

        named = "named-by-header-7"
        async with httpx.AsyncClient(headers={"X-Agent-Session-Id": named}, timeout=30) as http:
            from mcp.client.streamable_http import streamable_http_client

            async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
                who = await client.call_tool("whoami", {})
                assert who.structured_content["session"]["id"] == named
        async with httpx.AsyncClient(headers={"X-Agent-Session-Id": "bad id with spaces"}, timeout=30) as http:
            from mcp.client.streamable_http import streamable_http_client

            async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
                bad = await client.call_tool("whoami", {})
                assert bad.is_error
                assert bad.structured_content["error"]["code"] == "InvalidSessionId"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_http_refuses_non_loopback_without_allow_remote(sandbox, tmp_path):
    result = subprocess.run(
        [sys.executable, *_serve_args(sandbox, tmp_path, "--transport", "http", "--host", "0.0.0.0", "--port", "0")],
        capture_output=True, text=True, env=_env(tmp_path), timeout=60,
    )
    assert result.returncode == 1
    assert "--allow-remote" in result.stderr


def test_policy_that_does_not_load_stops_the_server(sandbox, tmp_path):
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps({"Name": "x", "Actions": ["*/read"], "Whatever": 1}))
    result = subprocess.run(
        [sys.executable, *_serve_args(sandbox, tmp_path, "--policy", str(bad))],
        capture_output=True, text=True, env=_env(tmp_path), timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "policy" in result.stderr and "Whatever" in result.stderr
    assert result.stdout == ""


def _inspector() -> str | None:
    import shutil

    explicit = os.environ.get("MCP_INSPECTOR")
    if explicit and Path(explicit).exists():
        return explicit
    return shutil.which("mcp-inspector")


@pytest.mark.skipif(_inspector() is None, reason="MCP Inspector not installed (set MCP_INSPECTOR; .ci/run installs it when npm works)")
def test_mcp_inspector_cli_lists_and_calls(sandbox, tmp_path):
    inspector = _inspector()
    base = [inspector, "--cli", sys.executable, *_serve_args(sandbox, tmp_path)]
    env = _env(tmp_path)
    listed = subprocess.run([*base, "--method", "tools/list"], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    names = {tool["name"] for tool in json.loads(listed.stdout)["tools"]}
    assert "resource_list" in names and "keyvault_secret_get" not in names
    called = subprocess.run(
        [*base, "--method", "tools/call", "--tool-name", "group_list"], capture_output=True, text=True, env=env, timeout=120
    )
    assert called.returncode == 0, called.stderr
    result = json.loads(called.stdout)
    assert not result.get("isError")
    assert result["structuredContent"]["items"]


async def test_http_modern_protocol_requests_share_the_default_session_unless_named(sandbox, tmp_path):
    """2026-07-28 requests carry no MCP session: they use the server's agent session, or the one they name."""
    proc, url = _start_http(sandbox, tmp_path)
    try:
        async with Client(url, mode="2026-07-28") as client:
            first = (await client.call_tool("whoami", {})).structured_content["session"]["id"]
            second = (await client.call_tool("whoami", {})).structured_content["session"]["id"]
        assert first == second
        async with httpx.AsyncClient(headers={"X-Agent-Session-Id": "modern-named-1"}, timeout=30) as http:
            from mcp.client.streamable_http import streamable_http_client

            async with Client(streamable_http_client(url, http_client=http), mode="2026-07-28") as client:
                named = await client.call_tool("whoami", {})
                assert named.structured_content["session"]["id"] == "modern-named-1"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def test_environment_fallbacks_choose_policy_read_only_and_audit_log(sandbox, tmp_path):
    audit = tmp_path / "from-env.jsonl"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "azure_agent_mcp", "serve", "--sandbox", str(sandbox.manifest_path)],
        env=_env(
            tmp_path,
            AZURE_AGENT_MCP_POLICY="unrestricted",
            AZURE_AGENT_MCP_READ_ONLY="1",
            AZURE_AGENT_MCP_AUDIT_LOG=str(audit),
        ),
    )
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        explained = await client.call_tool("policy_explain", {})
    # unrestricted would list every tool; narrowed to reads, the secret and write tools are gone
    assert "keyvault_secret_get" not in names and "resource_delete" not in names and "resource_list" in names
    assert "unrestricted" in explained.structured_content["policy"]
    assert audit.exists() and json.loads(audit.read_text().splitlines()[0])["tool"] == "policy_explain"
