"""Service connections and variable groups: the secret-bearing resources of a project.

The service never returns a secret through these APIs: a service connection's secret
parameters and a secret variable's value come back as null. They exist so the policy has real
secret-bearing targets, and tests can prove no secret value ever leaves the sandbox.
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.sandbox.devops_errors import DevOpsFailure
from azure_agent_mcp.sandbox.devops_routes import Call, Route, integer, listing
from azure_agent_mcp.sandbox.devops_world import STAKEHOLDER, ServiceEndpoint, VariableGroup
from azure_agent_mcp.sandbox.protocol import Response, json_response


def _require_basic(call: Call, what: str) -> None:
    if call.member.access_level == STAKEHOLDER:
        raise DevOpsFailure(401, "UnauthorizedRequestException",
                            f"TF400813: The user '{call.tenant_id}\\{call.member.upn}' is not authorized to access "
                            f"this resource: Stakeholder access does not include {what}.")


def _endpoint_json(call: Call, e: ServiceEndpoint) -> dict[str, Any]:
    assert call.project is not None
    parameters = {k: (None if k in e.secret_parameters else v) for k, v in e.parameters.items()}
    return {"data": dict(e.data), "id": e.endpoint_id, "name": e.name, "type": e.kind, "url": e.url,
            "createdBy": call.ref(e.created_by), "description": "", "authorization": {"parameters": parameters,
                                                                                       "scheme": e.scheme},
            "isShared": False, "isReady": True, "owner": "Library",
            "serviceEndpointProjectReferences": [{"projectReference": {"id": call.project.project_id,
                                                                       "name": call.project.name},
                                                  "name": e.name, "description": ""}]}


def _endpoints(call: Call) -> Response:
    assert call.project is not None
    _require_basic(call, "service connections")
    return listing([_endpoint_json(call, e) for e in call.project.endpoints])


def _endpoint(call: Call) -> Response:
    assert call.project is not None
    _require_basic(call, "service connections")
    found = next((e for e in call.project.endpoints if e.endpoint_id == call.args["endpoint"].lower()), None)
    if found is None:
        raise DevOpsFailure(404, "ServiceEndpointNotFoundException",
                            f"Service connection {call.args['endpoint'][:60]} does not exist in project "
                            f"{call.project.name}.")
    return json_response(200, _endpoint_json(call, found))


def _group_json(call: Call, g: VariableGroup) -> dict[str, Any]:
    assert call.project is not None
    variables = {k: ({"value": None, "isSecret": True} if secret else {"value": v})
                 for k, (v, secret) in g.variables.items()}
    return {"variables": variables, "id": g.group_id, "type": "Vsts", "name": g.name, "description": g.description,
            "createdBy": call.ref(g.created_by), "createdOn": "2024-01-15T09:30:00.000Z",
            "modifiedBy": call.ref(g.created_by), "modifiedOn": "2024-01-15T09:30:00.000Z", "isShared": False,
            "variableGroupProjectReferences": [{"projectReference": {"id": call.project.project_id,
                                                                     "name": call.project.name},
                                                "name": g.name, "description": g.description}]}


def _groups(call: Call) -> Response:
    assert call.project is not None
    _require_basic(call, "pipelines libraries")
    return listing([_group_json(call, g) for g in call.project.variable_groups])


def _group(call: Call) -> Response:
    assert call.project is not None
    _require_basic(call, "pipelines libraries")
    wanted = integer(call.args["group"], "groupId")
    found = next((g for g in call.project.variable_groups if g.group_id == wanted), None)
    if found is None:
        raise DevOpsFailure(404, "VariableGroupNotFoundException",
                            f"Variable group {wanted} does not exist in project {call.project.name}.")
    return json_response(200, _group_json(call, found))


ROUTES = (
    Route("GET", ("serviceendpoint", "endpoints"), "AzureDevOps/serviceendpoint/endpoints/read", _endpoints),
    Route("GET", ("serviceendpoint", "endpoints", "{endpoint}"), "AzureDevOps/serviceendpoint/endpoints/read",
          _endpoint),
    Route("GET", ("distributedtask", "variablegroups"), "AzureDevOps/distributedtask/variablegroups/read", _groups),
    Route("GET", ("distributedtask", "variablegroups", "{group}"), "AzureDevOps/distributedtask/variablegroups/read",
          _group),
)
