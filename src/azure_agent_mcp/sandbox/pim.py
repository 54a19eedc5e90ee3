"""Privileged Identity Management for Azure resources, as ARM serves it: a room on the ARM plane.

``{scope}/providers/Microsoft.Authorization/`` + roleEligibilitySchedules, roleEligibilityScheduleInstances,
roleAssignmentScheduleRequests (PUT, GET, list, ``/cancel``, ``/validate``), roleAssignmentSchedules,
roleAssignmentScheduleInstances, roleManagementPolicies, roleManagementPolicyAssignments.

Listings at a scope return what applies at, above or below it (as PIM's ``asTarget()`` views do).
``$filter=asTarget()`` (the caller's own) needs no permission, as in Azure where every eligible user
may read their eligibilities; any other listing needs the collection's ``read`` at the scope.
Assignment schedules and instances show standing role assignments too (``assignmentType:
Assigned``, no end), as Azure does; PIM's time-bound ones disappear at their end on the sandbox clock.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable

from azure_agent_mcp.sandbox import pim_docs
from azure_agent_mcp.sandbox.arm import ArmFailure, request_body
from azure_agent_mcp.sandbox.clock import iso
from azure_agent_mcp.sandbox.pim_policies import PimRequestError, policy_assignment_document, policy_document
from azure_agent_mcp.sandbox.pim_requests import RequestProcessor
from azure_agent_mcp.sandbox.protocol import Response, json_response
from azure_agent_mcp.sandbox.rbac import BUILTIN_ROLES, scope_contains

if TYPE_CHECKING:
    from azure_agent_mcp.sandbox.access import Principal
    from azure_agent_mcp.sandbox.arm import ArmPlane
    from azure_agent_mcp.sandbox.armpath import ArmTarget
    from azure_agent_mcp.sandbox.protocol import Request

COLLECTIONS = {c.lower(): c for c in (
    "roleEligibilitySchedules", "roleEligibilityScheduleInstances", "roleAssignmentScheduleRequests",
    "roleAssignmentSchedules", "roleAssignmentScheduleInstances", "roleManagementPolicies",
    "roleManagementPolicyAssignments",
)}
API_VERSIONS = ("2020-10-01", "2020-10-01-preview", "2022-04-01-preview", "2024-02-01-preview", "2024-09-01-preview")
_CLAUSE = re.compile(r"^\s*(principalId|roleDefinitionId|status)\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_FUNCTION = re.compile(r"^\s*(asTarget|asRequestor|atScope)\(\s*\)\s*$", re.IGNORECASE)
_SUBSCRIPTION_ALIAS = re.compile(r"^/providers/microsoft\.subscription(?=/subscriptions/)", re.IGNORECASE)


def _locate(low: list[str]) -> int | None:
    for i in range(len(low) - 2, -1, -1):
        if low[i] == "providers" and low[i + 1] == "microsoft.authorization" and i + 2 < len(low):
            return i if low[i + 2] in COLLECTIONS else None
    return None


class PimRoom:
    def __init__(self, plane: ArmPlane) -> None:
        self.plane = plane
        self.requests = RequestProcessor(plane.state, plane)

    @property
    def state(self) -> Any:
        return self.plane.state

    def serves(self, method: str, lowered_parts: list[str]) -> bool:
        return _locate(lowered_parts) is not None

    def handle(self, request: Request, parts: list[str], target: ArmTarget, principal: Principal) -> Response:
        low = [p.lower() for p in parts]
        index = _locate(low)
        assert index is not None
        scope = _SUBSCRIPTION_ALIAS.sub("", "/" + "/".join(parts[:index])) if index else "/"
        collection = COLLECTIONS[low[index + 2]]
        tail = parts[index + 3:]
        version = request.query_ci("api-version") or ""
        if version not in API_VERSIONS:
            raise ArmFailure(400, "NoRegisteredProviderFound",
                             f"No registered resource provider found for location 'global' and API version "
                             f"'{version}' for type '{collection}'. The supported api-versions are "
                             f"'{', '.join(API_VERSIONS)}'.")
        scope = self._canonical_scope(scope)
        try:
            return self._route(request, collection, scope, tail, target, principal)
        except PimRequestError as exc:
            raise ArmFailure(exc.status, exc.code, exc.message) from None

    # -- routing -----------------------------------------------------------------------------------

    def _route(self, request: Request, collection: str, scope: str, tail: list[str], target: ArmTarget,
               principal: Principal) -> Response:
        method = request.method
        if collection == "roleAssignmentScheduleRequests":
            if len(tail) == 1 and method == "PUT":
                created = self.requests.create(principal, scope, tail[0], request_body(request))
                return json_response(201, pim_docs.schedule_request(self.state.world, created))
            if len(tail) == 2 and tail[1].lower() == "cancel" and method == "POST":
                return self._cancel(principal, scope, tail[0], target)
            if len(tail) == 2 and tail[1].lower() == "validate" and method == "POST":
                verdict = self.requests.create(principal, scope, tail[0], request_body(request), dry_run=True)
                return json_response(200, pim_docs.schedule_request(self.state.world, verdict))
        if method != "GET" or len(tail) > 1:
            raise ArmFailure(405 if len(tail) <= 1 else 404,
                             "MethodNotAllowed" if len(tail) <= 1 else "NotFound",
                             f"{method} is not supported on {collection} by the sandbox's PIM: read with GET; create "
                             "roleAssignmentScheduleRequests with PUT; cancel one with POST .../cancel.")
        items = self._items(collection, scope, principal)
        if tail:
            name = tail[0].lower()
            found = next(((owner, doc) for owner, doc in items if doc["name"].lower() == name), None)
            if found is None:
                raise ArmFailure(404, _not_found_code(collection),
                                 f"The {collection[:-1]} '{tail[0]}' could not be found at scope '{scope}'.")
            if found[0] is None or found[0].lower() != principal.object_id.lower():
                self.plane.require(principal, target.operation, scope)
            return json_response(200, found[1])
        filters = self._filters(request, collection)
        as_target = "astarget" in filters
        if not as_target:
            self.plane.require(principal, target.operation, scope)
        selected = [doc for owner, doc in items if _keep(doc, owner, filters, principal, scope)]
        return json_response(200, {"value": selected})

    def _items(self, collection: str, scope: str, principal: Principal) -> list[tuple[str | None, dict[str, Any]]]:
        """(principal the item is about, document) for everything of a collection at, above or below a scope."""
        world = self.state.world
        store = self.state.pim
        now = self.state.clock.now()

        def related(item_scope: str) -> bool:
            return scope_contains(item_scope, scope) or scope_contains(scope, item_scope)

        if collection in ("roleEligibilitySchedules", "roleEligibilityScheduleInstances"):
            render = pim_docs.eligibility_schedule if collection == "roleEligibilitySchedules" else \
                pim_docs.eligibility_instance
            return [(e.principal_id, render(world, e)) for e in store.eligibilities
                    if related(e.scope) and e.active_at(now)]
        if collection == "roleAssignmentScheduleRequests":
            return [(r.principal_id, pim_docs.schedule_request(world, r)) for r in store.requests.values()
                    if related(r.scope)]
        if collection in ("roleAssignmentSchedules", "roleAssignmentScheduleInstances"):
            render_a: Callable[..., dict[str, Any]] = (pim_docs.assignment_schedule
                                                       if collection == "roleAssignmentSchedules"
                                                       else pim_docs.assignment_instance)
            by_assignment = {id(s.assignment): s for s in store.schedules}
            out = []
            for a in world.role_assignments:
                if not related(a.scope) or not a.active_at(now):
                    continue
                schedule = by_assignment.get(id(a))
                if schedule is not None and not schedule.active_at(now):
                    continue
                out.append((a.principal_id, render_a(world, schedule, a)))
            return out
        if collection == "roleManagementPolicies":
            return [(None, policy_document(store.policy_for(scope, role))) for role in BUILTIN_ROLES]
        return [(None, policy_assignment_document(store.policy_for(scope, role))) for role in BUILTIN_ROLES]

    def _cancel(self, principal: Principal, scope: str, name: str, target: ArmTarget) -> Response:
        found = self.state.pim.requests.get(name.lower())
        if found is None or found.scope.lower() != scope.lower():
            raise ArmFailure(404, "RoleAssignmentScheduleRequestNotFound",
                             f"The role assignment schedule request '{name}' could not be found at scope '{scope}'.")
        if found.requestor_id.lower() != principal.object_id.lower():
            self.plane.require(principal, target.operation, scope)
        if found.status not in ("PendingApproval", "PendingApprovalProvisioning", "PendingAdminDecision"):
            raise ArmFailure(400, "RoleAssignmentRequestCannotBeCanceled",
                             f"Only a request waiting for approval can be canceled; this one is '{found.status}'.")
        found.status = "Canceled"
        return Response(200)

    # -- helpers -----------------------------------------------------------------------------------

    def _canonical_scope(self, scope: str) -> str:
        """The scope in the world's casing; ARM's not-found errors for scopes that do not exist."""
        parts = [p for p in scope.split("/") if p]
        world = self.state.world
        if not parts:
            return "/"
        if parts[0].lower() != "subscriptions" or len(parts) < 2:
            raise ArmFailure(400, "InvalidScope", f"The scope '{scope}' is not supported by the sandbox's PIM: use a "
                                                  "subscription, resource group or resource.")
        sub = next((s for s in world.subscriptions if s.lower() == parts[1].lower()), None)
        if sub is None:
            raise ArmFailure(404, "SubscriptionNotFound", f"The subscription '{parts[1]}' could not be found.")
        if len(parts) == 2:
            return f"/subscriptions/{sub}"
        group = world.groups.get(f"/subscriptions/{sub}/resourcegroups/{parts[3]}".lower()) if len(parts) >= 4 else None
        if group is None:
            raise ArmFailure(404, "ResourceGroupNotFound",
                             f"Resource group '{parts[3] if len(parts) > 3 else ''}' could not be found.")
        if len(parts) == 4:
            return group["id"]
        resource = world.resources.get(scope.lower()) or world.children.get(scope.lower())
        if resource is None:
            raise ArmFailure(404, "ResourceNotFound", f"The Resource '{scope}' was not found.")
        return resource["id"]

    def _filters(self, request: Request, collection: str) -> dict[str, str]:
        raw = (request.query_ci("$filter") or "").strip()
        out: dict[str, str] = {}
        if not raw:
            return out
        for part in re.split(r"\s+and\s+", raw, flags=re.IGNORECASE):
            function = _FUNCTION.match(part)
            clause = _CLAUSE.match(part)
            if function:
                name = function.group(1).lower()
                if name == "asrequestor" and collection != "roleAssignmentScheduleRequests":
                    function = None
                else:
                    out[name] = ""
                    continue
            if clause:
                out[clause.group(1).lower()] = clause.group(2).replace("''", "'")
                continue
            raise ArmFailure(400, "InvalidFilter",
                             f"The $filter '{raw}' is not supported. Supported: asTarget(), atScope(), "
                             "principalId eq '{id}', roleDefinitionId eq '{id}', status eq '{status}'"
                             + (", asRequestor()" if collection == "roleAssignmentScheduleRequests" else "")
                             + ", joined with 'and'.")
        return out


def _keep(doc: dict[str, Any], owner: str | None, filters: dict[str, str], principal: Principal, scope: str) -> bool:
    props = doc.get("properties", {})
    if "astarget" in filters and (owner is None or owner.lower() != principal.object_id.lower()):
        return False
    if "asrequestor" in filters and str(props.get("requestorId", "")).lower() != principal.object_id.lower():
        return False
    if "atscope" in filters and not scope_contains(str(props.get("scope", "")), scope):
        return False
    wanted = filters.get("principalid")
    if wanted is not None and (owner is None or owner.lower() != wanted.lower()):
        return False
    role = filters.get("roledefinitionid")
    if role is not None and str(props.get("roleDefinitionId", "")).rsplit("/", 1)[-1].lower() != \
            role.rstrip("/").rsplit("/", 1)[-1].lower():
        return False
    status = filters.get("status")
    return status is None or str(props.get("status", "")).lower() == status.lower()


def _not_found_code(collection: str) -> str:
    if collection == "roleManagementPolicies":
        return "RoleManagementPolicyNotFound"
    if collection == "roleManagementPolicyAssignments":
        return "RoleManagementPolicyAssignmentNotFound"
    return collection[0].upper() + collection[1:-1] + "NotFound"


def snapshot(state: Any) -> dict[str, Any]:
    """What PIM holds, for test assertions through the admin API (``GET /_sandbox/pim``)."""
    now = state.clock.now()
    store = state.pim
    world = state.world
    return {
        "now": iso(now),
        "requests": [pim_docs.schedule_request(world, r) for r in store.requests.values()],
        "schedules": [
            {**pim_docs.assignment_schedule(world, s, s.assignment),
             "active": s.active_at(now), "ended": iso(s.ended) if s.ended is not None else None}
            for s in store.schedules
        ],
        "instances": [pim_docs.assignment_instance(world, s, s.assignment) for s in store.schedules
                      if s.active_at(now)],
        "eligibilities": [pim_docs.eligibility_instance(world, e) for e in store.eligibilities if e.active_at(now)],
    }
