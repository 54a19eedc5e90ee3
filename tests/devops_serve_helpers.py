"""`serve --devops-organization` against the session sandbox, for each credential path the Azure DevOps tools support."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

from mcp import StdioServerParameters

ORG = "contoso"
PROJECT = "Storefront"
REPO = "storefront-web"
KINDS = ("user", "agent_user", "sidecar")
"""The developer's tagged user token; the agent user through user_fic; the agent user through the sidecar."""


def person(sandbox: Any, name: str) -> dict[str, Any]:
    return next(u for u in sandbox.manifest["users"] if u["name"] == name)


def credential_args(sandbox: Any, kind: str) -> list[str]:
    agent = sandbox.manifest["agent_identity"]
    if kind == "user":
        return []
    if kind == "agent_user":
        return ["--credential", "agent-identity", "--agent-user", agent["agent_user_upn"]]
    if kind == "sidecar":
        return ["--credential", "sidecar", "--sidecar-url", sandbox.manifest["sidecar"],
                "--agent-user", agent["agent_user_upn"]]
    raise ValueError(kind)


def principal(sandbox: Any, kind: str) -> dict[str, str]:
    """oid and upn the sandbox must see as the actor for ``kind``."""
    if kind == "user":
        dev = person(sandbox, "developer")
        return {"oid": dev["object_id"], "upn": dev["upn"]}
    agent = sandbox.manifest["agent_identity"]
    return {"oid": agent["agent_user_object_id"], "upn": agent["agent_user_upn"]}


def reviewer_for(sandbox: Any, kind: str) -> str:
    """Someone other than the actor: the agent user reviews the developer's PR and the other way round."""
    return sandbox.manifest["agent_identity"]["agent_user_upn"] if kind == "user" else person(sandbox, "developer")["upn"]


def serve_params(sandbox: Any, tmp_path: Path, kind: str, *extra: str, session: str | None = None,
                 audit: Path | None = None, organization: bool = True) -> StdioServerParameters:
    env = dict(os.environ, AZURE_AGENT_MCP_STATE_DIR=str(tmp_path / "state"))
    env["COPILOT_AGENT_SESSION_ID"] = session or f"devops-{kind}-{uuid.uuid4().hex[:8]}"
    for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG",
                "AZURE_AGENT_MCP_CREDENTIAL", "AZURE_AGENT_MCP_DEVOPS_ORGANIZATION"):
        env.pop(key, None)
    org = ["--devops-organization", ORG] if organization else []
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "azure_agent_mcp", "serve", "--sandbox", str(sandbox.manifest_path),
              "--audit-log", str(audit or tmp_path / "audit.jsonl"), *org, *credential_args(sandbox, kind), *extra],
        env=env,
    )


def devops_journal(sandbox: Any, since: int) -> list[dict[str, Any]]:
    return sandbox.requests(kind="devops", since=since)


def error_of(result: Any) -> dict[str, Any]:
    content = result.structured_content or {}
    return content.get("error", {}) if isinstance(content, dict) else {}
