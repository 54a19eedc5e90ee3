"""Azure DevOps' core area: the projects a caller can see (``GET {org}/_apis/projects[/{project}]``).

A caller sees only the projects it is a member of; any other name answers TF200016, exactly as a
project that does not exist, so membership cannot be probed.
"""

from __future__ import annotations

from azure_agent_mcp.sandbox.devops_errors import DevOpsFailure
from azure_agent_mcp.sandbox.devops_routes import Call, Route, listing
from azure_agent_mcp.sandbox.protocol import Response, json_response


def _list(call: Call) -> Response:
    visible = [p for p in call.org.projects.values() if p.name.lower() in call.member.roles]
    return listing([call.project_ref(p) for p in sorted(visible, key=lambda p: p.name)])


def _get(call: Call) -> Response:
    name = call.args["project"]
    project = call.org.project(name)
    if project is None or project.name.lower() not in call.member.roles:
        raise DevOpsFailure(404, "ProjectDoesNotExistWithNameException",
                            f"TF200016: The following project does not exist: {name[:200]}. Verify that the name of "
                            "the project is correct and that the project exists on the specified Azure DevOps "
                            "Server.")
    call.log["project"] = project.name
    body = call.project_ref(project)
    body["defaultTeam"] = {"id": f"{project.project_id[:-4]}7ea1", "name": f"{project.name} Team",
                           "url": f"{call.org_url}/_apis/projects/{project.project_id}/teams/{project.name} Team"}
    body["capabilities"] = {"versioncontrol": {"sourceControlType": "Git"},
                            "processTemplate": {"templateName": "Agile", "templateTypeId":
                                                "adcc42ab-9882-485e-a3ed-7678f01f66bc"}}
    return json_response(200, body)


ROUTES = (
    Route("GET", ("projects",), "AzureDevOps/core/projects/read", _list, level="org"),
    Route("GET", ("projects", "{project}"), "AzureDevOps/core/projects/read", _get, level="org"),
)
