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
    after = _platform_item(developer)
    assert after.get("relations", []) == before.get("relations", []), "Platform's work item was written through the fence"
    assert result.is_error and error_of(result)["code"] == "PolicyDenied", result.content
    assert [r for r in devops_journal(sandbox, since) if r["method"] != "GET"] == []


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
    after = _platform_item(developer)
    assert after.get("relations", []) == before.get("relations", []), "Platform's work item was written through the fence"
    assert result.is_error and error_of(result)["code"] == "PolicyDenied", result.content
    assert [r for r in devops_journal(sandbox, since) if r["method"] != "GET"] == []
