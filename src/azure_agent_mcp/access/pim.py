"""The same elevation in Azure: Privileged Identity Management for Azure resources, through ARM.

A user with an *eligible* role assignment covering the request self-activates it for the
grant's period (``roleAssignmentScheduleRequests``, ``requestType: SelfActivate``, linked to the
eligibility schedule, with the justification and ``scheduleInfo.expiration``) and deactivates it
on revoke (``SelfDeactivate``). Service principals (agent identities) cannot self-activate:
Microsoft's documented path for them is a time-bound *active* assignment (``AdminAssign`` with an
expiration), made by a principal that holds
``Microsoft.Authorization/roleAssignmentScheduleRequests/write`` at the scope
(``access.pim_assign``).

Every request goes through the session's guarded pipeline. The reads are ``*/read`` operations;
the schedule request itself is allowed only by a one-shot permit for exactly its method, URL and
body, tied to the grant the user approved (``grants.Permit``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from azure_agent_mcp.access.grants import GrantBook, Permit, PimActivation, scope_covers
from azure_agent_mcp.access.requests import AccessRequestError, role_key
from azure_agent_mcp.policy.elevation import iso_duration

PIM_API_VERSION = "2020-10-01"
ROLE_DEFINITIONS_API_VERSION = "2022-04-01"
SCHEDULE_REQUESTS = "/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/"


class PimActivationError(AccessRequestError):
    """PIM refused the activation (or deactivation); the message says what its policy requires."""

    code = "PimActivationFailed"


@dataclass(frozen=True)
class Eligibility:
    scope: str
    role_definition_id: str
    role_name: str
    schedule_id: str
    principal_id: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    data_actions: tuple[str, ...]
    not_data_actions: tuple[str, ...]

    def covers(self, actions: tuple[str, ...], data_actions: tuple[str, ...]) -> bool:
        from azure_agent_mcp.policy.patterns import PatternSet

        def ok(include: tuple[str, ...], exclude: tuple[str, ...], op: str) -> bool:
            return (PatternSet(include).first_match(op.lower()) is not None
                    and PatternSet(exclude).first_match(op.lower()) is None)

        return (all(ok(self.actions, self.not_actions, op) for op in actions)
                and all(ok(self.data_actions, self.not_data_actions, op) for op in data_actions))


def _subscription_of(scope: str) -> str | None:
    parts = scope.strip("/").split("/")
    return f"/subscriptions/{parts[1]}" if len(parts) >= 2 and parts[0].lower() == "subscriptions" else None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def eligibilities(azure: Any, scope: str) -> list[dict[str, Any]]:
    """The signed-in principal's eligible role instances at or above ``scope`` (asTarget(): its own)."""
    base = _subscription_of(scope) or ""
    path = f"{base}/providers/Microsoft.Authorization/roleEligibilityScheduleInstances?$filter=asTarget()"
    items = (azure.arm("GET", path, PIM_API_VERSION).body or {}).get("value") or []
    return [item for item in items if isinstance(item, dict)
            and scope_covers(str((item.get("properties") or {}).get("scope") or "\0"), scope)]


def _role_definition(azure: Any, role_definition_id: str) -> dict[str, Any]:
    body = azure.arm("GET", role_definition_id, ROLE_DEFINITIONS_API_VERSION).body or {}
    return body if isinstance(body, dict) else {}


def find_eligibility(azure: Any, scope: str, actions: tuple[str, ...], data_actions: tuple[str, ...],
                     role: str | None, allowed_roles: tuple[str, ...]) -> Eligibility | None:
    """The first eligibility whose role covers the request at ``scope`` (the named role when one is asked
    for; else one of the policy's Elevation Roles when it lists any)."""
    from azure_agent_mcp.tools.clients import AzureRequestError

    try:
        found = eligibilities(azure, scope)
    except AzureRequestError:
        return None  # nothing readable to activate: the grant stays local, Azure's RBAC decides as before
    wanted = {role_key(r) for r in ([role] if role else allowed_roles)}
    for item in found:
        props = item.get("properties") or {}
        definition_id = str(props.get("roleDefinitionId") or "")
        if not definition_id:
            continue
        try:
            definition = _role_definition(azure, definition_id)
        except AzureRequestError:
            continue
        dprops = definition.get("properties") or {}
        name = str(dprops.get("roleName") or "")
        if wanted and role_key(name) not in wanted and role_key(definition_id) not in wanted:
            continue
        permissions = dprops.get("permissions") or [{}]
        first = permissions[0] if isinstance(permissions[0], dict) else {}
        eligibility = Eligibility(
            scope=str(props.get("scope")),
            role_definition_id=definition_id,
            role_name=name or definition_id.rsplit("/", 1)[-1],
            schedule_id=str(props.get("roleEligibilityScheduleId") or ""),
            principal_id=str(props.get("principalId") or ""),
            actions=tuple(first.get("actions") or ()),
            not_actions=tuple(first.get("notActions") or ()),
            data_actions=tuple(first.get("dataActions") or ()),
            not_data_actions=tuple(first.get("notDataActions") or ()),
        )
        if role or eligibility.covers(actions, data_actions):
            return eligibility
    return None


_RULES = (
    (("roleassignmentexists",), "The role is already active for this identity (an earlier activation is still running); "
     "it ends by itself at its expiry."),
    (("activedurationtooshort",), "PIM keeps an activation at least 5 minutes: it cannot be shorter, nor deactivated "
     "sooner; it ends by itself at its expiry."),
    (("acrs", "authenticationcontext"), "This role's PIM policy requires a Conditional Access authentication context "
     "at activation: activate it yourself after that sign-in; an agent cannot satisfy it."),
    (("mfarule", "multifactor"), "This role's PIM policy requires multifactor authentication at activation: activate "
     "it yourself in the Azure portal after MFA; an agent cannot satisfy it."),
    (("approvalrule", "pendingapproval", "approval"), "This role's PIM policy requires an approver's approval, so the "
     "activation cannot be immediate: the request was withdrawn and nothing was granted. Ask an approver, or use a "
     "role whose policy needs no approval."),
    (("expirationrule",), "The requested duration is over the maximum activation duration of this role's PIM policy: "
     "ask for less."),
    (("justificationrule",), "This role's PIM policy requires a justification (and may limit its length)."),
    (("eligibilityrule", "roleassignmentdoesnotexist"), "The identity has no eligible assignment PIM could activate "
     "for this role at this scope."),
    (("authorizationfailed", "http403"), "The identity may not create this PIM request at this scope."),
)


def _explain(code: str, message: str) -> str:
    """What PIM's refusal means for the person asking (PIM names the failed rules in its message)."""
    text = f"{code} {message}".lower()
    found = [why for keys, why in _RULES if any(key in text for key in keys)]
    return " ".join(found) or "PIM refused the request; its message above names the rule."


def _send_schedule_request(azure: Any, book: GrantBook, *, session_id: str, tool: str, grant_id: str, purpose: str,
                           scope: str, body: dict[str, Any]) -> dict[str, Any]:
    from azure_agent_mcp.tools.clients import AzureRequestError

    path = scope.rstrip("/") + SCHEDULE_REQUESTS + str(uuid.uuid4())
    permit = Permit(grant_id, session_id, tool, "PUT", azure.arm_url(path, PIM_API_VERSION), body, purpose)
    book.permit(permit)
    try:
        response = azure.arm("PUT", path, PIM_API_VERSION, body)
    except AzureRequestError as exc:
        raise PimActivationError(f"PIM refused the {purpose} ({exc.code}): {exc.message} {_explain(exc.code, exc.message)}",
                                 hint="Nothing was granted." if purpose == "activation" else "") from None
    finally:
        book.withdraw(permit)  # one shot: used or not, it is gone
    answer = response.body if isinstance(response.body, dict) else {}
    answer.setdefault("name", path.rsplit("/", 1)[-1])
    return answer


def activate(azure: Any, book: GrantBook, eligibility: Eligibility, *, principal_id: str, session_id: str,
             grant_id: str, start: float, seconds: int, justification: str) -> PimActivation:
    """Self-activate ``eligibility`` from ``start`` for ``seconds`` (the grant's own period)."""
    body = {"properties": {
        "principalId": principal_id,
        "roleDefinitionId": eligibility.role_definition_id,
        "requestType": "SelfActivate",
        "linkedRoleEligibilityScheduleId": eligibility.schedule_id,
        "justification": justification,
        "scheduleInfo": {"startDateTime": _iso(start), "expiration": {"type": "AfterDuration",
                                                                       "duration": iso_duration(seconds)}},
    }}
    answer = _send_schedule_request(azure, book, session_id=session_id, tool="access_request", grant_id=grant_id,
                                    purpose="activation", scope=eligibility.scope, body=body)
    status = str((answer.get("properties") or {}).get("status") or "")
    if status and status.lower() not in ("provisioned", "granted", "accepted", "scheduled", "adminapproved"):
        _cancel(azure, book, eligibility.scope, str(answer.get("name")), session_id=session_id, grant_id=grant_id)
        raise PimActivationError(
            f"PIM accepted the activation request but its status is {status}, not active: "
            + _explain(status, status), hint="Nothing was granted locally.")
    return PimActivation("SelfActivate", str(answer.get("name")), principal_id, eligibility.role_definition_id,
                         eligibility.role_name, eligibility.scope, eligibility.schedule_id)


def _cancel(azure: Any, book: GrantBook, scope: str, name: str, *, session_id: str, grant_id: str) -> None:
    """Withdraw a request PIM left waiting (PendingApproval): no grant is made, so nothing may stay pending."""
    from azure_agent_mcp.tools.clients import AzureRequestError

    path = scope.rstrip("/") + SCHEDULE_REQUESTS + name + "/cancel"
    permit = Permit(grant_id, session_id, "access_request", "POST", azure.arm_url(path, PIM_API_VERSION), None,
                    "cancellation")
    book.permit(permit)
    try:
        azure.arm("POST", path, PIM_API_VERSION)
    except AzureRequestError:
        pass  # the refusal below says what happened; an approver would still see the request
    finally:
        book.withdraw(permit)


def deactivate(azure: Any, book: GrantBook, activation: PimActivation, *, session_id: str, grant_id: str) -> None:
    body = {"properties": {"principalId": activation.principal_id, "roleDefinitionId": activation.role_definition_id,
                           "requestType": "SelfDeactivate"}}
    _send_schedule_request(azure, book, session_id=session_id, tool="access_revoke", grant_id=grant_id,
                           purpose="deactivation", scope=activation.scope, body=body)


def active_instances(azure: Any, scope: str) -> list[dict[str, Any]]:
    """The principal's active role assignment instances at ``scope``'s subscription (read by access_list:
    the answer's Date header is Azure's clock, which the grants' expiry then follows)."""
    base = _subscription_of(scope) or ""
    path = f"{base}/providers/Microsoft.Authorization/roleAssignmentScheduleInstances?$filter=asTarget()"
    return [i for i in (azure.arm("GET", path, PIM_API_VERSION).body or {}).get("value") or [] if isinstance(i, dict)]


def assign_service_principal(azure: Any, *, principal_id: str, role_definition_id: str, role_name: str, scope: str,
                             seconds: int, justification: str) -> PimActivation:
    """An agent identity (a service principal) cannot self-activate: a time-bound active assignment instead."""
    try:
        from azure_agent_mcp.access import pim_assign  # type: ignore[attr-defined]
    except ImportError:
        raise PimActivationError(
            "This identity is a service principal (an agent identity), which PIM cannot self-activate, and this "
            "build has no time-bound assignment support (access/pim_assign.py), so nothing was granted.",
            hint="Run as a user with an eligible assignment, or use a build with agent-identity elevation.") from None
    import datetime as dt

    from azure_agent_mcp.tools.clients import AzureRequestError

    try:
        made = pim_assign.assign_time_bound(azure, principal_id=principal_id, role_definition_id=role_definition_id,
                                            scope=scope, duration=dt.timedelta(seconds=seconds),
                                            justification=justification)
    except AzureRequestError as exc:
        raise PimActivationError(
            f"The time-bound assignment for the agent identity was refused ({exc.code}): {exc.message} "
            "The assigning credential needs Microsoft.Authorization/roleAssignmentScheduleRequests/write at the scope "
            "(e.g. the blueprint holding Role Based Access Control Administrator there).",
            hint="Nothing was granted.") from None
    return PimActivation("AdminAssign", str(made.request_name), principal_id, role_definition_id, role_name, scope,
                         None, made)
