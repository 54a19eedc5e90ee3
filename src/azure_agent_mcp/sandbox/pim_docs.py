"""The ARM documents of PIM's schedules, instances and requests (api-version 2020-10-01 shapes)."""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.sandbox.clock import iso
from azure_agent_mcp.sandbox.pim_policies import role_definition_ref, scope_type
from azure_agent_mcp.sandbox.pim_world import ActiveSchedule, Eligibility, ScheduleRequest, eligibility_id
from azure_agent_mcp.sandbox.rbac import BUILTIN_ROLES, RoleAssignment

_AUTH = "/providers/Microsoft.Authorization"


def expanded(world: Any, scope: str, role_definition_id: str, principal_id: str, principal_type: str) -> dict[str, Any]:
    """``expandedProperties``: names for the ids, so a listing can be read without more calls."""
    role = BUILTIN_ROLES.get(role_definition_id)
    name = world.principal_name(principal_id) if world is not None else None
    return {
        "principal": {"id": principal_id, "displayName": _display_name(world, principal_id) or name,
                      "email": name if principal_type == "User" else None, "type": principal_type},
        "roleDefinition": {"id": role_definition_ref(scope, role_definition_id),
                           "displayName": role.name if role else None, "type": "BuiltInRole"},
        "scope": {"id": scope, "displayName": scope.rsplit("/", 1)[-1] or "/", "type": scope_type(scope)},
    }


def _display_name(world: Any, object_id: str) -> str | None:
    if world is None:
        return None
    for collection in (world.users, world.agent_users, world.service_principals):
        for item in collection:
            if item.object_id == object_id:
                return item.display_name
    return None


def _time(value: float | None) -> str | None:
    return iso(value) if value is not None else None


def eligibility_schedule(world: Any, item: Eligibility) -> dict[str, Any]:
    return {
        "id": eligibility_id(item),
        "name": item.name,
        "type": "Microsoft.Authorization/roleEligibilitySchedules",
        "properties": {
            "scope": item.scope,
            "roleDefinitionId": role_definition_ref(item.scope, item.role_definition_id),
            "principalId": item.principal_id,
            "principalType": item.principal_type,
            "roleEligibilityScheduleRequestId": f"{item.scope}{_AUTH}/roleEligibilityScheduleRequests/"
                                                f"{item.request_name}",
            "memberType": "Direct",
            "status": "Provisioned",
            "startDateTime": _time(item.start),
            "endDateTime": _time(item.end),
            "condition": None,
            "conditionVersion": None,
            "createdOn": _time(item.start),
            "updatedOn": _time(item.start),
            "expandedProperties": expanded(world, item.scope, item.role_definition_id, item.principal_id,
                                           item.principal_type),
        },
    }


def eligibility_instance(world: Any, item: Eligibility) -> dict[str, Any]:
    return {
        "id": f"{item.scope}{_AUTH}/roleEligibilityScheduleInstances/{item.instance_name}",
        "name": item.instance_name,
        "type": "Microsoft.Authorization/roleEligibilityScheduleInstances",
        "properties": {
            "scope": item.scope,
            "roleDefinitionId": role_definition_ref(item.scope, item.role_definition_id),
            "principalId": item.principal_id,
            "principalType": item.principal_type,
            "roleEligibilityScheduleId": eligibility_id(item),
            "status": "Provisioned",
            "startDateTime": _time(item.start),
            "endDateTime": _time(item.end),
            "memberType": "Direct",
            "condition": None,
            "conditionVersion": None,
            "createdOn": _time(item.start),
            "expandedProperties": expanded(world, item.scope, item.role_definition_id, item.principal_id,
                                           item.principal_type),
        },
    }


def schedule_id(scope: str, name: str) -> str:
    return f"{scope}{_AUTH}/roleAssignmentSchedules/{name}"


def assignment_id(assignment: RoleAssignment) -> str:
    return f"{assignment.scope.rstrip('/')}{_AUTH}/roleAssignments/{assignment.id}"


def _schedule_common(world: Any, a: RoleAssignment, assignment_type: str, linked: str | None) -> dict[str, Any]:
    return {
        "scope": a.scope,
        "roleDefinitionId": role_definition_ref(a.scope, a.role_definition_id),
        "principalId": a.principal_id,
        "principalType": a.principal_type,
        "status": "Provisioned",
        "startDateTime": _time(a.start) if a.start is not None else a.created_on,
        "endDateTime": _time(a.end),
        "linkedRoleEligibilityScheduleId": linked,
        "assignmentType": assignment_type,
        "memberType": "Direct",
        "condition": None,
        "conditionVersion": None,
        "createdOn": a.created_on,
        "expandedProperties": expanded(world, a.scope, a.role_definition_id, a.principal_id, a.principal_type),
    }


def assignment_schedule(world: Any, schedule: ActiveSchedule | None, a: RoleAssignment) -> dict[str, Any]:
    """A PIM schedule, or the schedule Azure shows for a standing (permanent) role assignment."""
    name = schedule.name if schedule is not None else a.id
    props = _schedule_common(world, a, schedule.assignment_type if schedule else "Assigned",
                             schedule.linked_eligibility if schedule else None)
    props["roleAssignmentScheduleRequestId"] = (f"{a.scope}{_AUTH}/roleAssignmentScheduleRequests/"
                                                f"{schedule.request_name}" if schedule else None)
    props["updatedOn"] = props["createdOn"]
    return {"id": schedule_id(a.scope, name), "name": name, "type": "Microsoft.Authorization/roleAssignmentSchedules",
            "properties": props}


def assignment_instance(world: Any, schedule: ActiveSchedule | None, a: RoleAssignment) -> dict[str, Any]:
    name = schedule.name if schedule is not None else a.id
    props = _schedule_common(world, a, schedule.assignment_type if schedule else "Assigned",
                             schedule.linked_eligibility if schedule else None)
    props["roleAssignmentScheduleId"] = schedule_id(a.scope, name)
    props["originRoleAssignmentId"] = assignment_id(a)
    return {"id": f"{a.scope}{_AUTH}/roleAssignmentScheduleInstances/{name}", "name": name,
            "type": "Microsoft.Authorization/roleAssignmentScheduleInstances", "properties": props}


def schedule_request(world: Any, request: ScheduleRequest) -> dict[str, Any]:
    expiration: dict[str, Any] = {"type": request.expiration_type, "endDateTime": None, "duration": None}
    if request.expiration_type == "AfterDuration":
        expiration["duration"] = request.duration
    elif request.expiration_type == "AfterDateTime":
        expiration["endDateTime"] = _time(request.end)
    return {
        "id": f"{request.scope}{_AUTH}/roleAssignmentScheduleRequests/{request.name}",
        "name": request.name,
        "type": "Microsoft.Authorization/roleAssignmentScheduleRequests",
        "properties": {
            "scope": request.scope,
            "roleDefinitionId": role_definition_ref(request.scope, request.role_definition_id),
            "principalId": request.principal_id,
            "principalType": request.principal_type,
            "requestType": request.request_type,
            "status": request.status,
            "approvalId": request.approval_id,
            "targetRoleAssignmentScheduleId": request.target_schedule,
            "targetRoleAssignmentScheduleInstanceId": None,
            "scheduleInfo": {"startDateTime": _time(request.start), "expiration": expiration},
            "linkedRoleEligibilityScheduleId": request.linked_eligibility,
            "justification": request.justification,
            "ticketInfo": {"ticketNumber": request.ticket_info.get("ticketNumber"),
                           "ticketSystem": request.ticket_info.get("ticketSystem")},
            "condition": None,
            "conditionVersion": None,
            "createdOn": _time(request.created_on),
            "requestorId": request.requestor_id,
            "expandedProperties": expanded(world, request.scope, request.role_definition_id, request.principal_id,
                                           request.principal_type),
        },
    }
