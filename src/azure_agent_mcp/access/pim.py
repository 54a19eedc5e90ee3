"""The same elevation in Azure: Privileged Identity Management for Azure resources, through ARM.

A user with an *eligible* role assignment covering the request self-activates it for the
grant's period (``roleAssignmentScheduleRequests``, ``requestType: SelfActivate``, linked to the
eligibility schedule, with the justification and ``scheduleInfo.expiration``) and deactivates it
on revoke (``SelfDeactivate``). Service principals (agent identities) cannot self-activate:
Microsoft's documented path for them is a time-bound *active* assignment (``AdminAssign`` with an
expiration), made by a principal holding the right to assign roles at the scope
(``Microsoft.Authorization/roleAssignments/write``, which Azure checks on an ``AdminAssign``; the
request itself is the operation ``roleAssignmentScheduleRequests/write``) (``access.pim_assign``).

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
    pim_code: str | None = None
    """PIM's own error code when PIM answered (``ActiveDurationTooShort``...), else None."""


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


def _iso_ms(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


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
        error = PimActivationError(f"PIM refused the {purpose} ({exc.code}): {exc.message} {_explain(exc.code, exc.message)}",
                                   hint="Nothing was granted." if purpose == "activation" else "")
        error.pim_code = exc.code
        raise error from None
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
        # the grant's own end, as an instant: PIM may start the activation later than the grant (an approval
        # that took a while, a start already past), and a duration would then carry it past the grant's end
        "scheduleInfo": {"startDateTime": _iso(start), "expiration": {"type": "AfterDateTime",
                                                                       "endDateTime": _iso_ms(start + seconds)}},
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


def deactivate(azure: Any, book: GrantBook, activation: PimActivation, *, session_id: str, grant_id: str,
               tool: str = "access_revoke") -> None:
    """SelfDeactivate the activation; ``tool`` is who ends it (the permit is for that caller only)."""
    body = {"properties": {"principalId": activation.principal_id, "roleDefinitionId": activation.role_definition_id,
                           "requestType": "SelfDeactivate"}}
    _send_schedule_request(azure, book, session_id=session_id, tool=tool, grant_id=grant_id,
                           purpose="deactivation", scope=activation.scope, body=body)


def active_instances(azure: Any, scope: str) -> list[dict[str, Any]]:
    """The principal's active role assignment instances at ``scope``'s subscription (read by access_list:
    the answer's Date header is Azure's clock, which the grants' expiry then follows)."""
    base = _subscription_of(scope) or ""
    path = f"{base}/providers/Microsoft.Authorization/roleAssignmentScheduleInstances?$filter=asTarget()"
    return [i for i in (azure.arm("GET", path, PIM_API_VERSION).body or {}).get("value") or [] if isinstance(i, dict)]


@dataclass(frozen=True)
class FixedBlueprint:
    """The blueprint behind a fixed agent identity (``--credential agent-identity``, autonomous): the
    identity's manager, holding the credential this server already has, so it assigns as it would for an
    ephemeral identity."""

    provider: Any

    def credential(self) -> Any:
        from azure_agent_mcp.access.ephemeral import BlueprintTokenCredential

        return BlueprintTokenCredential(self.provider)


def blueprint_assigner(azure: Any) -> Any:
    """Who assigns an agent identity its time-bound role, or None: the blueprint that manages it.

    ``--ephemeral-agent``'s manager for the identities it made; for a fixed agent identity acting
    autonomously, its blueprint, whose credential this server holds. Either needs
    ``Microsoft.Authorization/roleAssignments/write`` at the scope. With the sidecar
    the server holds no credential at all, so there is nobody to assign and elevation is refused."""
    from azure_agent_mcp.identity.agent_identity import AgentIdentityProvider

    credential = getattr(azure.credential, "inner", azure.credential)  # a pinned credential wraps the agent's
    provider = getattr(credential, "provider", None)
    manager = getattr(provider, "manager", None)
    if manager is not None:
        return manager
    if isinstance(provider, AgentIdentityProvider) and provider.agent_user is None:
        return FixedBlueprint(provider)
    return None


def _guarded_transport(azure: Any) -> Any:
    return (azure.guard.transport(azure.pool.transport(azure.env.connection_verify)) if azure.pool is not None
            else azure.guard.transport(connection_verify=azure.env.connection_verify))


def _blueprint_get(azure: Any, manager: Any, path: str, api_version: str) -> Any:
    """A read made with the blueprint's credential (the agent identity itself may read nothing yet), through the
    session's guard like every other request."""
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy, UserAgentPolicy
    from azure.core.rest import HttpRequest

    from azure_agent_mcp import USER_AGENT
    from azure_agent_mcp.tools.clients import azure_error_from

    client = PipelineClient(azure.env.arm_endpoint, policies=[
        UserAgentPolicy(USER_AGENT), RetryPolicy(retry_total=2),
        BearerTokenCredentialPolicy(manager.credential(), azure.env.arm_scope)], transport=_guarded_transport(azure))
    with client:
        response = client.send_request(HttpRequest("GET", azure.arm_url(path, api_version)))
        payload = response.json() if response.content else None
    if response.status_code >= 400:
        raise azure_error_from(response.status_code, payload, response.headers)
    return payload


def role_definition_by_name(azure: Any, manager: Any, scope: str, role: str) -> dict[str, Any] | None:
    """A role definition named ``role`` (a name, or a GUID / definition id), read at the grant's scope."""
    from urllib.parse import quote

    from azure_agent_mcp.policy.elevation import is_guid

    key = role_key(role)
    base = scope.rstrip("/")
    if is_guid(key):
        return _blueprint_get(azure, manager, f"{base}/providers/Microsoft.Authorization/roleDefinitions/{key}",
                              ROLE_DEFINITIONS_API_VERSION) or None
    expression = quote("roleName eq '" + role.replace("'", "''") + "'", safe="'")
    body = _blueprint_get(azure, manager, f"{base}/providers/Microsoft.Authorization/roleDefinitions?$filter={expression}",
                          ROLE_DEFINITIONS_API_VERSION) or {}
    found = [d for d in body.get("value") or [] if role_key(str((d.get("properties") or {}).get("roleName"))) == key]
    return found[0] if found else None


def _assignment_client(azure: Any, manager: Any) -> Any:
    """azure-mgmt-authorization with the blueprint's credential, sending through this session's guard."""
    from azure_agent_mcp import USER_AGENT
    from azure_agent_mcp.access.pim_assign import authorization_client

    transport = _guarded_transport(azure)
    # the blueprint's own credential (the manager keeps it; it makes and assigns the session's identity)
    return authorization_client(manager.credential(), azure.env, transport=transport, user_agent=USER_AGENT,
                                connection_verify=azure.env.connection_verify)


def _roles_for(azure: Any, manager: Any, scope: str, actions: tuple[str, ...], data_actions: tuple[str, ...], role: str | None,
               allowed_roles: tuple[str, ...]) -> Eligibility:
    """The role to assign: the one asked for, or the first of the policy's Elevation Roles covering the request."""
    for name in ([role] if role else list(allowed_roles)):
        definition = role_definition_by_name(azure, manager, scope, name)
        if not definition:
            continue
        props = definition.get("properties") or {}
        first = (props.get("permissions") or [{}])[0] or {}
        candidate = Eligibility(scope, str(definition.get("id")), str(props.get("roleName") or name), "", "",
                                tuple(first.get("actions") or ()), tuple(first.get("notActions") or ()),
                                tuple(first.get("dataActions") or ()), tuple(first.get("notDataActions") or ()))
        if role or candidate.covers(actions, data_actions):
            return candidate
    raise PimActivationError(
        "No role of the policy's Elevation Roles covers this request for the agent identity, so nothing was granted.",
        hint="An agent identity is given a role (a time-bound assignment), so Elevation Roles must name one that "
             "covers the operations.")


def assign_agent_identity(azure: Any, book: GrantBook, *, principal_id: str, session_id: str, grant_id: str,
                          scope: str, actions: tuple[str, ...], data_actions: tuple[str, ...], role: str | None,
                          allowed_roles: tuple[str, ...], start: float, seconds: int,
                          justification: str) -> tuple[PimActivation, Eligibility]:
    """An agent identity (a service principal) cannot self-activate: its blueprint gives it a time-bound
    *active* assignment (``AdminAssign`` with ``scheduleInfo.expiration``) for the grant's period."""
    manager = blueprint_assigner(azure)
    if manager is None:
        raise PimActivationError(
            "This identity is a service principal (an agent identity), which PIM cannot self-activate; its path is a "
            "time-bound active assignment made by its blueprint, and this server holds no blueprint credential (the "
            "sidecar holds it). Nothing was granted.",
            hint="Run with --credential agent-identity (the blueprint's credential here), or give the identity the "
                 "role out of band.")
    import datetime as dt

    from azure_agent_mcp.access import pim_assign

    chosen = _roles_for(azure, manager, scope, actions, data_actions, role, allowed_roles)
    definition_id = pim_assign.full_role_definition_id(chosen.role_definition_id, scope)
    permit = Permit(grant_id, session_id, "access_request", "PUT",
                    azure.arm_url(scope.rstrip("/") + SCHEDULE_REQUESTS, PIM_API_VERSION),
                    {"properties": {"principalId": principal_id, "roleDefinitionId": definition_id,
                                    "requestType": "AdminAssign",
                                    "scheduleInfo.expiration.duration": iso_duration(seconds)}},
                    "assignment", named_by_sdk=True)
    book.permit(permit)
    try:
        made = pim_assign.assign_time_bound(
            _assignment_client(azure, manager), principal_id=principal_id, role_definition_id=definition_id,
            scope=scope, duration=dt.timedelta(seconds=seconds), justification=justification,
            start=dt.datetime.fromtimestamp(start, tz=dt.timezone.utc))
    except pim_assign.TimeBoundAssignmentError as exc:
        raise PimActivationError(
            f"PIM refused the agent identity's time-bound assignment ({exc.code}): {exc.message} "
            f"{_explain(exc.code, exc.message)} The blueprint needs Microsoft.Authorization/roleAssignments"
            "/write at the scope (Owner, User Access Administrator or Role Based Access Control Administrator).",
            hint="Nothing was granted.") from None
    finally:
        book.withdraw(permit)
    return PimActivation("AdminAssign", made.request_name, principal_id, definition_id, chosen.role_name, scope, None,
                         made), chosen


def remove_agent_identity_assignment(azure: Any, book: GrantBook, activation: PimActivation, *, session_id: str,
                                     grant_id: str, tool: str = "access_revoke") -> None:
    from azure_agent_mcp.access import pim_assign

    manager = blueprint_assigner(azure)
    if manager is None or activation.assignment is None:
        raise PimActivationError("The assignment's blueprint is gone; it ends by itself at its expiry.")
    permit = Permit(grant_id, session_id, tool, "PUT",
                    azure.arm_url(activation.scope.rstrip("/") + SCHEDULE_REQUESTS, PIM_API_VERSION),
                    {"properties": {"principalId": activation.principal_id,
                                    "roleDefinitionId": activation.role_definition_id, "requestType": "AdminRemove"}},
                    "removal", named_by_sdk=True)
    book.permit(permit)
    try:
        pim_assign.remove_time_bound(_assignment_client(azure, manager), activation.assignment)
    except pim_assign.TimeBoundAssignmentError as exc:
        error = PimActivationError(f"PIM refused the removal ({exc.code}): {exc.message} "
                                   f"{_explain(exc.code, exc.message)}")
        error.pim_code = exc.code
        raise error from None
    finally:
        book.withdraw(permit)
