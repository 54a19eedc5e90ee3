"""What the HTTP benches share: a sandbox and `serve --transport http` as subprocesses, raw
streamable-HTTP JSON-RPC clients (httpx), a sandbox user token, and a process's CPU, RSS and fds."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
LEGACY = "2025-06-18"
MODERN = "2026-07-28"
_ids = itertools.count(1)


def bench_env(state: Path) -> dict[str, str]:
    env = dict(os.environ, AZURE_AGENT_MCP_STATE_DIR=str(state))
    for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def start_sandbox(workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "azure_agent_mcp", "sandbox", "--port", "0", "--state-dir", str(workdir / "sandbox")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise RuntimeError("the sandbox did not start")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, Path(line)


def start_server(manifest: Path, audit: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "azure_agent_mcp", "serve", "--sandbox", str(manifest), "--audit-log", str(audit),
         "--transport", "http", "--port", "0", *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/mcp)", line or "")
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, match.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("serve --transport http did not start")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def sockets(pid: int) -> int:
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def user_token(manifest: dict[str, Any], scope: str, user: str = "developer") -> str:
    """A sandbox user's token (password grant through the public client), for direct SDK calls and --auth."""
    import httpx

    record = next(u for u in manifest["users"] if u["name"] == user)
    data = {"grant_type": "password", "client_id": manifest["public_client_id"], "username": record["upn"],
            "password": record["password"], "scope": f"{scope} openid profile offline_access"}
    with httpx.Client(verify=manifest["ca_bundle"], timeout=30) as http:
        answer = http.post(f"{manifest['authority_host']}/{manifest['tenant_id']}/oauth2/v2.0/token", data=data)
        answer.raise_for_status()
        return answer.json()["access_token"]


# -- raw JSON-RPC over streamable HTTP ------------------------------------------------------------------


def _modern_meta() -> dict[str, Any]:
    return {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {}}


def _answer(response: Any, wanted: int) -> dict[str, Any]:
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in text.splitlines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("id") == wanted:
                    return message
        raise RuntimeError("the event stream ended without the answer")
    return json.loads(text)


class RawClient:
    """One MCP client over an httpx.AsyncClient: ``legacy`` (initialize, Mcp-Session-Id, event-stream
    answers) or ``modern`` (2026-07-28: one POST per call, its agent session named by header)."""

    def __init__(self, http: Any, url: str, protocol: str, *, session: str | None = None,
                 bearer: str | None = None) -> None:
        self.http, self.url, self.protocol = http, url, protocol
        self.headers = {"Accept": "application/json, text/event-stream"}
        if session is not None:
            self.headers["X-Agent-Session-Id"] = session
        if bearer is not None:
            self.headers["Authorization"] = f"Bearer {bearer}"
        self.mcp_session: str | None = None

    async def open(self) -> None:
        if self.protocol != "legacy":
            self.headers["MCP-Protocol-Version"] = MODERN
            return
        opened = await self.http.post(self.url, headers=self.headers, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}})
        _answer(opened, 0)
        self.mcp_session = opened.headers["mcp-session-id"]
        self.headers.update({"Mcp-Session-Id": self.mcp_session, "MCP-Protocol-Version": LEGACY})
        done = await self.http.post(self.url, headers=self.headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        if done.status_code != 202:
            raise RuntimeError(f"notifications/initialized: HTTP {done.status_code}")

    async def call(self, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        wanted = next(_ids)
        params: dict[str, Any] = {"name": tool, "arguments": arguments or {}}
        headers = self.headers
        if self.protocol != "legacy":
            params["_meta"] = _modern_meta()
            headers = {**headers, "Mcp-Method": "tools/call", "Mcp-Name": tool}
        response = await self.http.post(self.url, headers=headers,
                                        json={"jsonrpc": "2.0", "id": wanted, "method": "tools/call", "params": params})
        message = _answer(response, wanted)
        if "result" not in message:
            raise RuntimeError(f"tools/call {tool}: {message.get('error')}")
        result = message["result"]
        if result.get("isError"):
            raise RuntimeError(f"tools/call {tool} failed: {json.dumps(result.get('structuredContent'))[:300]}")
        return result

    async def close(self) -> None:
        if self.mcp_session is not None:
            await self.http.delete(self.url, headers=self.headers)
