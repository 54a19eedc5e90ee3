"""Role assignments at a scope: who may do what, as Azure RBAC sees it."""

from __future__ import annotations

from azure_agent_mcp.tools import arguments
from azure_agent_mcp.tools.base import AzureTool, DeclaredOperation, PlannedRequest, ToolOutput
from azure_agent_mcp.tools.clients import ROLE_ASSIGNMENTS_API_VERSION, AzureSession


def _assignments_path(scope: str) -> str:
    return arguments.scope_id(scope.strip()).path + "/providers/Microsoft.Authorization/roleAssignments"


def role_assignment_list(azure: AzureSession, scope: str) -> ToolOutput:
    body = azure.arm("GET", _assignments_path(scope), ROLE_ASSIGNMENTS_API_VERSION).body or {}
    items = []
    for entry in body.get("value", []):
        props = entry.get("properties", {})
        items.append(
            {
                "id": entry.get("id"),
                "principalId": props.get("principalId"),
                "principalType": props.get("principalType"),
                "roleDefinitionId": props.get("roleDefinitionId"),
                "scope": props.get("scope"),
            }
        )
    return ToolOutput(f"{len(items)} role assignment(s) at or around {scope}.", {"scope": scope, "items": items})


def _plan(azure: AzureSession, scope: str) -> list[PlannedRequest]:
    return [PlannedRequest("GET", azure.arm_url(_assignments_path(scope), ROLE_ASSIGNMENTS_API_VERSION))]


TOOLS = (
    AzureTool(
        name="role_assignment_list",
        description="List Azure RBAC role assignments at a scope (subscription, resource group or resource id).",
        run=role_assignment_list,
        plan=_plan,
        operations=(DeclaredOperation("Microsoft.Authorization/roleAssignments/read"),),
    ),
)
