"""Building an in-process server against the sandbox, the way `serve --sandbox MANIFEST` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from azure_agent_mcp.server.app import build_server
from azure_agent_mcp.server.runtime import AgentRuntime, RuntimeOptions


def make_runtime(
    sandbox: Any,
    audit_path: Path,
    policy: str = "read-only",
    *,
    read_only: bool = False,
    skip_confirmation: bool = False,
    transport: str = "stdio",
    session_id: str | None = None,
    session_ttl: str = "8h",
    clock: Any = None,
    **options: Any,
) -> AgentRuntime:
    """``options``: more RuntimeOptions fields (``session_idle``, ``max_sessions``)."""
    from azure_agent_mcp.identity import build_credential, resolve_session
    from azure_agent_mcp.policy import AuditLog, load_policy, narrow_read_only

    env = sandbox.environment()
    loaded = load_policy(policy)
    if read_only:
        loaded = narrow_read_only(loaded)
    extra = {"clock": clock} if clock is not None else {}
    session = resolve_session(session_id=session_id, ttl=session_ttl, environ={}, **extra)

    def credential_for(s: Any) -> Any:
        return build_credential("sandbox", env, s)

    return AgentRuntime(
        env=env,
        policy=loaded,
        audit=AuditLog(audit_path),
        default_session=session,
        credential_factory=credential_for,
        options=RuntimeOptions(skip_confirmation=skip_confirmation, transport=transport, session_ttl=session_ttl,
                               **options),
    )


def server_for(runtime: AgentRuntime) -> Any:
    return build_server(runtime)


def audit_records(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    from azure_agent_mcp.policy import audit_files

    records = []
    # the log's segments only: its companions (.anchor, .pub, .lock) share its name's prefix
    for file in (f for f in audit_files(path) if f.exists()):
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                if kind is None or record.get("kind") == kind:
                    records.append(record)
    return records


def error_of(result: Any) -> dict[str, Any]:
    content = result.structured_content or {}
    return content.get("error", {})
