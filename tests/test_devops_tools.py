"""The devops_* tools through `serve` over stdio against the sandbox's Azure DevOps, for each credential path.

For the tagged developer, the agent user through user_fic, and the agent user through the sidecar
(the server holds no credential): every tool is called once in a realistic order, and the outcome
is read where it happened, in the sandbox: the token's principal on every request Azure DevOps
received, ``createdBy`` / commit author / PR creator in its state, and one audit intent with plane
``devops`` for each request it received.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest
from devops_serve_helpers import (
    KINDS,
    PROJECT,
    REPO,
    devops_journal,
    error_of,
    principal,
    reviewer_for,
    serve_params,
)
from mcp import Client
from server_helpers import audit_records

pytestmark = pytest.mark.anyio

SESSION_FILE = "/src/auth/session.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _ok(client: Any, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool}: {result.content[0].text}"
    return result.structured_content


async def _flow(client: Any, sandbox: Any, kind: str) -> dict[str, Any]:
    """Every devops tool once, as the design's agent would: work item, fix, push, PR, review thread."""
    me = principal(sandbox, kind)
    tag = uuid.uuid4().hex[:8]
    out: dict[str, Any] = {}
    projects = await _ok(client, "devops_project_list", {})
    out["projects"] = {p["name"] for p in projects["items"]}
    repos = await _ok(client, "devops_repo_list", {"project": PROJECT})
    assert any(r["name"] == REPO and r.get("defaultBranch") == "refs/heads/main" for r in repos["items"]), repos
    title = f"Fix login timeout {kind} {tag}"
    created = await _ok(client, "devops_work_item_create",
                        {"project": PROJECT, "type": "Bug", "title": title, "description": "Sessions expire after 5 s."})
    item_id = created["id"]
    assert created["fields"]["System.CreatedBy"]["uniqueName"].lower() == me["upn"].lower()
    got = await _ok(client, "devops_work_item_get", {"project": PROJECT, "id": item_id})
    assert got["fields"]["System.Title"] == title and got["fields"]["System.State"] == "New"
    found = await _ok(client, "devops_work_item_query", {
        "project": PROJECT,
        "wiql": f"SELECT [System.Id] FROM WorkItems WHERE [System.Title] = '{title}'",
    })
    assert [i["id"] for i in found["items"]] == [item_id] and found["items"][0]["state"] == "New"
    updated = await _ok(client, "devops_work_item_update", {"project": PROJECT, "id": item_id, "patch": [
        {"op": "test", "path": "/rev", "value": got["rev"]},
        {"op": "add", "path": "/fields/System.State", "value": "Active"},
    ]})
    assert updated["rev"] == got["rev"] + 1 and updated["fields"]["System.State"] == "Active"
    comment = await _ok(client, "devops_work_item_comment", {"project": PROJECT, "id": item_id, "text": "On it."})
    assert comment["createdBy"]["uniqueName"].lower() == me["upn"].lower()
    branches = await _ok(client, "devops_branch_list", {"project": PROJECT, "repo": REPO})
    main = next(b for b in branches["items"] if b["name"] == "main")
    source = await _ok(client, "devops_file_get", {"project": PROJECT, "repo": REPO, "path": SESSION_FILE})
    assert "LOGIN_TIMEOUT_SECONDS = 5" in source["content"]
    branch = f"fix/login-timeout-{kind}-{tag}"
    pushed = await _ok(client, "devops_push", {
        "project": PROJECT, "repo": REPO, "branch": branch, "message": f"Fix login timeout (AB#{item_id})",
        "changes": [{"path": SESSION_FILE,
                     "content": source["content"].replace("LOGIN_TIMEOUT_SECONDS = 5", "LOGIN_TIMEOUT_SECONDS = 30")}],
    })
    assert pushed["created"] is True and pushed["parent"] == main["objectId"]
    assert pushed["changes"] == [{"path": SESSION_FILE, "changeType": "edit"}]
    assert pushed["pushedBy"]["uniqueName"].lower() == me["upn"].lower()
    fixed = await _ok(client, "devops_file_get", {"project": PROJECT, "repo": REPO, "path": SESSION_FILE,
                                                  "branch": branch})
    assert "LOGIN_TIMEOUT_SECONDS = 30" in fixed["content"]
    reviewer = reviewer_for(sandbox, kind)
    pr = await _ok(client, "devops_pr_create", {
        "project": PROJECT, "repo": REPO, "source_branch": branch, "title": title,
        "reviewers": [reviewer], "work_items": [item_id],
    })
    number = pr["pullRequestId"]
    assert pr["createdBy"]["uniqueName"].lower() == me["upn"].lower()
    assert [r["uniqueName"].lower() for r in pr["reviewers"]] == [reviewer.lower()] and pr["workItems"] == [item_id]
    again = await _ok(client, "devops_pr_get", {"project": PROJECT, "repo": REPO, "pull_request_id": number})
    assert again["status"] == "active" and again["targetRefName"] == "refs/heads/main"
    assert again["sourceRefName"] == f"refs/heads/{branch}" and again["workItems"] == [item_id]
    opened = await _ok(client, "devops_pr_thread_reply", {"project": PROJECT, "repo": REPO, "pull_request_id": number,
                                                          "content": "The timeout is now 30 s."})
    reply = await _ok(client, "devops_pr_thread_reply", {"project": PROJECT, "repo": REPO, "pull_request_id": number,
                                                         "thread_id": opened["threadId"], "content": "Tests pass."})
    assert reply["threadId"] == opened["threadId"]
    threads = await _ok(client, "devops_pr_threads_list", {"project": PROJECT, "repo": REPO, "pull_request_id": number})
    mine = next(t for t in threads["items"] if t["id"] == opened["threadId"])
    assert [c["content"] for c in mine["comments"]] == ["The timeout is now 30 s.", "Tests pass."]
    assert {c["author"]["uniqueName"].lower() for c in mine["comments"]} == {me["upn"].lower()}
    out.update(item=item_id, branch=branch, pr=number, commit=pushed["commitId"], thread=opened["threadId"])
    return out


@pytest.mark.parametrize("kind", KINDS)
async def test_every_devops_tool_acts_as_the_credentials_principal(sandbox, tmp_path, kind):
    me = principal(sandbox, kind)
    since = sandbox.last_seq()
    audit = tmp_path / "audit.jsonl"
    params = serve_params(sandbox, tmp_path, kind, "--policy", "unrestricted", "--dangerously-skip-confirmation")
    async with Client(params) as client:
        outcome = await _flow(client, sandbox, kind)
    # the agent user is a member of Storefront only; the developer of both projects
    assert outcome["projects"] == ({"Storefront", "Platform"} if kind == "user" else {"Storefront"})
    received = devops_journal(sandbox, since)
    assert len(received) >= 15
    assert {r["token_claims"]["oid"] for r in received} == {me["oid"]}, "every request carried the principal's token"
    if kind == "user":  # the developer's token is tagged with the agent session, as for ARM
        assert all(r.get("token_session") for r in received)
    # what Azure DevOps recorded: the principal created the work item, authored the commit, opened the PR
    state = sandbox.devops_state()
    item = next(w for w in state["work_items"] if w["id"] == outcome["item"])
    assert item["fields"]["System.CreatedBy"].lower() == me["upn"].lower()
    assert [c["created_by"].lower() for c in item["comments"]] == [me["upn"].lower()]
    repo = next(r for p in state["projects"] if p["name"] == PROJECT for r in p["repositories"] if r["name"] == REPO)
    assert repo["refs"][f"refs/heads/{outcome['branch']}"] == outcome["commit"]
    assert repo["commits"][outcome["commit"]]["author"].lower() == me["upn"].lower()
    pr = next(p for p in repo["pull_requests"] if p["id"] == outcome["pr"])
    assert pr["created_by"].lower() == me["upn"].lower() and pr["work_items"] == [outcome["item"]]
    thread = next(t for t in pr["threads"] if t["id"] == outcome["thread"])
    assert {c["author"].lower() for c in thread["comments"]} == {me["upn"].lower()}
    # one intent per request Azure DevOps received, on the devops plane, naming the principal
    intents = [r for r in audit_records(audit, "intent") if r.get("plane") == "devops"]
    assert len(intents) == len(received)
    assert {i["operation"].split("/")[0] for i in intents} == {"AzureDevOps"}
    assert all(i["scope"].startswith("/organizations/contoso") for i in intents)
    assert {i["principal"]["oid"] for i in intents} == {me["oid"]}
    text = audit.read_text()
    assert "eyJ" not in text, "no token in the audit"


@pytest.mark.parametrize("kind", KINDS)
async def test_read_only_refuses_every_devops_write_with_nothing_sent(sandbox, tmp_path, kind):
    params = serve_params(sandbox, tmp_path, kind, "--policy", "read-only")
    since = sandbox.last_seq()
    writes = {
        "devops_work_item_create": {"project": PROJECT, "type": "Bug", "title": "never"},
        "devops_work_item_update": {"project": PROJECT, "id": 1, "patch": [
            {"op": "add", "path": "/fields/System.State", "value": "Closed"}]},
        "devops_work_item_comment": {"project": PROJECT, "id": 1, "text": "never"},
        "devops_push": {"project": PROJECT, "repo": REPO, "branch": "never", "message": "never",
                        "changes": [{"path": "/never.txt", "content": "x"}]},
        "devops_pr_create": {"project": PROJECT, "repo": REPO, "source_branch": "never", "title": "never"},
        "devops_pr_thread_reply": {"project": PROJECT, "repo": REPO, "pull_request_id": 1, "content": "never"},
    }
    async with Client(params) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        assert not listed & set(writes), "write tools are hidden under read-only"
        assert {"devops_project_list", "devops_work_item_query", "devops_pr_threads_list"} <= listed
        for tool, arguments in writes.items():
            result = await client.call_tool(tool, arguments)
            assert result.is_error and error_of(result)["code"] == "PolicyDenied", (tool, result.content)
            assert error_of(result)["operation"].startswith("AzureDevOps/")
    assert devops_journal(sandbox, since) == [], "nothing reached Azure DevOps"
    records = [r for r in audit_records(tmp_path / "audit.jsonl", "tool") if r.get("tool") in writes]
    assert len(records) == len(writes) and {r["decision"] for r in records} == {"deny"}


async def test_without_an_organization_no_devops_tool_is_offered(sandbox, tmp_path):
    params = serve_params(sandbox, tmp_path, "user", "--policy", "unrestricted", organization=False)
    async with Client(params) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        assert listed and not {n for n in listed if n.startswith("devops_")}
        result = await client.call_tool("devops_project_list", {})
        assert result.is_error


async def test_bad_input_gets_the_services_error_and_what_to_do(sandbox, tmp_path):
    params = serve_params(sandbox, tmp_path, "user", "--policy", "unrestricted", "--dangerously-skip-confirmation")
    async with Client(params) as client:
        wiql = await client.call_tool("devops_work_item_query", {"project": PROJECT, "wiql": "SELEKT nothing"})
        error = error_of(wiql)
        assert wiql.is_error and error["status"] == 400 and "WIQL" in error["hint"], error
        assert error["service"] == "Azure DevOps" and error["message"]
        text = wiql.content[0].text
        assert text.startswith(error["code"] + ":") and text.count(error["code"] + ":") == 1, text  # said once

        unknown = await client.call_tool("devops_work_item_create", {"project": PROJECT, "type": "Bugg", "title": "x"})
        error = error_of(unknown)
        assert unknown.is_error and error["status"] in (400, 404) and "Bugg" in error["message"], error
        assert "User Story" in error["hint"]

        created = await _ok(client, "devops_work_item_create", {"project": PROJECT, "type": "Task", "title": "patch me"})
        stale = await client.call_tool("devops_work_item_update", {"project": PROJECT, "id": created["id"], "patch": [
            {"op": "test", "path": "/rev", "value": created["rev"] + 5},
            {"op": "add", "path": "/fields/System.State", "value": "Active"},
        ]})
        error = error_of(stale)
        assert stale.is_error and error["status"] >= 400 and "patch" in error["hint"].lower(), error
        still = await _ok(client, "devops_work_item_get", {"project": PROJECT, "id": created["id"]})
        assert still["fields"]["System.State"] == "New" and still["rev"] == created["rev"]
        shape = await client.call_tool("devops_work_item_update", {"project": PROJECT, "id": created["id"],
                                                                   "patch": [{"op": "frobnicate", "path": "/x"}]})
        assert shape.is_error and error_of(shape)["code"] == "InvalidArgument"

        branch = f"conflict-{uuid.uuid4().hex[:8]}"
        first = await _ok(client, "devops_push", {"project": PROJECT, "repo": REPO, "branch": branch, "message": "one",
                                                  "changes": [{"path": "/notes/one.txt", "content": "1"}]})
        since = sandbox.last_seq()
        moved = await client.call_tool("devops_push", {
            "project": PROJECT, "repo": REPO, "branch": branch, "message": "two", "expected_commit": first["parent"],
            "changes": [{"path": "/notes/two.txt", "content": "2"}]})
        error = error_of(moved)
        assert moved.is_error and error["status"] == 409 and "devops_branch_list" in error["hint"], error
        assert [r for r in devops_journal(sandbox, since) if r["method"] == "POST"][-1]["status"] == 409
        branches = await _ok(client, "devops_branch_list", {"project": PROJECT, "repo": REPO, "prefix": branch})
        assert [b["objectId"] for b in branches["items"] if b["name"] == branch] == [first["commitId"]], \
            "the failed push left the branch where it was"
        orphan = f"orphan-{uuid.uuid4().hex[:8]}"
        failed = await client.call_tool("devops_push", {"project": PROJECT, "repo": REPO, "branch": orphan,
                                                        "message": "x", "base": "f" * 40,
                                                        "changes": [{"path": "/x.txt", "content": "x"}]})
        assert failed.is_error
        branches = await _ok(client, "devops_branch_list", {"project": PROJECT, "repo": REPO, "prefix": orphan})
        assert branches["items"] == [], "a failed push leaves no branch behind"

        since = sandbox.last_seq()
        nobody = await client.call_tool("devops_pr_create", {
            "project": PROJECT, "repo": REPO, "source_branch": branch, "title": "x",
            "reviewers": ["nobody-here@contoso.example"]})
        error = error_of(nobody)
        assert nobody.is_error and error["code"] == "ReviewerNotFound" and "nobody-here" in error["message"], error
        assert not [r for r in devops_journal(sandbox, since) if r["method"] == "POST"], "no pull request was attempted"


async def test_a_project_the_agent_user_cannot_see_is_explained(sandbox, tmp_path):
    params = serve_params(sandbox, tmp_path, "sidecar", "--policy", "unrestricted")
    async with Client(params) as client:
        result = await client.call_tool("devops_repo_list", {"project": "Platform"})
        error = error_of(result)
        assert result.is_error and error["status"] == 404 and error["code"].startswith("TF"), error
        assert "devops_project_list" in error["hint"] and "Platform" in error["message"] + error["hint"]
        guid = await client.call_tool("devops_repo_list", {"project": str(uuid.uuid4())})
        assert guid.is_error and error_of(guid)["code"] == "InvalidArgument" and "GUID" in error_of(guid)["message"]
        assert json.dumps(result.structured_content).count("eyJ") == 0


async def test_a_devops_write_the_policy_confirms_asks_the_user_first(sandbox, tmp_path):
    """Confirm on pushes: the user is asked, naming the operation and the repository; declined, nothing is sent."""
    policy = tmp_path / "confirm-pushes.json"
    policy.write_text(json.dumps({"Name": "confirm-pushes", "Actions": ["*"],
                                  "Confirm": ["AzureDevOps/git/repositories/pushes/write"]}))
    asked: list[str] = []
    answers = iter(["decline", "accept"])

    async def answer(context: Any, params: Any) -> Any:
        from mcp_types import ElicitResult

        asked.append(params.message)
        action = next(answers)
        return ElicitResult(action=action, content={"approve": True} if action == "accept" else None)

    params = serve_params(sandbox, tmp_path, "agent_user", "--policy", str(policy))
    push = {"project": PROJECT, "repo": REPO, "branch": f"confirmed-{uuid.uuid4().hex[:8]}", "message": "m",
            "changes": [{"path": "/confirmed.txt", "content": "yes"}]}
    async with Client(params, elicitation_callback=answer) as client:
        since = sandbox.last_seq()
        declined = await client.call_tool("devops_push", push)
        assert declined.is_error and error_of(declined)["code"] == "ConfirmationDeclined"
        assert devops_journal(sandbox, since) == [], "nothing was sent before the user answered, nor after a no"
        approved = await client.call_tool("devops_push", push)
        assert not approved.is_error, approved.content
    assert len(asked) == 2
    assert "AzureDevOps/git/repositories/pushes/write" in asked[0]
    assert f"/organizations/contoso/projects/{PROJECT}/repositories/{REPO}" in asked[0]
    assert principal(sandbox, "agent_user")["upn"] in asked[0]
    sent = devops_journal(sandbox, since)
    assert [r["method"] for r in sent if r["method"] != "GET"] == ["POST"]


def test_a_bad_organization_name_stops_serve_before_it_starts(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "serve", "--devops-organization", "not/an org"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "AZURE_AGENT_MCP_STATE_DIR": str(tmp_path)})
    assert done.returncode == 2 and "--devops-organization" in done.stderr and "organization name" in done.stderr


def test_the_devops_token_never_reaches_a_result_the_audit_or_stderr(sandbox, tmp_path):
    """Through the sidecar: the bearer token Azure DevOps received (same ``uti``) is in none of the bytes the
    server produced: tool results (successes and errors), the audit log, stderr."""
    from conftest import decode_claims
    from devops_helpers import agent_user_token
    from devops_serve_helpers import credential_args
    from serve_helpers import StdioServe

    audit = tmp_path / "audit.jsonl"
    since = sandbox.last_seq()
    calls = [
        ("devops_project_list", {}),
        ("devops_repo_list", {"project": "Platform"}),  # 404 TF200016
        ("devops_work_item_query", {"project": PROJECT, "wiql": "SELECT nonsense"}),  # 400
        ("devops_work_item_create", {"project": PROJECT, "type": "Task", "title": "token check"}),
        ("devops_pr_create", {"project": PROJECT, "repo": REPO, "source_branch": "missing", "title": "x",
                              "target_branch": "main"}),  # 400 TF401398
    ]
    with StdioServe(sandbox, audit, tmp_path / "state", "--policy", "unrestricted", "--devops-organization", "contoso",
                    *credential_args(sandbox, "sidecar")) as serve:
        results = [serve.call(tool, arguments) for tool, arguments in calls]
        stderr = serve.stderr_bytes()
    assert [bool(r.get("isError")) for r in results] == [False, True, True, False, True]
    token = agent_user_token(sandbox.manifest)  # the sidecar's cached token for the agent user: the one used
    received = devops_journal(sandbox, since)
    assert received and {r["token_claims"]["uti"] for r in received} == {decode_claims(token)["uti"]}
    produced = json.dumps(results).encode() + audit.read_bytes() + stderr
    for needle in (token, token.split(".")[2], token.split(".")[1]):
        assert needle.encode() not in produced
    assert b"eyJ" not in produced


async def test_a_policy_fenced_to_one_repository_keeps_the_developer_out_of_the_rest(sandbox, tmp_path):
    """The developer can reach both projects in Azure DevOps; a policy fenced to storefront-web stops the agent
    at the fence locally (nothing sent), and lets it work inside."""
    fence = "/organizations/contoso/projects/Storefront/repositories/storefront-web"
    policy = tmp_path / "fenced.json"
    policy.write_text(json.dumps({"Name": "storefront-web-only", "Actions": ["AzureDevOps/*"],
                                  "AssignableScopes": [fence]}))
    params = serve_params(sandbox, tmp_path, "user", "--policy", str(policy))
    async with Client(params) as client:
        inside = await client.call_tool("devops_branch_list", {"project": PROJECT, "repo": REPO})
        assert not inside.is_error, inside.content
        since = sandbox.last_seq()
        for tool, arguments in (
            ("devops_repo_list", {"project": "Platform"}),
            ("devops_branch_list", {"project": "Platform", "repo": "platform-infra"}),
            ("devops_project_list", {}),
            ("devops_work_item_create", {"project": PROJECT, "type": "Bug", "title": "outside the fence"}),
        ):
            result = await client.call_tool(tool, arguments)
            assert result.is_error and error_of(result)["code"] == "PolicyDenied", (tool, result.content)
        assert devops_journal(sandbox, since) == []
