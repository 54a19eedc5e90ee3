"""Azure DevOps tools (``devops_*``): projects and repositories here; work items, git and pull requests in
``devops_wit``, ``devops_git`` and ``devops_pr``. Offered only with ``serve --devops-organization``.

Every request goes through ``AzureSession.devops()`` (``tools.devops_client``): the guard decides
each one under the Azure DevOps policy vocabulary (``AzureDevOps/<area>/<resource>/<verb>``,
scope ``/organizations/{org}/projects/{project}/repositories/{repo}``) and audits it, and the token
is the session's own, for Azure DevOps' audience. Projects and repositories are addressed by name,
never by id, so a policy fence on a name cannot be walked around with a GUID.
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.tools.base import AzureTool, DeclaredOperation, PlannedRequest, ToolOutput, clamp_top
from azure_agent_mcp.tools.clients import AzureSession
from azure_agent_mcp.tools.schemas import LISTING

PROJECTS_READ = "AzureDevOps/core/projects/read"
REPOSITORIES_READ = "AzureDevOps/git/repositories/read"


def identity(ref: Any) -> dict[str, Any] | None:
    """An IdentityRef as the tools return it: who, by name and id (never an avatar or a descriptor)."""
    if not isinstance(ref, dict):
        return None
    return {k: ref[k] for k in ("displayName", "uniqueName", "id") if ref.get(k) is not None}


def project_hint(project: str) -> str:
    return (f"Project '{project}' does not exist or this identity is not a member of it: devops_project_list shows "
            "the projects it can see.")


# -- devops_project_list ---------------------------------------------------------------------


def _projects_url(azure: AzureSession) -> str:
    return azure.devops().org_url("projects", {"$top": str(clamp_top(None))})


def devops_project_list(azure: AzureSession) -> ToolOutput:
    body = azure.devops().send("GET", _projects_url(azure)).body or {}
    items = [{k: p[k] for k in ("name", "id", "state", "visibility", "description") if p.get(k) is not None}
             for p in body.get("value", [])]
    org = azure.devops().organization
    return ToolOutput(f"{len(items)} project(s) in {org} visible to this identity.", {"organization": org, "items": items})


def _plan_project_list(azure: AzureSession) -> list[PlannedRequest]:
    return [PlannedRequest("GET", _projects_url(azure))]


# -- devops_repo_list ------------------------------------------------------------------------


def devops_repo_list(azure: AzureSession, project: str) -> ToolOutput:
    client = azure.devops()
    body = client.send("GET", client.project_url(project, "git/repositories"), hint={404: project_hint(project)}).body or {}
    items = [{k: r[k] for k in ("name", "id", "defaultBranch", "webUrl", "remoteUrl") if r.get(k) is not None}
             for r in body.get("value", [])]
    return ToolOutput(f"{len(items)} repositor{'y' if len(items) == 1 else 'ies'} in {project}.",
                      {"project": project, "items": items})


def _plan_repo_list(azure: AzureSession, project: str) -> list[PlannedRequest]:
    return [PlannedRequest("GET", azure.devops().project_url(project, "git/repositories"))]


_TOOLS = (
    AzureTool(
        name="devops_project_list",
        description="Azure DevOps projects this identity can see.",
        run=devops_project_list,
        plan=_plan_project_list,
        operations=(DeclaredOperation(PROJECTS_READ),),
        output_schema=LISTING,
    ),
    AzureTool(
        name="devops_repo_list",
        description="A project's Git repositories.",
        run=devops_repo_list,
        plan=_plan_repo_list,
        operations=(DeclaredOperation(REPOSITORIES_READ),),
        output_schema=LISTING,
    ),
)


def _all() -> tuple[AzureTool, ...]:
    from azure_agent_mcp.tools import devops_git, devops_pr, devops_wit

    return (*_TOOLS, *devops_wit.TOOLS, *devops_git.TOOLS, *devops_pr.TOOLS)


def __getattr__(name: str) -> Any:  # TOOLS built on first use: the three modules import this one
    if name == "TOOLS":
        return _all()
    raise AttributeError(name)
