"""Red team: writes that land outside an AssignableScopes fence through a request whose path is inside it.

A pull request created in a fenced repository with ``workItemRefs`` (and a work item created in a fenced
project with a parent link) changes the linked work item too: Azure DevOps adds an ``ArtifactLink`` (or
the reverse hierarchy link) to it, and work item ids are organization-wide. A fence on one repository
must not let the agent write onto another project's work item by naming its id.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from devops_helpers import callers
from devops_serve_helpers import PROJECT, REPO, devops_journal, error_of, serve_params
from mcp import Client

pytestmark = pytest.mark.anyio

FENCE = "/organizations/contoso/projects/Storefront/repositories/storefront-web"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _platform_item(developer: Any) -> dict[str, Any]:
    found = developer.ok("POST", "Platform/_apis/wit/wiql", json={
        "query": "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = 'Platform'"})
    wid = found["workItems"][0]["id"]
    return developer.ok("GET", f"Platform/_apis/wit/workItems/{wid}", params={"api-version": "7.1", "$expand": "relations"})


def _fenced_policy(tmp_path: Any) -> str:
    policy = tmp_path / "fenced.json"
    policy.write_text(json.dumps({"Name": "storefront-web-only", "Actions": ["AzureDevOps/*"],
                                  "AssignableScopes": [FENCE]}))
    return str(policy)


async def test_a_pull_request_in_the_fence_cannot_link_a_work_item_of_another_project(sandbox, sandbox_tokens, tmp_path):
    developer = callers(sandbox, sandbox_tokens)["developer"]
    before = _platform_item(developer)
    params = serve_params(sandbox, tmp_path, "user", "--policy", _fenced_policy(tmp_path))
    branch = f"redteam/link-{uuid.uuid4().hex[:8]}"
    async with Client(params) as client:
        pushed = await client.call_tool("devops_push", {
            "project": PROJECT, "repo": REPO, "branch": branch, "message": "inside the fence",
            "changes": [{"path": f"/notes/{branch.rsplit('/', 1)[1]}.md", "content": "hello\n"}]})
        assert not pushed.is_error, pushed.content
        since = sandbox.last_seq()
        result = await client.call_tool("devops_pr_create", {
            "project": PROJECT, "repo": REPO, "source_branch": branch, "title": "links Platform's item",
            "work_items": [before["id"]]})
    sent = [r for r in devops_journal(sandbox, since) if r["method"] != "GET"]
    after = _platform_item(developer)
    assert after.get("relations", []) == before.get("relations", []), "Platform's work item was written through the fence"
    assert result.is_error and error_of(result)["code"] == "PolicyDenied", result.content
    assert sent == []


async def test_a_work_item_created_in_the_fence_cannot_take_a_parent_in_another_project(sandbox, sandbox_tokens, tmp_path):
    developer = callers(sandbox, sandbox_tokens)["developer"]
    before = _platform_item(developer)
    policy = tmp_path / "project.json"
    policy.write_text(json.dumps({"Name": "storefront-only", "Actions": ["AzureDevOps/*"],
                                  "AssignableScopes": ["/organizations/contoso/projects/Storefront"]}))
    params = serve_params(sandbox, tmp_path, "user", "--policy", str(policy))
    async with Client(params) as client:
        since = sandbox.last_seq()
        result = await client.call_tool("devops_work_item_create", {
            "project": PROJECT, "type": "Task", "title": "child of Platform's item", "parent": before["id"]})
    sent = [r for r in devops_journal(sandbox, since) if r["method"] != "GET"]
    after = _platform_item(developer)
    assert after.get("relations", []) == before.get("relations", []), "Platform's work item was written through the fence"
    assert result.is_error and error_of(result)["code"] == "PolicyDenied", result.content
    assert sent == []


# The guard's decision on the request as sent, for any body an agent tool (or a crafted call) could send.
from azure_agent_mcp.policy import decide_request, parse_policy  # noqa: E402
from azure_agent_mcp.policy.effects import Effect  # noqa: E402
from azure_agent_mcp.policy.operations import Endpoints  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PUBLIC = Endpoints.public_cloud("contoso")
FENCED = parse_policy({"Name": "fenced", "Actions": ["AzureDevOps/*"], "AssignableScopes": [FENCE]}, source="test")
PR_URL = "https://dev.azure.com/contoso/Storefront/_apis/git/repositories/storefront-web/pullRequests?api-version=7.1"
WI_URL = "https://dev.azure.com/contoso/Storefront/_apis/wit/workItems/$Task?api-version=7.1"
PROJECT_FENCED = parse_policy({"Name": "project", "Actions": ["AzureDevOps/*"],
                               "AssignableScopes": ["/organizations/contoso/projects/Storefront"]}, source="test")


def _effect(policy: Any, url: str, body: Any) -> Effect:
    return decide_request(policy, PUBLIC, "POST", url, body)[0].effect


@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=5))
def test_the_guard_decides_a_linking_pull_request_at_the_organization(ids):
    body = json.dumps({"sourceRefName": "refs/heads/x", "workItemRefs": [{"id": str(i)} for i in ids]}).encode()
    assert _effect(FENCED, PR_URL, body) is Effect.DENY
    assert _effect(FENCED, PR_URL, json.dumps({"sourceRefName": "refs/heads/x"}).encode()) is Effect.ALLOW
    assert _effect(FENCED, PR_URL, json.dumps({"workItemRefs": []}).encode()) is Effect.ALLOW


@pytest.mark.parametrize("body", [
    b'{"workitemrefs": [{"id": "1"}]}',  # another case: the service reads keys case-insensitively
    b'{"workItemRefs": [], "workItemRefs": [{"id": "1"}]}',  # a duplicate: which one the service reads is a guess
    b'\xff{}',  # not UTF-8
    b'[{"workItemRefs": 1}',  # not JSON
])
def test_a_pull_request_body_the_guard_cannot_read_for_links_is_refused(body):
    assert _effect(FENCED, PR_URL, body) is Effect.DENY


@pytest.mark.parametrize("path", ["/relations/-", "/Relations/-", " /relations/0", "/relations"])
def test_a_work_item_created_with_a_relation_is_decided_at_the_organization(path):
    link = [{"op": "add", "path": "/fields/System.Title", "value": "t"},
            {"op": "add", "path": path, "value": {"rel": "System.LinkTypes.Hierarchy-Reverse",
                                                  "url": "https://dev.azure.com/contoso/_apis/wit/workItems/4"}}]
    assert _effect(PROJECT_FENCED, WI_URL, json.dumps(link).encode()) is Effect.DENY
    assert _effect(PROJECT_FENCED, WI_URL, json.dumps(link[:1]).encode()) is Effect.ALLOW
    assert _effect(parse_policy({"Name": "org", "Actions": ["AzureDevOps/*"]}, source="test"), WI_URL,
                   json.dumps(link).encode()) is Effect.ALLOW
