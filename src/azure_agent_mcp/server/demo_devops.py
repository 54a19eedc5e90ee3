"""``azure-agent-mcp demo devops``: the agent as a co-worker in Azure DevOps, as its own agent user, with no PAT.

The design's scenario against the sandbox: through the auth sidecar (the server holds no
credential) the agent user files "Fix login timeout", pushes a fix to a new branch, opens a pull
request linked to the work item with the developer as reviewer; the developer comments with the
developer's own token, straight at Azure DevOps; the agent reads the thread and replies. Azure
DevOps' own records then name the agent user as creator and author. A second server under
read-only is refused the same writes, and nothing reaches Azure DevOps. Each step checks what it
claims, so the exit code says whether the story held.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from azure_agent_mcp.server.demo import Transcript, _admin_get, _error, _server_params

PROJECT = "Storefront"
REPO = "storefront-web"
FILE = "/src/auth/session.py"
BEFORE, AFTER = "LOGIN_TIMEOUT_SECONDS = 5", "LOGIN_TIMEOUT_SECONDS = 30"


def _devops_requests(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    body = _admin_get(manifest, "/requests?kind=devops")
    return body.get("value", body) if isinstance(body, dict) else body


def _developer(manifest: dict[str, Any]) -> dict[str, Any]:
    return next(u for u in manifest["users"] if u["name"] == "developer")


def developer_comment(manifest: dict[str, Any], pull_request: int, text: str) -> dict[str, Any]:
    """The developer reviews: a new thread on the PR, sent with the developer's own token (not through the server)."""
    from azure_agent_mcp.environment import from_manifest
    from azure_agent_mcp.identity import build_credential, resolve_session

    env = from_manifest(manifest)
    session = resolve_session(session_id=f"reviewer-{uuid.uuid4().hex[:8]}", ttl="1h", environ={})
    token = build_credential("sandbox", env, session).get_token(env.devops_scope).token
    org = manifest["devops_organization"]
    url = (f"{manifest['devops_endpoint']}/{org}/{PROJECT}/_apis/git/repositories/{REPO}/pullRequests/{pull_request}"
           "/threads?api-version=7.1")
    body = json.dumps({"comments": [{"parentCommentId": 0, "content": text, "commentType": 1}], "status": 1}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"})
    context = ssl.create_default_context(cafile=manifest["ca_bundle"])
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        return json.loads(response.read())


def _devops_server(manifest_path: Path, manifest: dict[str, Any], audit_log: Path, session_id: str, *extra: str):
    agent = manifest["agent_identity"]
    return _server_params(manifest_path, audit_log, session_id, "--credential", "sidecar",
                          "--sidecar-url", manifest["sidecar"], "--agent-user", agent["agent_user_upn"],
                          "--devops-organization", manifest["devops_organization"], *extra)


async def devops_story(manifest_path: Path, manifest: dict[str, Any], workdir: Path, out: Transcript) -> None:
    from mcp import Client

    from azure_agent_mcp.policy import verify_audit

    audit_log = workdir / "audit-devops.jsonl"
    session_id = f"demo-devops-{uuid.uuid4().hex[:8]}"
    agent_upn = manifest["agent_identity"]["agent_user_upn"]
    developer = _developer(manifest)["upn"]
    tag = uuid.uuid4().hex[:6]
    out.say(f"Agent session {session_id}; Azure DevOps {manifest['devops_endpoint']}/{manifest['devops_organization']}.")
    out.say(f"Server 1: serve --credential sidecar --agent-user {agent_upn} --devops-organization "
            f"{manifest['devops_organization']} --policy unrestricted (the server holds no credential).")
    out.say()
    async with Client(_devops_server(manifest_path, manifest, audit_log, session_id, "--policy", "unrestricted")) as client:
        who = await client.call_tool("whoami", {})
        info = who.structured_content or {}
        out.step("whoami: the agent user, through the sidecar",
                 not who.is_error and agent_upn.lower() in json.dumps(info).lower(),
                 f"principal {(info.get('principal') or {}).get('upn')}, credential "
                 f"{(info.get('credential') or {}).get('kind', info.get('credential'))}")

        created = await client.call_tool("devops_work_item_create", {
            "project": PROJECT, "type": "Bug", "title": "Fix login timeout",
            "description": "Users are signed out after 5 seconds: LOGIN_TIMEOUT_SECONDS is 5, should be 30."})
        item = created.structured_content or {}
        creator = ((item.get("fields") or {}).get("System.CreatedBy") or {}).get("uniqueName", "")
        out.step("devops_work_item_create: Bug 'Fix login timeout'",
                 not created.is_error and creator.lower() == agent_upn.lower(),
                 f"work item {item.get('id')}, System.CreatedBy {creator}")
        item_id = item.get("id")

        source = await client.call_tool("devops_file_get", {"project": PROJECT, "repo": REPO, "path": FILE})
        text = (source.structured_content or {}).get("content", "")
        branch = f"fix/login-timeout-{tag}"
        pushed = await client.call_tool("devops_push", {
            "project": PROJECT, "repo": REPO, "branch": branch, "message": f"Fix login timeout: 5 s -> 30 s (AB#{item_id})",
            "changes": [{"path": FILE, "content": text.replace(BEFORE, AFTER)}]})
        push = pushed.structured_content or {}
        out.step(f"devops_push: {FILE} ({BEFORE} -> 30) on new branch {branch}, no git binary",
                 not source.is_error and BEFORE in text and not pushed.is_error and push.get("created") is True,
                 f"commit {push.get('commitId')} on {branch} (from main at {str(push.get('parent'))[:12]}), "
                 f"pushed by {(push.get('pushedBy') or {}).get('uniqueName')}")

        opened = await client.call_tool("devops_pr_create", {
            "project": PROJECT, "repo": REPO, "source_branch": branch, "title": "Fix login timeout",
            "description": "Raises LOGIN_TIMEOUT_SECONDS to 30.", "reviewers": [developer], "work_items": [item_id]})
        pr = opened.structured_content or {}
        number = pr.get("pullRequestId")
        out.step("devops_pr_create: linked to the work item, the developer as reviewer",
                 not opened.is_error and pr.get("workItems") == [item_id]
                 and [r.get("uniqueName", "").lower() for r in pr.get("reviewers", [])] == [developer.lower()],
                 f"pull request {number} {pr.get('sourceRefName')} -> {pr.get('targetRefName')}, reviewers "
                 f"{', '.join(r.get('uniqueName', '') for r in pr.get('reviewers', []))}")

        review = developer_comment(manifest, int(number), "Could you add a test for the 30 s timeout?") if number else {}
        out.step("the developer comments on the pull request with the developer's own token",
                 bool(review.get("id")), f"thread {review.get('id')} by "
                 f"{((review.get('comments') or [{}])[0].get('author') or {}).get('uniqueName')}")

        threads = await client.call_tool("devops_pr_threads_list", {"project": PROJECT, "repo": REPO,
                                                                    "pull_request_id": number})
        items = (threads.structured_content or {}).get("items", [])
        asked = next((t for t in items if t.get("id") == review.get("id")), {})
        replied = await client.call_tool("devops_pr_thread_reply", {
            "project": PROJECT, "repo": REPO, "pull_request_id": number, "thread_id": review.get("id"),
            "content": "Added tests/test_session.py::test_timeout_is_30_seconds in the next push."})
        answer = replied.structured_content or {}
        out.step("the agent reads the thread and replies in it",
                 not threads.is_error and bool(asked) and not replied.is_error and answer.get("threadId") == review.get("id"),
                 *[f"{(c.get('author') or {}).get('uniqueName')}: {c.get('content')}" for c in asked.get("comments", [])],
                 f"{(answer.get('author') or {}).get('uniqueName')}: {answer.get('content')}")

        got = await client.call_tool("devops_pr_get", {"project": PROJECT, "repo": REPO, "pull_request_id": number})
        view = got.structured_content or {}
    received = [r for r in _devops_requests(manifest) if r.get("token_session") == session_id
                or (r.get("token_claims") or {}).get("upn", "").lower() == agent_upn.lower()]
    principals = {(r.get("token_claims") or {}).get("upn") for r in received}
    pr_creator = (view.get("createdBy") or {}).get("uniqueName", "")
    author = (push.get("author") or {}).get("email", "")
    out.step("Azure DevOps records the agent user as creator and author",
             not got.is_error and creator.lower() == pr_creator.lower() == agent_upn.lower()
             and author.lower() == agent_upn.lower() and (answer.get("author") or {}).get("uniqueName", "").lower()
             == agent_upn.lower(),
             f"work item {item_id} System.CreatedBy {creator}", f"commit {push.get('commitId')} author {author}",
             f"pull request {number} createdBy {pr_creator}",
             f"tokens Azure DevOps received from the agent: {sorted(p for p in principals if p)}; no PAT anywhere")

    out.say()
    out.say("Server 2: the same agent under --read-only.")
    out.say()
    before = len(_devops_requests(manifest))
    async with Client(_devops_server(manifest_path, manifest, audit_log, session_id, "--read-only")) as client:
        refused = []
        for tool, arguments in (
            ("devops_work_item_create", {"project": PROJECT, "type": "Bug", "title": "Fix login timeout"}),
            ("devops_push", {"project": PROJECT, "repo": REPO, "branch": f"{branch}-again", "message": "again",
                             "changes": [{"path": FILE, "content": text.replace(BEFORE, AFTER)}]}),
            ("devops_pr_create", {"project": PROJECT, "repo": REPO, "source_branch": branch, "title": "again"}),
            ("devops_pr_thread_reply", {"project": PROJECT, "repo": REPO, "pull_request_id": number,
                                        "content": "again"}),
        ):
            result = await client.call_tool(tool, arguments)
            refused.append((tool, result.is_error and _error(result).get("code") == "PolicyDenied", _error(result)))
    after = len(_devops_requests(manifest))
    out.step("read-only: the same writes refused by the local policy, nothing sent",
             all(ok for _, ok, _ in refused) and after == before,
             *[f"{tool}: {error.get('code')} {error.get('operation')} ({error.get('rule')})" for tool, _, error in refused],
             f"requests Azure DevOps saw meanwhile: {after - before}")
    result = verify_audit([audit_log])
    out.step("audit verify: the chain over both servers' records is intact", bool(result.ok),
             f"{result.records} records in {audit_log}")
