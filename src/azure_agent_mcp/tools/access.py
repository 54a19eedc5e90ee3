"""Temporary access tools: ask for a time-bound grant, list the live ones, end one early.

Listed only when the active policy has an Elevation block (``AzureTool.needs_elevation``), so the
default ``tools/list`` stays as it was. ``access_request`` runs only after the user approved the
exact grant through MCP elicitation (``server.access_approval``); the approval is consumed by the
grant it made, so it cannot be replayed.
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.tools.base import AzureTool, ToolInputError, ToolOutput
from azure_agent_mcp.tools.clients import AzureSession
from azure_agent_mcp.tools.schemas import INTEGER, STRING, STRINGS, array, obj


class ApprovalMissing(ToolInputError):
    code = "ApprovalRequired"


def _book(azure: AzureSession) -> Any:
    from azure_agent_mcp.access.requests import ElevationNotConfigured

    if azure.grants is None or azure.policy.elevation is None:
        raise ElevationNotConfigured(
            "The active policy has no Elevation block, so there is no temporary access to request, list or revoke.",
            hint="Ask the operator for a policy file with an Elevation block (README: temporary access).")
    return azure.grants


def access_request(
    azure: AzureSession,
    scope: str,
    duration: str,
    justification: str,
    operations: list[str] | None = None,
    role: str | None = None,
) -> ToolOutput:
    book = _book(azure)
    with book.requesting(azure.session.id):  # check to grant in one piece: a concurrent request sees this grant
        return _access_request(azure, book, scope, duration, justification, operations, role)


def _access_request(azure: AzureSession, book: Any, scope: str, duration: str, justification: str,
                    operations: list[str] | None, role: str | None) -> ToolOutput:
    from azure_agent_mcp.access import pim
    from azure_agent_mcp.access.grants import utc_iso
    from azure_agent_mcp.access.requests import check_request
    from azure_agent_mcp.callcontext import current_call

    plan = check_request(azure.policy.elevation, azure.session, book, scope=scope, duration=duration,
                         justification=justification, operations=operations, role=role)
    call = current_call()
    if call is None or not call.extra.get("elicited"):
        raise ApprovalMissing("The user has not approved this grant (approval comes only through MCP elicitation).",
                              hint="Call access_request from a client that supports elicitation.")
    pending = book.take_pending(azure.session.id, plan.digest)
    if pending is None:
        book.record("refused", None, session_id=azure.session.id, reason="approval not pending (replayed or expired)")
        raise ApprovalMissing("No question is pending for this grant: an approval counts once, for the question it "
                              "answered (this one was used already, or it expired).",
                              hint="Call access_request again; the user is asked anew.")
    now = book.clock.now()
    if now >= pending.end:
        raise ApprovalMissing(f"The approved period ended at {utc_iso(pending.end)} before the grant could start.",
                              hint="Call access_request again.")
    principal = azure.principal or {}
    activation = None
    if principal.get("idtyp") == "app":  # a service principal (an agent identity): a time-bound assignment
        activation, eligibility = pim.assign_agent_identity(
            azure, book, principal_id=str(principal.get("oid")), session_id=azure.session.id,
            grant_id=pending.grant_id, scope=plan.scope, actions=plan.actions, data_actions=plan.data_actions,
            role=plan.role, allowed_roles=azure.policy.elevation.roles, start=pending.start, seconds=plan.seconds,
            justification=plan.justification)
        return _granted(book, plan, pending, now, activation, eligibility)
    eligibility = pim.find_eligibility(azure, plan.scope, plan.actions, plan.data_actions, plan.role,
                                       azure.policy.elevation.roles)
    if plan.role and eligibility is None:
        raise pim.PimActivationError(
            f"The identity has no eligible PIM assignment of role '{plan.role}' at or above {plan.scope}, so nothing "
            "was granted.", hint="Ask for single operations instead, or ask an administrator for the eligibility.")
    if eligibility is not None:
        activation = pim.activate(azure, book, eligibility, principal_id=str(principal.get("oid") or
                                  eligibility.principal_id), session_id=azure.session.id, grant_id=pending.grant_id,
                                  start=pending.start, seconds=plan.seconds, justification=plan.justification)
    return _granted(book, plan, pending, now, activation, eligibility)


def _granted(book: Any, plan: Any, pending: Any, now: float, activation: Any, eligibility: Any) -> ToolOutput:
    from azure_agent_mcp.access.grants import Grant, utc_iso

    actions, data_actions, not_actions, not_data_actions = plan.actions, plan.data_actions, (), ()
    if plan.role and eligibility is not None:  # a role's grant covers what the role does
        actions, data_actions = eligibility.actions, eligibility.data_actions
        not_actions, not_data_actions = eligibility.not_actions, eligibility.not_data_actions
    grant = Grant(pending.grant_id, pending.session_id, plan.scope, pending.start, pending.end, plan.justification,
                  actions, data_actions, plan.role, activation, not_actions, not_data_actions)
    book.add(grant)
    book.record("approved", grant, justification=plan.justification, approved_at=utc_iso(now))
    verb = "assigned the agent identity" if activation is not None and activation.kind == "AdminAssign" else "activated"
    where = (f"; PIM {verb} '{activation.role_name}' at {activation.scope} for the same period" if activation
             else "; no eligible PIM assignment covers it, so Azure's own RBAC still decides")
    return ToolOutput(f"Grant {grant.id}: {plan.describe()}, until {utc_iso(grant.end)}{where}.",
                      {"grant": grant.as_json(now)})


def access_list(azure: AzureSession) -> ToolOutput:
    from azure_agent_mcp.access import pim
    from azure_agent_mcp.access.grants import utc_iso
    from azure_agent_mcp.tools.clients import AzureRequestError

    book = _book(azure)
    azure_status: dict[str, str] = {}
    for grant in book.active(azure.session.id):
        if grant.pim is None:
            continue
        try:  # Azure's answer (and its Date header: Azure's clock) for the activation
            instances = pim.active_instances(azure, grant.pim.scope)
        except AzureRequestError:
            continue
        live = any(str((i.get("properties") or {}).get("roleDefinitionId", "")).lower()
                   == grant.pim.role_definition_id.lower() for i in instances)
        azure_status[grant.id] = "active" if live else "not active"
    now = book.clock.now()
    items = []
    for grant in book.active(azure.session.id):
        item = grant.as_json(now)
        if grant.id in azure_status:
            item["pim_status"] = azure_status[grant.id]
        items.append(item)
    return ToolOutput(f"{len(items)} active grant(s) in agent session {azure.session.id} at {utc_iso(now)}.",
                      {"items": items, "now": utc_iso(now)})


def access_revoke(azure: AzureSession, grant_id: str) -> ToolOutput:
    from azure_agent_mcp.access import pim
    from azure_agent_mcp.access.grants import utc_iso

    book = _book(azure)
    grant = book.get(azure.session.id, grant_id)
    if grant is None:
        raise ToolInputError(f"Agent session {azure.session.id} has no active grant {grant_id!r}.",
                             hint="access_list shows the active grants (an expired one has ended already).")
    book.remove(azure.session.id, grant.id)  # the local grant ends first, whatever Azure answers
    now = book.clock.now()
    deactivated, problem = False, None
    if grant.pim is not None:
        try:
            if grant.pim.kind == "SelfActivate":
                pim.deactivate(azure, book, grant.pim, session_id=azure.session.id, grant_id=grant.id)
            else:
                pim.remove_agent_identity_assignment(azure, book, grant.pim, session_id=azure.session.id,
                                                     grant_id=grant.id)
            deactivated = True
        except pim.PimActivationError as exc:  # e.g. PIM's 5-minute floor (ActiveDurationTooShort)
            problem = str(exc)
        except Exception as exc:  # no answer, the call's deadline: the local grant has ended, and the audit says so
            problem = f"Azure's side could not be ended ({type(exc).__name__}); it ends by itself at its expiry."
    azure_side = None
    if grant.pim is not None:
        azure_side = (("deactivated" if grant.pim.kind == "SelfActivate" else "removed") if deactivated
                      else f"runs to its end at {utc_iso(grant.end)}: {problem}")
    book.record("revoked", grant, at=utc_iso(now), pim_deactivated=deactivated if grant.pim else None,
                pim_error=problem, azure=azure_side)
    data: dict[str, Any] = {"revoked": grant.id, "at": utc_iso(now), "pim_deactivated": deactivated}
    summary = f"Grant {grant.id} revoked at {utc_iso(now)}: this server no longer uses it"
    if deactivated:
        summary += f"; PIM deactivated '{grant.pim.role_name}'."  # type: ignore[union-attr]
    elif problem:
        data["pim_error"] = problem
        summary += (f"; but PIM kept '{grant.pim.role_name}' active in Azure (it ends by itself at "  # type: ignore[union-attr]
                    f"{utc_iso(grant.end)}): {problem}")
    else:
        summary += "."
    return ToolOutput(summary, data)


def _approval_resolver(tool: AzureTool, runtime: Any, parameters: list[Any]) -> Any:
    from azure_agent_mcp.server.access_approval import make_access_resolver

    return make_access_resolver(tool, runtime, parameters)


_GRANT = obj(("id", "scope", "end"), id=STRING, scope=STRING, operations=STRINGS, start=STRING, end=STRING,
             remaining_seconds=INTEGER)

TOOLS = (
    AzureTool(
        name="access_request",
        description="Ask the user for temporary access (operations or a role, at a scope, for an ISO duration, with a "
                    "justification); activates an eligible PIM role for the same time.",
        run=access_request,
        read_only=False,
        destructive=False,
        idempotent=False,
        needs_elevation=True,
        resolver=_approval_resolver,
        output_schema=obj(("grant",), grant=_GRANT),
    ),
    AzureTool(
        name="access_list",
        description="This agent session's active temporary grants and their remaining time.",
        run=access_list,
        needs_elevation=True,
        output_schema=obj(("items",), items=array(_GRANT), now=STRING),
    ),
    AzureTool(
        name="access_revoke",
        description="End a temporary grant early (and deactivate its PIM role).",
        run=access_revoke,
        read_only=False,
        destructive=False,
        needs_elevation=True,
        output_schema=obj(("revoked",), revoked=STRING, at=STRING, pim_error=STRING),
    ),
)
