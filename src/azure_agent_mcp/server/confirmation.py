"""Deciding a tool call before it runs, and asking the user when the policy says Confirm.

The decision is made from the requests the tool plans to send. Confirmation goes through the
SDK's ``Resolve`` mechanism, so the same code elicits with a mid-call ``elicitation/create``
request on protocol versions up to 2025-11-25 and with an ``InputRequiredResult`` round trip
from 2026-07-28 on. A client that declared no elicitation capability is refused, never asked.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from azure_agent_mcp.server.runtime import SessionHeaderError, approval_key
from azure_agent_mcp.tools.base import AzureTool, ToolInputError

if TYPE_CHECKING:
    from azure_agent_mcp.policy import Decision
    from azure_agent_mcp.server.runtime import AgentRuntime


class Approval(BaseModel):
    """What the user answers when asked to confirm an operation."""

    approve: bool = Field(description="Approve this operation for this one tool call")


@dataclass
class Verdict:
    """The up-front outcome of a tool call that needed no question (or could not ask one)."""

    status: str  # "clear" | "denied" | "cannot-confirm" | "invalid"
    decision: Decision | None = None
    message: str = ""
    hint: str = ""
    approved: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    code: str = "InvalidArgument"  # an "invalid" verdict's error code (the ToolInputError's own)


def _client_can_elicit(ctx: Any) -> bool:
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def confirmation_message(decisions: list[Decision], session_id: str, principal: dict[str, Any]) -> str:
    who = principal.get("upn") or principal.get("appid") or principal.get("oid") or "the signed-in identity"
    lines = [f"An AI agent asks to perform, as {who} (agent session {session_id}):"]
    for decision in decisions:
        lines.append(f"  {decision.operation}")
        lines.append(f"    on {decision.scope or '/'}")
        lines.append(f"    because policy '{decision.policy}' requires confirmation ({decision.rule})")
    lines.append("Approve only if you expected this.")
    return "\n".join(lines)


def make_resolver(tool: AzureTool, runtime: AgentRuntime, parameters: list[inspect.Parameter]) -> Any:
    """A resolver with the tool's own parameters, so the SDK hands it the validated arguments."""
    from mcp.server.mcpserver import Context, Elicit

    async def resolve(ctx: Context, **arguments: Any) -> Any:
        if tool.plan is None:
            return Verdict("clear")
        from azure_agent_mcp.server.callers import caller_of
        from azure_agent_mcp.server.runtime import SessionLimitReached, SessionOwnershipError

        caller = caller_of(ctx)
        try:
            held = runtime.session_entry(ctx.headers, caller)
            session = held.session
            azure = runtime.azure_for(held)
            planned = tool.plan(azure, **arguments)
        except (ToolInputError, SessionHeaderError, SessionOwnershipError, SessionLimitReached) as exc:
            code = (exc.code if isinstance(exc, (ToolInputError, SessionOwnershipError, SessionLimitReached))
                    else "InvalidArgument")
            return Verdict("invalid", message=str(exc), hint=getattr(exc, "hint", ""), code=code)
        decisions = [runtime.decide_request(p.method, p.url, p.body, session_id=session.id) for p in planned]
        for decision in decisions:
            if decision.effect.value == "deny":
                return Verdict("denied", decision=decision)
        confirms = [d for d in decisions if d.effect.value == "confirm"]
        keys = frozenset(approval_key(d.operation, d.scope) for d in confirms)
        if not confirms or runtime.options.skip_confirmation:
            return Verdict("clear", approved=keys)
        if not _client_can_elicit(ctx):
            return Verdict(
                "cannot-confirm",
                decision=confirms[0],
                message=(
                    f"{confirms[0].operation} needs the user's confirmation under policy '{confirms[0].policy}', "
                    "and this MCP client cannot ask (it declared no elicitation capability), so it is denied."
                ),
                hint="Use a client that supports elicitation, or change the policy's Confirm list.",
            )
        try:
            principal = runtime.principal_for(azure)
        except Exception:  # the question is still worth asking without a name
            principal = {}
        return Elicit(confirmation_message(confirms, session.id, principal), Approval)

    resolve.__name__ = resolve.__qualname__ = f"confirm_{tool.name}"
    resolve.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context), *parameters]
    )
    resolve.__annotations__ = {"ctx": Context}
    return resolve


def approved_keys(tool: AzureTool, runtime: AgentRuntime, headers: Any, arguments: dict[str, Any],
                  caller: Any = None) -> frozenset[tuple[str, str]]:
    """After the user approved: the (operation, scope) pairs of this call that needed confirmation."""
    if tool.plan is None:
        return frozenset()
    held = runtime.session_entry(headers, caller)
    azure = runtime.azure_for(held)
    keys = set()
    for planned in tool.plan(azure, **arguments):
        decision = runtime.decide_request(planned.method, planned.url, planned.body, session_id=held.session.id)
        if decision.effect.value == "confirm":
            keys.add(approval_key(decision.operation, decision.scope))
    return frozenset(keys)
