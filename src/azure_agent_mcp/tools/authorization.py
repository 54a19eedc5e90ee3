"""Azure RBAC as ARM sees it: role assignments at a scope, and what each role allows.

``role_definition_list`` lets the agent explain a 403: a role assignment names a role definition
id, and the definition lists the actions (and data actions) it grants and the ones it carves out.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlencode

from azure_agent_mcp.tools import arguments
from azure_agent_mcp.tools.base import AzureTool, DeclaredOperation, PlannedRequest, ToolInputError, ToolOutput
from azure_agent_mcp.tools.clients import ROLE_ASSIGNMENTS_API_VERSION, ROLE_DEFINITIONS_API_VERSION, AzureSession
from azure_agent_mcp.tools.schemas import LISTING

_DEFINITIONS = "/providers/Microsoft.Authorization/roleDefinitions"
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_ROLE_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


def _scope_path(scope: str) -> str:
    """The scope as a path prefix: ``""`` for the tenant root, else the checked resource id."""
    stripped = scope.strip()
    return "" if stripped == "/" else arguments.scope_id(stripped).path


# -- role_assignment_list ----------------------------------------------------------------------------


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


# -- role_definition_list ----------------------------------------------------------------------------

RoleType = Literal["BuiltInRole", "CustomRole"]


def _definition_path(azure: AzureSession, scope: str | None, role_id: str) -> str:
    """``{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}`` from a GUID or a full id."""
    value = role_id.strip()
    if value.startswith("/"):
        head, marker, guid = value.rpartition("/")
        lowered = head.lower()
        if not lowered.endswith(_DEFINITIONS.lower()) or not _GUID.fullmatch(guid):
            raise ToolInputError(
                f"'{value[:200]}' is not a role definition id.",
                hint="Pass the roleDefinitionId of a role assignment (.../providers/Microsoft.Authorization/"
                "roleDefinitions/<guid>) or the GUID alone.",
            )
        return _scope_path(head[: len(head) - len(_DEFINITIONS)] or "/") + _DEFINITIONS + "/" + guid.lower()
    if not _GUID.fullmatch(value):
        raise ToolInputError(f"role_id '{value[:60]}' is neither a GUID nor a role definition id.",
                             hint="Reader is acdd72a7-3385-48ef-bd42-f606fba81ae7, for example.")
    return _scope_path(_default_scope(azure, scope)) + _DEFINITIONS + "/" + value.lower()


def _default_scope(azure: AzureSession, scope: str | None) -> str:
    return scope if scope else f"/subscriptions/{azure.subscription_id(None)}"


def _filter(role_name: str | None, role_type: str | None) -> str | None:
    if role_name is not None:
        if not _ROLE_NAME.fullmatch(role_name):
            raise ToolInputError("role_name must be 1-128 printable characters, e.g. 'Storage Blob Data Reader'.")
        return "roleName eq '" + role_name.replace("'", "''") + "'"
    if role_type is not None:
        return f"type eq '{role_type}'"
    return None


def _request(
    azure: AzureSession, scope: str | None, role_name: str | None, role_id: str | None, role_type: str | None
) -> str:
    if role_id and role_name:
        raise ToolInputError("Pass role_name or role_id, not both.")
    if role_id:
        return _definition_path(azure, scope, role_id)
    path = _scope_path(_default_scope(azure, scope)) + _DEFINITIONS
    query = _filter(role_name, role_type)
    return path + ("?" + urlencode({"$filter": query}) if query else "")


def _definition(entry: dict[str, Any]) -> dict[str, Any]:
    props = entry.get("properties") or {}
    return {
        "id": entry.get("id"),
        "name": entry.get("name"),
        "roleName": props.get("roleName"),
        "type": props.get("type"),
        "description": props.get("description"),
        "assignableScopes": props.get("assignableScopes") or [],
        "permissions": [
            {key: list(p.get(key) or []) for key in ("actions", "notActions", "dataActions", "notDataActions")}
            for p in props.get("permissions") or []
        ],
    }


def role_definition_list(
    azure: AzureSession,
    scope: str | None = None,
    role_name: str | None = None,
    role_id: str | None = None,
    role_type: RoleType | None = None,
) -> ToolOutput:
    path = _request(azure, scope, role_name, role_id, role_type)
    body = azure.arm("GET", path, ROLE_DEFINITIONS_API_VERSION).body or {}
    entries = body.get("value", []) if role_id is None else [body]
    items = [_definition(e) for e in entries if isinstance(e, dict)]
    if role_type is not None:  # with a roleName filter the type is checked here (ARM takes one clause)
        items = [i for i in items if i["type"] == role_type]
    where = _default_scope(azure, scope)
    names = ", ".join(str(i["roleName"]) for i in items[:5]) + (", ..." if len(items) > 5 else "")
    return ToolOutput(f"{len(items)} role definition(s) at {where}" + (f": {names}." if items else "."),
                      {"scope": where, "items": items})


def _plan_definitions(
    azure: AzureSession,
    scope: str | None = None,
    role_name: str | None = None,
    role_id: str | None = None,
    role_type: str | None = None,
) -> list[PlannedRequest]:
    return [PlannedRequest("GET", azure.arm_url(_request(azure, scope, role_name, role_id, role_type),
                                                ROLE_DEFINITIONS_API_VERSION))]



TOOLS = (
    AzureTool(
        name="role_assignment_list",
        description="RBAC role assignments at a scope (subscription, group or resource id).",
        run=role_assignment_list,
        plan=_plan,
        operations=(DeclaredOperation("Microsoft.Authorization/roleAssignments/read"),),
        output_schema=LISTING,
    ),
    AzureTool(
        name="role_definition_list",
        description=(
            "What RBAC roles allow, to explain a 403: by role_name, role_id (a roleDefinitionId) or all at a scope."
        ),
        run=role_definition_list,
        plan=_plan_definitions,
        operations=(DeclaredOperation("Microsoft.Authorization/roleDefinitions/read"),),
        output_schema=LISTING,
    ),
)
