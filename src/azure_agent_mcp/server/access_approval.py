"""Asking the user to approve one temporary grant, through MCP elicitation.

The question names exactly what is granted (the operations or the role), where (the scope),
from when until when (UTC), to whom (the principal and the agent session), and why (the
justification); it says that an eligible PIM role is activated in Azure for the same period.
A client that cannot elicit is refused, never asked; ``--dangerously-skip-confirmation`` does not
apply here: an elevation is never approved by the server itself. The question is kept as a
pending approval (``GrantBook.pending``) so that it reads the same on every round of a
2026-07-28 retry, and the grant it leads to consumes it.
"""

from __future__ import annotations

import inspect
from typing import Any

from azure_agent_mcp.server.confirmation import Approval, Verdict, _client_can_elicit
from azure_agent_mcp.server.runtime import SessionHeaderError
from azure_agent_mcp.tools.base import AzureTool, ToolInputError


def grant_question(plan: Any, pending: Any, session_id: str, principal: dict[str, Any]) -> str:
    from azure_agent_mcp.access.grants import utc_iso
    from azure_agent_mcp.policy.elevation import iso_duration

    who = principal.get("upn") or principal.get("appid") or principal.get("oid") or "the signed-in identity"
    lines = [f"An AI agent asks for temporary access, as {who} (agent session {session_id}):", f"  grant {pending.grant_id}"]
    if plan.role:
        lines.append(f"  role: {plan.role} (every operation the role allows)")
    for operation in (*plan.actions, *plan.data_actions):
        lines.append(f"  operation: {operation}")
    lines += [
        f"  at: {plan.scope}",
        f"  from {utc_iso(pending.start)} until {utc_iso(pending.end)} UTC ({iso_duration(plan.seconds)})",
        f"  justification: {plan.justification}",
        "If the identity has an eligible PIM role covering this, it is activated in Azure for the same period.",
        "Approve only if you expected this.",
    ]
    return "\n".join(lines)


def make_access_resolver(tool: AzureTool, runtime: Any, parameters: list[inspect.Parameter]) -> Any:
    from mcp.server.mcpserver import Context, Elicit

    async def resolve(ctx: Context, **arguments: Any) -> Any:
        from azure_agent_mcp.access.requests import check_request
        from azure_agent_mcp.server.callers import caller_of
        from azure_agent_mcp.server.runtime import SessionLimitReached, SessionOwnershipError

        try:
            held = runtime.session_entry(ctx.headers, caller_of(ctx))
            plan = check_request(runtime.policy.elevation, held.session, runtime.grants, **arguments)
        except (ToolInputError, SessionHeaderError, SessionOwnershipError, SessionLimitReached) as exc:
            return Verdict("invalid", message=str(exc), hint=getattr(exc, "hint", ""),
                           code=getattr(exc, "code", "InvalidArgument"))
        if not _client_can_elicit(ctx):
            return Verdict(
                "cannot-confirm",
                message="Temporary access needs the user's approval, and this MCP client cannot ask (it declared no "
                        "elicitation capability), so nothing was granted.",
                hint="Use a client that supports elicitation.",
            )
        fresh = not runtime.grants.is_pending(held.session.id, plan.digest)
        pending = runtime.grants.pending(held.session.id, plan.digest, plan.seconds)
        try:
            principal = runtime.principal_for(runtime.azure_for(held))
        except Exception:  # the question is still worth asking without a name
            principal = {}
        if fresh:
            from azure_agent_mcp.access.grants import utc_iso

            runtime.grants.record("requested", None, grant_id=pending.grant_id, session_id=held.session.id,
                                  scope=plan.scope, operations=list(plan.actions + plan.data_actions) or None,
                                  role=plan.role, start=utc_iso(pending.start), end=utc_iso(pending.end),
                                  justification=plan.justification, durable=False)
        return Elicit(grant_question(plan, pending, held.session.id, principal), Approval)

    resolve.__name__ = resolve.__qualname__ = f"approve_{tool.name}"
    resolve.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context), *parameters]
    )
    resolve.__annotations__ = {"ctx": Context}
    return resolve


def note_declined(runtime: Any, tool: AzureTool, session_id: str, arguments: dict[str, Any], how: str) -> None:
    """The user declined (or cancelled) a grant's question: audited, and the question withdrawn."""
    if runtime.grants is None or tool.resolver is None:
        return
    from azure_agent_mcp.access.requests import check_request

    class _Asked:  # the question is identified by its digest; the session's limits were checked when it was asked
        id = session_id
        expires_at = None

        @staticmethod
        def remaining() -> None:
            return None

    try:
        plan = check_request(runtime.policy.elevation, _Asked(), _NoOverlap(), **arguments)
    except ToolInputError:
        return
    pending = runtime.grants.forget_pending(session_id, plan.digest)
    runtime.grants.record("declined", None, grant_id=pending.grant_id if pending else None, session_id=session_id,
                          scope=plan.scope, how=how)


class _NoOverlap:
    @staticmethod
    def overlapping(*args: Any) -> None:
        return None
