"""The demo's temporary-access story: the reader needs to restart app-orders-prod, for ten minutes.

Under read-only plus an Elevation block, the agent asks for ``Microsoft.Web/sites/restart/action``
on the site for PT10M; the demo's client (standing in for the user) approves the question; PIM
activates the reader's eligible Website Contributor role for the same period and the restart goes
through. Then the sandbox clock is moved past the end: the same restart is refused by the server
(nothing sent) and, sent straight at the sandbox with the reader's own token, by Azure's RBAC.
The audit shows the grant's approval, its use and its expiry.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

RESTART = "Microsoft.Web/sites/restart/action"
WEB_API = "2022-03-01"


def _policy(workdir: Path, group: str) -> Path:
    path = workdir / "elevation.json"
    path.write_text(json.dumps({
        "Name": "read-only, restarts on request",
        "Profile": "read-only",
        "Elevation": {"MaxDuration": "PT1H", "Roles": ["Website Contributor"], "Operations": [RESTART],
                      "Scopes": [group]},
    }, indent=2), encoding="utf-8")
    return path


def _reader_token(manifest: dict[str, Any]) -> str:
    from azure_agent_mcp.server.demo import _https

    reader = next(u for u in manifest["users"] if u["name"] == "reader")
    form = urllib.parse.urlencode({
        "grant_type": "password", "client_id": manifest["public_client_id"], "username": reader["upn"],
        "password": reader["password"], "scope": "https://management.azure.com/.default openid profile"}).encode()
    status, body = _https(manifest, "POST", f"{manifest['authority_host']}/{manifest['tenant_id']}/oauth2/v2.0/token",
                          form, {"content-type": "application/x-www-form-urlencoded"})
    if status != 200:
        raise RuntimeError(f"the sandbox did not issue the reader a token (HTTP {status})")
    return str(body["access_token"])


def _restarts(manifest: dict[str, Any], since: int) -> list[dict[str, Any]]:
    from azure_agent_mcp.server.demo import _admin_get

    body = _admin_get(manifest, f"/requests?kind=arm&since={since}")
    return [e for e in body["value"] if e["method"] == "POST" and e["path"].lower().endswith("/app-orders-prod/restart")]


def _last_seq(manifest: dict[str, Any]) -> int:
    from azure_agent_mcp.server.demo import _admin_get

    return int(_admin_get(manifest, "/stats")["last_seq"])


async def elevation_story(manifest_path: Path, manifest: dict[str, Any], workdir: Path, audit_log: Path,
                          session_id: str, out: Any) -> None:
    from mcp import Client
    from mcp_types import ElicitResult

    from azure_agent_mcp.server.demo import _admin_get, _error, _https, _server_params

    sub = manifest["subscriptions"][0]["id"]
    group = f"/subscriptions/{sub}/resourceGroups/rg-prod-app"
    site = f"{group}/providers/Microsoft.Web/sites/app-orders-prod"
    questions: list[str] = []

    async def user_approves(context: Any, params: Any) -> ElicitResult:
        questions.append(params.message)
        return ElicitResult(action="accept", content={"approve": True})

    params = _server_params(manifest_path, audit_log, session_id, "--policy", str(_policy(workdir, group)))
    params.env["AZURE_AGENT_MCP_SANDBOX_USER"] = "reader"
    restart = {"method": "POST", "path": f"{site}/restart", "api_version": WEB_API}
    async with Client(params, elicitation_callback=user_approves) as client:
        asked = await client.call_tool("access_request", {
            "operations": [RESTART], "scope": site, "duration": "PT10M",
            "justification": "app-orders-prod serves stale config; restart it"})
        grant = (asked.structured_content or {}).get("grant") or {}
        pim = grant.get("pim") or {}
        active = [i for i in _admin_get(manifest, "/pim")["instances"]
                  if i["properties"]["scope"].lower() == group.lower()
                  and i["properties"].get("expandedProperties", {}).get("roleDefinition", {}).get("displayName")
                  == "Website Contributor"]
        out.step(
            "access_request: the user approves 10 minutes of restart, and PIM activates the eligible role",
            not asked.is_error and pim.get("role") == "Website Contributor" and len(active) == 1,
            *[f"asked: {line}" for line in (questions[0].splitlines() if questions else [])],
            f"grant {grant.get('id')} until {grant.get('end')}; PIM: {pim.get('kind')} {pim.get('role')} at "
            f"{pim.get('scope')} (request {pim.get('request')})",
            *[f"sandbox PIM instance: {i['properties']['roleDefinitionId'].rsplit('/', 1)[-1]} "
              f"{i['properties']['startDateTime']} .. {i['properties']['endDateTime']}" for i in active],
        )

        since = _last_seq(manifest)
        done = await client.call_tool("arm_request", restart)
        sent = _restarts(manifest, since)
        out.step(
            "the restart goes through: allowed by the grant locally, by the PIM activation in Azure",
            not done.is_error and (done.structured_content or {}).get("status") == 200 and len(sent) == 1,
            f"POST .../app-orders-prod/restart -> HTTP {(done.structured_content or {}).get('status')}",
        )

        status, clock = _https(manifest, "POST", manifest["admin"].rstrip("/") + "/clock",
                               json.dumps({"advance": "PT11M"}).encode(), {"content-type": "application/json"})
        listed = await client.call_tool("access_list", {})  # Azure's next answer carries its (advanced) Date
        since = _last_seq(manifest)
        again = await client.call_tool("arm_request", restart)
        local = _error(again)
        sent_after = _restarts(manifest, since)
        code, body = _https(manifest, "POST", manifest["arm_endpoint"].rstrip("/") + f"{site}/restart?api-version={WEB_API}",
                            b"", {"Authorization": f"Bearer {_reader_token(manifest)}"})
        azure_code = ((body or {}).get("error") or {}).get("code") if isinstance(body, dict) else None
        out.step(
            "11 minutes later: the same restart is refused locally (nothing sent) and by the sandbox's RBAC",
            status == 200 and (listed.structured_content or {}).get("items") == [] and again.is_error
            and local.get("code") == "PolicyDenied" and sent_after == [] and code == 403
            and azure_code == "AuthorizationFailed",
            f"sandbox clock now {clock.get('now') if isinstance(clock, dict) else '?'}; access_list: no active grant",
            f"server: {local.get('code')} ({local.get('rule')}); requests sent: {len(sent_after)}",
            f"straight at the sandbox with the reader's token: HTTP {code} {azure_code}",
        )

    records = [json.loads(line) for line in audit_log.read_text(encoding="utf-8").splitlines() if line.strip()]
    gid = grant.get("id")
    events = [r["event"] for r in records if r.get("kind") == "grant" and r.get("grant_id") == gid]
    used = [r["operation"] for r in records if r.get("kind") == "intent" and r.get("grant") == gid]
    out.step(
        "the audit shows the grant's approval, its use and its expiry",
        gid is not None and events == ["requested", "approved", "expired"] and RESTART in used,
        f"grant {gid}: {' -> '.join(events)}",
        *[f"sent under the grant: {op}" for op in used],
    )
