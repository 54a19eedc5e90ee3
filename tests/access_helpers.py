"""Servers with an Elevation policy against the sandbox, as a chosen seeded user, with a clock tests can move."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import StdioServerParameters
from mcp_types import ElicitResult

RESTART = "Microsoft.Web/sites/restart/action"
WEB_API = "2022-03-01"


def app_group(manifest: dict[str, Any]) -> str:
    return f"/subscriptions/{manifest['subscriptions'][0]['id']}/resourceGroups/rg-prod-app"


def site(manifest: dict[str, Any], name: str = "app-orders-prod") -> str:
    return app_group(manifest) + f"/providers/Microsoft.Web/sites/{name}"


def elevation_policy(tmp_path: Path, manifest: dict[str, Any], **elevation: Any) -> Path:
    block = {"MaxDuration": "PT1H", "Roles": ["Website Contributor"], "Operations": [RESTART],
             "Scopes": [app_group(manifest)]}
    block.update(elevation)
    path = tmp_path / "elevation-policy.json"
    path.write_text(json.dumps({"Name": "read-only with elevation", "Profile": "read-only", "Elevation": block}))
    return path


class FakeWall:
    """A wall clock that starts at real time and moves only when told (the local side of GrantClock)."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def elevation_runtime(sandbox: Any, tmp_path: Path, *, user: str = "reader", policy: Path | None = None,
                      session_id: str = "elev-1", session_ttl: str = "8h", wall: Any = None,
                      transport: str = "stdio") -> Any:
    from azure_agent_mcp.access.clock import GrantClock
    from azure_agent_mcp.identity import build_credential, resolve_session
    from azure_agent_mcp.policy import AuditLog, load_policy
    from azure_agent_mcp.server.runtime import AgentRuntime, RuntimeOptions

    env = sandbox.environment()
    loaded = load_policy(str(policy or elevation_policy(tmp_path, sandbox.manifest)))
    session = resolve_session(session_id=session_id, ttl=session_ttl, environ={})
    runtime = AgentRuntime(
        env=env, policy=loaded, audit=AuditLog(tmp_path / "audit.jsonl"), default_session=session,
        credential_factory=lambda s: build_credential("sandbox", env, s, user=user),
        options=RuntimeOptions(session_ttl=session_ttl, transport=transport),
    )
    if wall is not None and runtime.grants is not None:
        runtime.grants.clock = GrantClock(wall=wall)
    return runtime


def approver(answers: list[str] | None = None, action: str = "accept", approve: bool = True,
             think: float = 0.0) -> Any:
    """An elicitation callback that answers every question the same way and keeps the questions asked
    (after ``think`` seconds: a person takes a while)."""
    asked = answers if answers is not None else []

    async def answer(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        if think:
            await anyio.sleep(think)
        if action != "accept":
            return ElicitResult(action=action)
        return ElicitResult(action="accept", content={"approve": approve})

    answer.asked = asked  # type: ignore[attr-defined]
    return answer


def restart_args(manifest: dict[str, Any], name: str = "app-orders-prod") -> dict[str, Any]:
    return {"method": "POST", "path": site(manifest, name) + "/restart", "api_version": WEB_API}


def request_args(manifest: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"operations": [RESTART], "scope": site(manifest), "duration": "PT10M",
                            "justification": "restart app-orders-prod after the config change"}
    args.update(overrides)
    return {k: v for k, v in args.items() if v is not None}


def restarts_sent(sandbox: Any, since: int, name: str = "app-orders-prod") -> list[dict[str, Any]]:
    return [e for e in sandbox.requests("arm", since=since)
            if e.get("method") == "POST" and str(e.get("path", "")).lower().endswith(f"/sites/{name}/restart")]


def reader_serve(sandbox: Any, tmp_path: Path, policy: Path, *extra: str,
                 session: str = "elev-serve") -> StdioServerParameters:
    """``serve --sandbox`` over stdio as the reader (the user PIM makes eligible), with ``policy``."""
    env = dict(os.environ)
    env.update(AZURE_AGENT_MCP_STATE_DIR=str(tmp_path / "state"), AZURE_AGENT_MCP_SANDBOX_USER="reader",
               COPILOT_AGENT_SESSION_ID=session)
    for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG"):
        env.pop(key, None)
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "azure_agent_mcp", "serve", "--sandbox", str(sandbox.manifest_path), "--audit-log",
              str(tmp_path / "audit.jsonl"), "--policy", str(policy), *extra],
        env=env,
    )
