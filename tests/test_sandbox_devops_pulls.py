"""The sandbox's Azure DevOps pull requests: reviewers, linked work items, threads and replies, votes."""

from __future__ import annotations

import pytest
from devops_helpers import API, callers, edit, push_body, service_error

REPO = "Storefront/_apis/git/repositories/storefront-web"
PULLS = f"{REPO}/pullrequests"
AGENT_UPN = "agent-orders@sandbox.onmicrosoft.com"
DEV_UPN = "developer@sandbox.onmicrosoft.com"


@pytest.fixture
def fresh(fresh_sandbox_state, sandbox_tokens):
    return callers(fresh_sandbox_state, sandbox_tokens)


def _branch(caller, name="fix/login"):
    base = caller.tip("Storefront", "storefront-web")
    caller.ok("POST", f"{REPO}/pushes", 201,
              json=push_body(name, base, [edit("/src/auth/session.py", "LOGIN_TIMEOUT_SECONDS = 30\n")]))
    return f"refs/heads/{name}"


def _bug(caller, title="Fix login timeout"):
    return caller.ok("POST", "Storefront/_apis/wit/workitems/$Bug",
                     patch=[{"op": "add", "path": "/fields/System.Title", "value": title}])["id"]


def _pr(caller, source, **extra):
    body = {"sourceRefName": source, "targetRefName": "refs/heads/main", "title": "Fix login timeout",
            "description": "Raise the timeout.", **extra}
    return caller.ok("POST", PULLS, 201, json=body)


def test_a_pull_request_with_a_reviewer_and_a_linked_work_item(sandbox, fresh):
    agent = fresh["agent"]
    source = _branch(agent)
    wid = _bug(agent)
    developer = agent.vsid(DEV_UPN)
    pr = _pr(agent, source, reviewers=[{"id": developer}], workItemRefs=[{"id": str(wid)}])
    assert pr["createdBy"]["uniqueName"] == AGENT_UPN and pr["status"] == "active"
    assert pr["sourceRefName"] == source and pr["targetRefName"] == "refs/heads/main"
    assert [(r["uniqueName"], r["vote"], r["id"]) for r in pr["reviewers"]] == [(DEV_UPN, 0, developer)]
    assert pr["workItemRefs"] == [{"id": str(wid), "url": pr["workItemRefs"][0]["url"]}]
    assert pr["lastMergeSourceCommit"]["commitId"] == agent.tip("Storefront", "storefront-web", "fix/login")
    again = agent.ok("GET", f"{PULLS}/{pr['pullRequestId']}")
    assert again["title"] == "Fix login timeout" and again["codeReviewId"] == pr["pullRequestId"]
    assert [p["pullRequestId"] for p in agent.ok("GET", PULLS)["value"]] == [pr["pullRequestId"]]
    linked = agent.ok("GET", f"{PULLS}/{pr['pullRequestId']}/workitems")
    assert [w["id"] for w in linked["value"]] == [str(wid)]
    item = agent.ok("GET", f"Storefront/_apis/wit/workitems/{wid}", params={**API, "$expand": "relations"})
    assert item["rev"] == 2
    assert item["relations"][0]["rel"] == "ArtifactLink" and item["relations"][0]["url"] == pr["artifactId"]
    state = [r for p in sandbox.devops_state()["projects"] for r in p["repositories"]][0]["pull_requests"][0]
    assert state["created_by"] == AGENT_UPN and state["reviewers"][0]["upn"] == DEV_UPN
    assert state["work_items"] == [wid]
    entry = [e for e in sandbox.requests(kind="devops") if e["path"].endswith("/pullrequests")][0]
    assert entry["operation"] == "AzureDevOps/git/repositories/pullRequests/write"


def test_pull_request_errors_are_the_service_errors(fresh):
    agent = fresh["agent"]
    source = _branch(agent)
    message = service_error(agent.post(PULLS, json={"sourceRefName": "refs/heads/ghost", "targetRefName":
                                                    "refs/heads/main", "title": "x"}), 400,
                            "InvalidArgumentValueException", "TF401398")
    assert "no longer exists" in message
    message = service_error(agent.post(PULLS, json={"sourceRefName": source, "targetRefName": "refs/heads/main",
                                                    "title": "x", "reviewers": [{"id": "no-such-person"}]}),
                            400, "InvalidArgumentValueException")
    assert "The identity no-such-person is not recognized" in message
    message = service_error(agent.post(PULLS, json={"sourceRefName": source, "targetRefName": "refs/heads/main",
                                                    "title": "x", "workItemRefs": [{"id": "4"}]}),  # a Platform item
                            400, "InvalidArgumentValueException", "TF401232")
    service_error(agent.post(PULLS, json={"sourceRefName": source, "targetRefName": "refs/heads/main"}), 400,
                  "InvalidArgumentValueException")
    assert agent.ok("GET", PULLS)["count"] == 0  # nothing was created by the refused requests
    _pr(agent, source)
    service_error(agent.post(PULLS, json={"sourceRefName": source, "targetRefName": "refs/heads/main",
                                          "title": "again"}), 409, "GitPullRequestExistsException", "TF401179")
    service_error(agent.get(f"{PULLS}/999"), 404, "GitPullRequestNotFoundException", "TF401180")
    service_error(fresh["reader"].get(PULLS), 404, "GitRepositoryNotFoundException", "TF401019")


def test_the_reviewer_comments_and_the_agent_reads_and_replies(sandbox, fresh):
    agent, developer = fresh["agent"], fresh["developer"]
    pr = _pr(agent, _branch(agent), reviewers=[{"id": agent.vsid(DEV_UPN)}])
    threads = f"{PULLS}/{pr['pullRequestId']}/threads"
    thread = developer.ok("POST", threads, json={
        "comments": [{"parentCommentId": 0, "content": "Why 30 seconds? Please make it configurable.",
                      "commentType": 1}],
        "status": 1, "threadContext": {"filePath": "/src/auth/session.py", "rightFileStart": {"line": 5, "offset": 1},
                                       "rightFileEnd": {"line": 5, "offset": 30}}})
    assert thread["status"] == "active" and thread["comments"][0]["author"]["uniqueName"] == DEV_UPN
    listed = agent.ok("GET", threads)
    assert listed["count"] == 1
    assert listed["value"][0]["comments"][0]["content"].startswith("Why 30 seconds?")
    assert listed["value"][0]["threadContext"]["filePath"] == "/src/auth/session.py"
    reply = agent.ok("POST", f"{threads}/{thread['id']}/comments",
                     json={"parentCommentId": 1, "content": "Made it configurable.", "commentType": "text"})
    assert reply["author"]["uniqueName"] == AGENT_UPN and reply["parentCommentId"] == 1 and reply["id"] == 2
    comments = agent.ok("GET", f"{threads}/{thread['id']}/comments")
    assert [(c["author"]["uniqueName"], c["parentCommentId"]) for c in comments["value"]] == [(DEV_UPN, 0),
                                                                                             (AGENT_UPN, 1)]
    fixed = agent.ok("PATCH", f"{threads}/{thread['id']}", json={"status": "fixed"})
    assert fixed["status"] == "fixed"
    service_error(agent.post(f"{threads}/{thread['id']}/comments", json={"parentCommentId": 42, "content": "?"}),
                  400, "InvalidArgumentValueException")
    service_error(agent.post(f"{threads}/{thread['id']}/comments", json={"content": ""}), 400,
                  "InvalidArgumentValueException")
    service_error(agent.get(f"{threads}/77"), 404, "GitPullRequestCommentThreadNotFoundException")
    service_error(agent.post(threads, json={"comments": []}), 400, "InvalidArgumentValueException")
    state = [r for p in sandbox.devops_state()["projects"] for r in p["repositories"]][0]["pull_requests"][0]
    assert [(c["author"], c["content"]) for c in state["threads"][0]["comments"]] == [
        (DEV_UPN, "Why 30 seconds? Please make it configurable."), (AGENT_UPN, "Made it configurable.")]
    ops = {e["operation"] for e in sandbox.requests(kind="devops") if "/threads" in e["path"]}
    assert {"AzureDevOps/git/repositories/pullRequests/threads/write",
            "AzureDevOps/git/repositories/pullRequests/threads/read",
            "AzureDevOps/git/repositories/pullRequests/threads/comments/write"} <= ops


def test_votes_are_cast_by_the_reviewer_only_and_abandon_reactivate(fresh):
    agent, developer = fresh["agent"], fresh["developer"]
    pr = _pr(agent, _branch(agent), reviewers=[{"id": agent.vsid(DEV_UPN)}])
    base = f"{PULLS}/{pr['pullRequestId']}"
    dev_id = agent.vsid(DEV_UPN)
    service_error(agent.request("PUT", f"{base}/reviewers/{dev_id}", json={"vote": 10}), 400,
                  "InvalidArgumentValueException")
    voted = developer.ok("PUT", f"{base}/reviewers/{dev_id}", json={"vote": 10})
    assert voted["vote"] == 10 and voted["uniqueName"] == DEV_UPN
    assert [r["vote"] for r in agent.ok("GET", f"{base}/reviewers")["value"]] == [10]
    service_error(developer.request("PUT", f"{base}/reviewers/{dev_id}", json={"vote": 7}), 400,
                  "InvalidArgumentValueException")
    abandoned = agent.ok("PATCH", base, json={"status": "abandoned"})
    assert abandoned["status"] == "abandoned" and "closedDate" in abandoned
    assert agent.ok("GET", PULLS)["count"] == 0
    assert agent.ok("GET", PULLS, params={**API, "searchCriteria.status": "abandoned"})["count"] == 1
    assert agent.ok("PATCH", base, json={"status": "active"})["status"] == "active"
    service_error(agent.request("PATCH", base, json={"status": "completed"}), 400, "InvalidArgumentValueException")


def test_the_admin_api_lets_a_member_comment_without_a_token(fresh_sandbox_state, sandbox_tokens):
    from azure_agent_mcp.sandbox import SandboxError

    sandbox = fresh_sandbox_state
    agent = callers(sandbox, sandbox_tokens)["agent"]
    pr = _pr(agent, _branch(agent))
    first = sandbox.devops_comment("storefront-web", pr["pullRequestId"], DEV_UPN, "Please add a test.")
    reply = sandbox.devops_comment("storefront-web", pr["pullRequestId"], DEV_UPN, "And a changelog line.",
                                   thread_id=first["thread_id"])
    assert (reply["thread_id"], reply["comment_id"]) == (first["thread_id"], 2)
    threads = agent.ok("GET", f"{PULLS}/{pr['pullRequestId']}/threads")["value"]
    assert [(c["author"]["uniqueName"], c["content"], c["parentCommentId"]) for c in threads[0]["comments"]] == [
        (DEV_UPN, "Please add a test.", 0), (DEV_UPN, "And a changelog line.", 1)]
    with pytest.raises(SandboxError, match="code access"):
        sandbox.devops_comment("storefront-web", pr["pullRequestId"], "reader@sandbox.onmicrosoft.com", "hi")
    with pytest.raises(SandboxError, match="No pull request"):
        sandbox.devops_comment("storefront-web", 999, DEV_UPN, "hi")
