"""``azure-agent-mcp demo``: an agent's story, told by a real MCP client against the sandbox.

Each step states what should happen and checks that it did; the exit code is 0 only when every
step behaved as described, so the demo doubles as an end-to-end smoke test of a fresh install.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Step:
    title: str
    ok: bool
    lines: list[str] = field(default_factory=list)


class Transcript:
    def __init__(self, quiet: bool) -> None:
        self.steps: list[Step] = []
        self.quiet = quiet

    def say(self, text: str = "") -> None:
        if not self.quiet:
            print(text, flush=True)

    def step(self, title: str, ok: bool, *lines: str) -> None:
        self.steps.append(Step(title, ok, list(lines)))
        mark = "ok " if ok else "FAIL"
        self.say(f"[{mark}] {len(self.steps)}. {title}")
        for line in lines:
            self.say(f"       {line}")


def _admin_get(manifest: dict[str, Any], path: str) -> Any:
    context = ssl.create_default_context(cafile=manifest["ca_bundle"])
    with urllib.request.urlopen(manifest["admin"].rstrip("/") + path, context=context, timeout=10) as response:
        return json.loads(response.read())


def _https(manifest: dict[str, Any], method: str, url: str, data: bytes | None = None,
           headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request straight at the sandbox (not through the server), trusting exactly its CA."""
    context = ssl.create_default_context(cafile=manifest["ca_bundle"])
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"null")
        except ValueError:
            return exc.code, None


def _vault_requests(manifest: dict[str, Any]) -> int:
    body = _admin_get(manifest, "/requests?kind=vault")
    entries = body.get("value", body) if isinstance(body, dict) else body
    return len(entries)


def _server_params(manifest_path: Path, audit_log: Path, session_id: str, *extra: str):
    from mcp import StdioServerParameters

    env = dict(os.environ)
    env["COPILOT_AGENT_SESSION_ID"] = session_id
    env.pop("AZURE_AGENT_MCP_POLICY", None)
    env.pop("AZURE_AGENT_MCP_READ_ONLY", None)
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "azure_agent_mcp", "serve", "--sandbox", str(manifest_path), "--audit-log", str(audit_log), *extra],
        env=env,
    )


def _error(result: Any) -> dict[str, Any]:
    content = result.structured_content or {}
    return content.get("error", {}) if isinstance(content, dict) else {}


TLS_QUESTION = ("Resources | where type =~ 'microsoft.storage/storageaccounts' "
                "| where properties.minimumTlsVersion != 'TLS1_2' "
                "| project name, subscriptionId, tls = tostring(properties.minimumTlsVersion) | order by name asc")


async def _resource_graph_step(client: Any, manifest: dict[str, Any], out: Transcript) -> None:
    """A question an engineer asks under read-only: which storage accounts still accept TLS below 1.2?"""
    subscriptions = [s["id"] for s in manifest["subscriptions"]]
    answer = await client.call_tool("resource_graph_query", {"query": TLS_QUESTION, "subscriptions": subscriptions})
    rows = (answer.structured_content or {}).get("items", [])
    out.step(
        "resource_graph_query: every storage account without TLS 1.2",
        not answer.is_error and [(r.get("name"), r.get("tls")) for r in rows]
        == [("stdevshared01", "TLS1_1"), ("stprodlogs01", "TLS1_0")],
        f"KQL: {TLS_QUESTION}",
        *[f"{r.get('name')}  minimumTlsVersion {r.get('tls')}  (subscription {r.get('subscriptionId')})" for r in rows],
        "decided by the guard at both subscriptions the query names",
    )


async def _story(manifest_path: Path, manifest: dict[str, Any], workdir: Path, out: Transcript) -> None:
    from mcp import Client

    from azure_agent_mcp.policy import verify_audit

    audit_log = workdir / "audit.jsonl"
    session_id = f"demo-{uuid.uuid4().hex[:12]}"
    vault = manifest["vaults"][0]["name"]
    out.say(f"Agent session {session_id}; sandbox {manifest['arm_endpoint']} (tenant {manifest['tenant_id']}).")
    out.say("Server 1: serve --sandbox (default policy: read-only).")
    out.say()

    async with Client(_server_params(manifest_path, audit_log, session_id)) as client:
        listed = await client.list_tools()
        names = sorted(t.name for t in listed.tools)
        out.step(
            "tools/list under read-only",
            "keyvault_secret_get" not in names and "resource_delete" not in names and "resource_list" in names,
            f"{len(names)} tools: {', '.join(names)}",
            "secret and write tools are hidden: the policy can never allow them",
        )

        who = await client.call_tool("whoami", {})
        info = who.structured_content or {}
        markers = info.get("agent_markers") or {}
        principal = info.get("principal") or {}
        out.step(
            "whoami: the token says an agent is acting",
            not who.is_error and session_id in json.dumps(markers),
            f"principal {principal.get('upn') or principal.get('appid')} (oid {principal.get('oid')})",
            "agent markers in the token: " + ", ".join(f"{k}={v}" for k, v in sorted(markers.items())),
        )

        subs = await client.call_tool("subscription_list", {})
        items = (subs.structured_content or {}).get("items", [])
        out.step(
            "subscription_list",
            not subs.is_error and len(items) >= 2,
            ", ".join(f"{s['displayName']} ({s['subscriptionId']})" for s in items),
        )

        groups = await client.call_tool("group_list", {})
        group_items = (groups.structured_content or {}).get("items", [])
        out.step("group_list", not groups.is_error and len(group_items) >= 1, ", ".join(g["name"] for g in group_items))

        resources = await client.call_tool("resource_list", {"top": 5})
        data = resources.structured_content or {}
        out.step(
            "resource_list (5 per page)",
            not resources.is_error and len(data.get("items", [])) == 5 and bool(data.get("continuation")),
            *[f"{r['type']}  {r['name']}" for r in data.get("items", [])],
            "more available through the continuation token",
        )

        await _resource_graph_step(client, manifest, out)

        before = _vault_requests(manifest)
        secret = await client.call_tool("keyvault_secret_get", {"vault": vault, "name": "db-password"})
        error = _error(secret)
        after = _vault_requests(manifest)
        out.step(
            "keyvault_secret_get refused by the local read-only policy",
            secret.is_error and error.get("code") == "PolicyDenied" and after == before,
            f"{error.get('code')}: {error.get('message')}",
            f"rule: {error.get('rule')}",
            f"requests the sandbox's vault saw: {after - before} (nothing left the process)",
        )

    out.say()
    out.say("Server 2: serve --sandbox --policy unrestricted --dangerously-skip-confirmation.")
    out.say()
    unrestricted = _server_params(
        manifest_path, audit_log, session_id, "--policy", "unrestricted", "--dangerously-skip-confirmation"
    )
    async with Client(unrestricted) as client:
        secret = await client.call_tool("keyvault_secret_get", {"vault": vault, "name": "db-password"})
        error = _error(secret)
        leaked = "value" in json.dumps(secret.structured_content or {})
        out.step(
            "the same read, allowed locally, refused by Azure because the token is agent-tagged",
            secret.is_error and error.get("code") == "AgentSessionSecretAccessDenied" and not leaked,
            f"HTTP {error.get('status')} {error.get('code')}: {error.get('message')}",
        )
        correlation = await _refused_keys_step(client, out)
        await _activity_log_step(client, out, session_id, correlation)

    out.say()
    out.say("Server 3: serve --sandbox --policy elevation.json (read-only + an Elevation block), as the reader.")
    out.say()
    from azure_agent_mcp.server.demo_elevation import elevation_story

    await elevation_story(manifest_path, manifest, workdir, audit_log, session_id, out)

    result = verify_audit([audit_log])
    out.step(
        "audit verify: the hash chain over every server's records is intact",
        bool(result.ok),
        f"{result.records} records in {audit_log}",
    )


async def _refused_keys_step(client: Any, out: Transcript) -> str | None:
    """An ARM action Azure refuses to the agent session: the activity log records it as a Failed event."""
    accounts = await client.call_tool("storage_account_list", {})
    items = (accounts.structured_content or {}).get("items", [])
    if not items:
        out.step("storage_account_keys refused by Azure for the agent-tagged token", False, "no storage account")
        return None
    keys = await client.call_tool("storage_account_keys", {"resource_id": items[0]["id"]})
    error = _error(keys)
    out.step(
        "storage_account_keys: allowed locally, refused by ARM for the agent-tagged token",
        keys.is_error and error.get("code") == "AgentSessionSecretAccessDenied",
        f"HTTP {error.get('status')} {error.get('code')} on {items[0]['name']} (correlation id "
        f"{error.get('correlation_id')})",
    )
    return error.get("correlation_id")


async def _activity_log_step(client: Any, out: Transcript, session_id: str, correlation: str | None) -> None:
    """Azure's side of the story: the activity log shows what this agent session did, under its claim."""
    listed = await client.call_tool("activity_log_list", {"timespan": "PT15M", "status": "Failed"})
    items = (listed.structured_content or {}).get("items", [])
    mine = [e for e in items if e.get("agent_session") == session_id and e.get("correlation_id") == correlation]
    out.step(
        "activity_log_list: Azure's activity log recorded the refused action with this agent session's claim",
        not listed.is_error and correlation is not None and len(mine) == 1
        and mine[0].get("error_code") == "AgentSessionSecretAccessDenied",
        *[f"{e['time']}  {e['status']}  {e['operation']}  caller {e['caller']}  agent_session {e['agent_session']}"
          for e in mine],
        "same correlation id as the tool call's audit record",
    )


def run_demo(manifest: str | None = None, quiet: bool = False, scenario: str = "azure") -> int:
    """``scenario``: ``azure`` (the default story) or ``devops`` (``demo_devops``: the agent user in Azure DevOps)."""
    import anyio

    out = Transcript(quiet)
    story = _story
    if scenario == "devops":
        from azure_agent_mcp.server.demo_devops import devops_story

        story = devops_story
        out.say("azure-agent-mcp demo devops: an AI agent as a co-worker in Azure DevOps, as its own agent user "
                "(embedded sandbox, no PAT).")
    else:
        out.say("azure-agent-mcp demo: an AI agent works in Azure, visibly and safely (embedded sandbox, no Azure "
                "account).")
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="azure-agent-mcp-demo-")))
        if manifest is None:
            from azure_agent_mcp.sandbox import Sandbox

            sandbox = stack.enter_context(Sandbox(state_dir=workdir / "sandbox"))
            manifest_path = Path(sandbox.manifest_path)
        else:
            manifest_path = Path(manifest)
        loaded = json.loads(manifest_path.read_text(encoding="utf-8"))
        try:
            anyio.run(story, manifest_path, loaded, workdir, out)
        except Exception as exc:  # a broken step must still produce a verdict, not a traceback
            out.step("the demo ran to the end", False, f"{type(exc).__name__}: {exc}")
    failed = [s for s in out.steps if not s.ok]
    verdict = (
        f"demo: all {len(out.steps)} steps behaved as described"
        if not failed
        else f"demo: {len(failed)} of {len(out.steps)} steps did not behave as described: "
        + "; ".join(s.title for s in failed)
    )
    print(verdict, flush=True)
    return 0 if not failed else 1
