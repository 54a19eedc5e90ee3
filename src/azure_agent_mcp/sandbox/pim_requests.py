"""What PIM does with a roleAssignmentScheduleRequest: validate it, then grant, wait or revoke.

SelfActivate needs no RBAC permission, only an eligibility (PIM's rule: "to call this API, you
must have an eligible role assignment on the scope"); the request must name the caller.
AdminAssign and AdminRemove need ``Microsoft.Authorization/roleAssignments/write`` at the scope.
Service principals are never eligible, so their SelfActivate fails on ``EligibilityRule``; their
time-bound access is an AdminAssign with an expiration. A granted request becomes a time-bound
role assignment in the world's list, which RBAC honours against the sandbox clock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from azure_agent_mcp.sandbox.clock import iso
from azure_agent_mcp.sandbox.pim_docs import schedule_id
from azure_agent_mcp.sandbox.pim_policies import (
    MAX_JUSTIFICATION,
    PimRequestError,
    acrs_challenge,
    activation_failures,
    admin_assignment_failures,
    has_context,
    policy_rules_failed,
)
from azure_agent_mcp.sandbox.pim_world import (
    MIN_ACTIVE_SECONDS,
    ActiveSchedule,
    Eligibility,
    ScheduleRequest,
    eligibility_id,
)
from azure_agent_mcp.sandbox.rbac import BUILTIN_ROLES, RoleAssignment, scope_contains
from azure_agent_mcp.sandbox.timespans import TimespanError, parse_duration, parse_instant

REQUEST_TYPES = ("SelfActivate", "SelfDeactivate", "AdminAssign", "AdminRemove", "AdminExtend")
ASSIGN_WRITE = "Microsoft.Authorization/roleAssignments/write"


@dataclass(frozen=True)
class Schedule:
    start: float  # when it takes effect: the requested start, or now when that is already past
    end: float | None  # None: NoExpiration
    expiration_type: str
    duration: str | None
    requested_start: float | None = None  # as sent: PIM validates the span the request asks for

    @property
    def seconds(self) -> float | None:
        """The span the rules judge: the duration asked for, or from the requested start to the end asked for."""
        if self.end is None:
            return None
        if self.expiration_type == "AfterDateTime" and self.requested_start is not None:
            return self.end - self.requested_start
        return self.end - self.start


def invalid(message: str) -> PimRequestError:
    return PimRequestError(400, "InvalidRequestContent", message)


def parse_schedule(info: Any, now: float) -> Schedule | None:
    """``scheduleInfo`` read as PIM reads it; None when the request carries none."""
    if info is None:
        return None
    if not isinstance(info, dict):
        raise invalid("'properties.scheduleInfo' must be an object {\"startDateTime\", \"expiration\": {\"type\", "
                      "\"duration\" | \"endDateTime\"}}.")
    start = requested = now
    raw_start = info.get("startDateTime")
    if raw_start is not None:
        try:
            # a start in the past means now: an activation never covers time already gone
            requested = parse_instant(str(raw_start)).timestamp()
            start = max(now, requested)
        except (TimespanError, OverflowError, ValueError) as exc:
            raise invalid(f"'properties.scheduleInfo.startDateTime': {exc}.") from None
    expiration = info.get("expiration") or {}
    if not isinstance(expiration, dict):
        raise invalid("'properties.scheduleInfo.expiration' must be an object {\"type\": \"AfterDuration\", "
                      "\"duration\": \"PT1H\"}.")
    kind = expiration.get("type")
    duration = expiration.get("duration")
    end_raw = expiration.get("endDateTime")
    if kind is None:
        kind = "AfterDuration" if duration else "AfterDateTime" if end_raw else "NoExpiration"
    if kind == "AfterDuration":
        if not isinstance(duration, str) or not duration:
            raise invalid("'properties.scheduleInfo.expiration.duration' is required with type AfterDuration "
                          "(an ISO 8601 duration such as PT1H).")
        try:
            seconds = parse_duration(duration).total_seconds()
        except TimespanError as exc:
            raise invalid(f"'properties.scheduleInfo.expiration.duration': {exc}.") from None
        except OverflowError:
            raise invalid(f"'properties.scheduleInfo.expiration.duration' '{duration[:40]}' is too long to be a "
                          "date.") from None
        return Schedule(start, start + seconds, kind, duration)
    if kind == "AfterDateTime":
        try:
            end = parse_instant(str(end_raw)).timestamp()
        except (TimespanError, OverflowError, ValueError) as exc:
            raise invalid(f"'properties.scheduleInfo.expiration.endDateTime': {exc}.") from None
        if end <= start:
            raise invalid("'properties.scheduleInfo.expiration.endDateTime' is not after the start: the schedule "
                          "would end before it takes effect.")
        return Schedule(start, end, kind, None, requested)
    if kind == "NoExpiration":
        return Schedule(start, None, kind, None)
    raise invalid(f"'properties.scheduleInfo.expiration.type' '{kind}' is not one of AfterDuration, AfterDateTime, "
                  "NoExpiration.")


class RequestProcessor:
    """Turns one PUT of a schedule request into the request PIM stores, or PIM's refusal."""

    def __init__(self, state: Any, plane: Any) -> None:
        self.state = state
        self.plane = plane
        self._dry_run = False

    @property
    def store(self) -> Any:
        return self.state.pim

    def create(self, principal: Any, scope: str, name: str, body: Any, *, dry_run: bool = False) -> ScheduleRequest:
        """The stored request; with ``dry_run`` (the ``/validate`` action) the verdict alone, nothing changed."""
        self._dry_run = dry_run
        try:
            uuid.UUID(name)
        except ValueError:
            raise PimRequestError(400, "InvalidRoleAssignmentScheduleRequestName",
                                  f"The role assignment schedule request name '{name}' is not valid: it must be a "
                                  "GUID.") from None
        if not dry_run and name.lower() in self.store.requests:
            raise PimRequestError(409, "RoleAssignmentScheduleRequestExists",
                                  f"The role assignment schedule request '{name}' already exists; use a new GUID "
                                  "for a new request.")
        props = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(props, dict):
            raise invalid("The request content must be {\"properties\": {\"principalId\", \"roleDefinitionId\", "
                          "\"requestType\", \"scheduleInfo\", \"justification\"}}.")
        request_type = props.get("requestType")
        if request_type not in REQUEST_TYPES:
            raise invalid(f"'properties.requestType' '{request_type}' is not supported: use one of "
                          + ", ".join(REQUEST_TYPES) + ".")
        principal_id = str(props.get("principalId") or "")
        if not principal_id:
            raise invalid("'properties.principalId' is required.")
        role_id = str(props.get("roleDefinitionId") or "").rstrip("/").rsplit("/", 1)[-1].lower()
        if role_id not in BUILTIN_ROLES:
            raise PimRequestError(400, "RoleDefinitionDoesNotExist",
                                  f"The specified role definition with ID '{role_id}' does not exist.")
        justification = props.get("justification")
        if justification is not None and not isinstance(justification, str):
            raise invalid("'properties.justification' must be a string.")
        if justification and len(justification) > MAX_JUSTIFICATION:
            raise invalid(f"'properties.justification' is {len(justification)} characters; the limit is "
                          f"{MAX_JUSTIFICATION}.")
        now = self.state.clock.now()
        schedule = parse_schedule(props.get("scheduleInfo"), now)
        request = ScheduleRequest(
            name=name.lower(), scope=scope, principal_id=principal_id, principal_type="User",
            role_definition_id=role_id, request_type=request_type, status="Provisioned",
            requestor_id=principal.object_id, created_on=now,
            start=schedule.start if schedule else now, end=schedule.end if schedule else None,
            expiration_type=schedule.expiration_type if schedule else "NoExpiration",
            duration=schedule.duration if schedule else None, justification=justification,
            ticket_info=_ticket(props.get("ticketInfo")),
        )
        handler = {"SelfActivate": self._self_activate, "SelfDeactivate": self._self_deactivate,
                   "AdminAssign": self._admin_assign, "AdminRemove": self._admin_remove,
                   "AdminExtend": self._admin_extend}[request_type]
        handler(principal, request, schedule, props, now)
        if not dry_run:
            self.store.requests[request.name] = request
        return request

    # -- the request types ------------------------------------------------------------------------

    def _self_activate(self, principal: Any, request: ScheduleRequest, schedule: Schedule | None,
                       props: dict[str, Any], now: float) -> None:
        self._require_self(principal, request)
        if _is_app(principal):
            # service principals cannot be eligible (they cannot perform activation): PIM finds none
            raise policy_rules_failed(["EligibilityRule"])
        eligibility = self._eligibility(request, props.get("linkedRoleEligibilityScheduleId"), now)
        if eligibility is None:
            raise policy_rules_failed(["EligibilityRule"])
        request.linked_eligibility = eligibility_id(eligibility)
        if self._active(request.principal_id, request.role_definition_id, request.scope, now) is not None:
            raise PimRequestError(400, "RoleAssignmentExists", "The Role assignment already exists.")
        if any(r.status == "PendingApproval" and r.principal_id.lower() == request.principal_id.lower()
               and r.role_definition_id == request.role_definition_id and r.scope.lower() == request.scope.lower()
               for r in self.store.requests.values()):
            raise PimRequestError(400, "PendingRoleAssignmentRequest",
                                  "There is already an existing pending Role assignment request.")
        seconds = schedule.seconds if schedule else None
        if seconds is not None and seconds < MIN_ACTIVE_SECONDS:
            raise _too_short()
        policy = self.store.policy_for(eligibility.scope, request.role_definition_id)
        failed = activation_failures(policy, seconds, request.justification, principal.claims)
        if failed:
            raise policy_rules_failed(failed)
        if policy.authentication_context and not has_context(principal.claims, policy.authentication_context):
            raise acrs_challenge(policy.authentication_context)
        if policy.approval_required:
            request.status = "PendingApproval"
            request.approval_id = f"/providers/Microsoft.Authorization/roleAssignmentApprovals/{uuid.uuid4()}"
            request.approval_policy = policy.name
            return
        self._provision(request, "Activated", now)

    def _self_deactivate(self, principal: Any, request: ScheduleRequest, schedule: Schedule | None,
                         props: dict[str, Any], now: float) -> None:
        self._require_self(principal, request)
        active = self._active(request.principal_id, request.role_definition_id, request.scope, now)
        if active is None or active.assignment_type != "Activated":
            raise _does_not_exist()
        if now - active.start < MIN_ACTIVE_SECONDS:
            raise _too_short()  # PIM keeps an activation for its first five minutes
        request.linked_eligibility = active.linked_eligibility
        self._end(active, request, now)

    def _admin_assign(self, principal: Any, request: ScheduleRequest, schedule: Schedule | None,
                      props: dict[str, Any], now: float) -> None:
        self.plane.require(principal, ASSIGN_WRITE, request.scope)
        request.principal_type = self._principal_type(request.principal_id)
        if self._active(request.principal_id, request.role_definition_id, request.scope, now) is not None or any(
                not a.time_bound and a.principal_id == request.principal_id
                and a.role_definition_id == request.role_definition_id and a.scope.lower() == request.scope.lower()
                for a in self.state.world.role_assignments):
            raise PimRequestError(400, "RoleAssignmentExists", "The Role assignment already exists.")
        seconds = schedule.seconds if schedule else None
        if seconds is not None and seconds < MIN_ACTIVE_SECONDS:
            raise _too_short()
        policy = self.store.policy_for(request.scope, request.role_definition_id)
        failed = admin_assignment_failures(policy, seconds, request.justification)
        if failed:
            raise policy_rules_failed(failed)
        self._provision(request, "Assigned", now)

    def _admin_remove(self, principal: Any, request: ScheduleRequest, schedule: Schedule | None,
                      props: dict[str, Any], now: float) -> None:
        self.plane.require(principal, ASSIGN_WRITE, request.scope)
        request.principal_type = self._principal_type(request.principal_id)
        active = self._active(request.principal_id, request.role_definition_id, request.scope, now)
        if active is not None:
            self._end(active, request, now)
            return
        world = self.state.world
        standing = next((a for a in world.role_assignments
                         if not a.time_bound and a.principal_id == request.principal_id
                         and a.role_definition_id == request.role_definition_id
                         and a.scope.lower() == request.scope.lower()), None)
        if standing is None:
            raise _does_not_exist()
        request.status = "Revoked"
        if not self._dry_run:
            world.role_assignments.remove(standing)
            self.state.authorizer.invalidate()

    def _admin_extend(self, principal: Any, request: ScheduleRequest, schedule: Schedule | None,
                      props: dict[str, Any], now: float) -> None:
        """A new end for an active time-bound assignment, within the admin assignment maximum."""
        self.plane.require(principal, ASSIGN_WRITE, request.scope)
        request.principal_type = self._principal_type(request.principal_id)
        active = self._active(request.principal_id, request.role_definition_id, request.scope, now)
        if active is None or active.assignment_type != "Assigned":
            raise _does_not_exist()
        if schedule is None:
            raise policy_rules_failed(["ExpirationRule"])
        policy = self.store.policy_for(request.scope, request.role_definition_id)
        seconds = None if schedule.end is None else schedule.end - active.start
        failed = admin_assignment_failures(policy, seconds, request.justification)
        if failed:
            raise policy_rules_failed(failed)
        request.start = active.start
        request.status = "Provisioned"
        request.target_schedule = schedule_id(active.assignment.scope, active.name)
        if self._dry_run:
            return
        old = active.assignment
        new = RoleAssignment(old.id, old.principal_id, old.principal_type, old.role_definition_id, old.scope,
                             old.created_on, start=old.start, end=schedule.end)
        assignments = self.state.world.role_assignments
        if old in assignments:
            assignments[assignments.index(old)] = new
        active.assignment = new
        self.state.authorizer.invalidate()

    # -- helpers ----------------------------------------------------------------------------------

    def _require_self(self, principal: Any, request: ScheduleRequest) -> None:
        if request.principal_id.lower() != principal.object_id.lower():
            raise PimRequestError(400, "InvalidRequestContent",
                                  f"A {request.request_type} request must name the caller: 'properties.principalId' "
                                  f"is '{request.principal_id}' but the caller is '{principal.object_id}'. To act "
                                  "for another principal use AdminAssign or AdminRemove.")
        request.principal_type = "ServicePrincipal" if _is_app(principal) else "User"

    def _eligibility(self, request: ScheduleRequest, linked: Any, now: float) -> Eligibility | None:
        wanted = str(linked).rstrip("/").rsplit("/", 1)[-1].lower() if linked else None
        for item in self.store.eligibilities:
            if (item.principal_id.lower() == request.principal_id.lower()
                    and item.role_definition_id == request.role_definition_id
                    and scope_contains(item.scope, request.scope) and item.active_at(now)
                    and (wanted is None or item.name == wanted)):
                return item
        return None

    def _active(self, principal_id: str, role_id: str, scope: str, now: float) -> ActiveSchedule | None:
        for schedule in self.store.schedules:
            a = schedule.assignment
            if (schedule.active_at(now) and a.principal_id.lower() == principal_id.lower()
                    and a.role_definition_id == role_id and a.scope.lower() == scope.lower()):
                return schedule
        return None

    def _principal_type(self, object_id: str) -> str:
        world = self.state.world
        if any(u.object_id.lower() == object_id.lower() for u in [*world.users, *world.agent_users]):
            return "User"
        if any(s.object_id.lower() == object_id.lower() for s in world.service_principals):
            return "ServicePrincipal"
        raise PimRequestError(400, "PrincipalNotFound",
                              f"Principal {object_id} does not exist in the directory {self.state.tenant_id}.")

    def _provision(self, request: ScheduleRequest, assignment_type: str, now: float) -> None:
        request.status = "Provisioned"
        if self._dry_run:
            return
        schedule_name = str(uuid.uuid5(uuid.UUID(request.name), "schedule"))
        assignment = RoleAssignment(str(uuid.uuid5(uuid.UUID(request.name), "assignment")), request.principal_id,
                                    request.principal_type, request.role_definition_id, request.scope, iso(now),
                                    start=request.start, end=request.end)
        self.store.schedules.append(ActiveSchedule(schedule_name, request.name, assignment, assignment_type, now,
                                                   request.linked_eligibility))
        self.state.world.role_assignments.append(assignment)
        self.state.authorizer.invalidate()
        request.status = "Provisioned"
        request.target_schedule = schedule_id(request.scope, schedule_name)

    def _end(self, active: ActiveSchedule, request: ScheduleRequest, now: float) -> None:
        request.status = "Revoked"
        request.target_schedule = schedule_id(active.assignment.scope, active.name)
        if self._dry_run:
            return
        active.ended = now
        assignments = self.state.world.role_assignments
        if active.assignment in assignments:
            assignments.remove(active.assignment)
        self.state.authorizer.invalidate()
        request.status = "Revoked"
        request.target_schedule = schedule_id(active.assignment.scope, active.name)


def approve(state: Any, name: str, approved: bool) -> ScheduleRequest:
    """An approver's decision on a PendingApproval request (the admin API stands in for the approver)."""
    request = state.pim.requests.get(name.lower())
    if request is None or request.status != "PendingApproval":
        raise LookupError(f"no request '{name}' is waiting for approval")
    now = state.clock.now()
    if not approved:
        request.status = "Denied"
        return request
    if request.end is not None:  # the activation runs its requested length from the approval
        length = request.end - request.start
        request.start = max(request.start, now)
        request.end = request.start + length
    RequestProcessor(state, None)._provision(request, "Activated", now)
    return request


def _too_short() -> PimRequestError:
    # Azure's message, spelling included: clients match on the code
    return PimRequestError(400, "ActiveDurationTooShort",
                           f"The Active duration is too short. Miniumum Required is {MIN_ACTIVE_SECONDS // 60} minutes.")


def _does_not_exist() -> PimRequestError:
    return PimRequestError(400, "RoleAssignmentDoesNotExist", "The Role assignment does not exist.")


def _is_app(principal: Any) -> bool:
    return principal.claims.get("idtyp") == "app"


def _ticket(value: Any) -> dict[str, str | None]:
    if not isinstance(value, dict):
        return {}
    return {k: (str(value[k]) if value.get(k) is not None else None) for k in ("ticketNumber", "ticketSystem")}
