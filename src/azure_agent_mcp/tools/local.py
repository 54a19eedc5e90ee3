"""Tools that answer from the server itself: who the agent is, and what the policy would decide."""

from __future__ import annotations

import re
from dataclasses import asdict

from azure_agent_mcp.tools.base import AzureTool, ToolInputError, ToolOutput
from azure_agent_mcp.tools.clients import AzureSession
from azure_agent_mcp.tools.schemas import ANY_OBJECT, STRING, obj


# Data-plane operations (DataActions) live under these resource types; everything else is an Action
# (ARM's own Microsoft.KeyVault/vaults/secrets/read and /write are control-plane Actions).
_DATA_PLANE = re.compile(
    r"^microsoft\.keyvault/vaults/(secrets|keys|certificates|storage)/(?!read$|write$)"
    r"|^microsoft\.storage/storageaccounts/(blobservices/containers/blobs|queueservices/queues/messages"
    r"|fileservices/fileshares/files|tableservices/tables/entities)/",
    re.IGNORECASE,
)


def is_data_action(operation: str) -> bool:
    return bool(_DATA_PLANE.match(operation))


def whoami(azure: AzureSession) -> ToolOutput:
    from azure_agent_mcp.identity import whoami as identity_whoami

    info = identity_whoami(azure.credential, azure.env, azure.session)
    principal = info.get("principal") or {}
    who = principal.get("upn") or principal.get("appid") or principal.get("oid") or "unknown principal"
    markers = ", ".join(sorted(info.get("agent_markers") or {})) or "no agent markers"
    summary = f"{who} in agent session {azure.session.id} ({markers})."
    if azure.grants is not None:  # the temporary grants in force for this session (Elevation)
        now = azure.grants.clock.now()
        info["grants"] = [grant.as_json(now) for grant in azure.grants.active(azure.session.id)]
        if info["grants"]:
            summary += f" Active grants: {', '.join(g['id'] for g in info['grants'])}."
    if azure.caller:  # authenticated HTTP: the signed-in caller this session acts for
        info["caller"] = dict(azure.caller)
        summary += f" Caller: {azure.caller.get('upn') or azure.caller.get('oid')} via client {azure.caller.get('azp')}."
    return ToolOutput(summary, info)


def policy_explain(
    azure: AzureSession, operation: str | None = None, scope: str | None = None, tool: str | None = None
) -> ToolOutput:
    from azure_agent_mcp.policy import decide

    policy = azure.policy
    if tool:
        return _explain_tool(azure, tool, scope)
    if not operation:
        summary = {
            "policy": policy.name,
            "source": str(policy.source),
            "assignable_scopes": list(policy.assignable_scopes),
            "deny": list(policy.deny),
            "confirm": list(policy.confirm),
        }
        return ToolOutput(f"Active policy: {policy.name}. Pass operation (and scope) to see a decision.", summary)
    data_action = is_data_action(operation)
    decision = decide(policy, operation, scope or "/", data_action=data_action)
    if azure.grants is not None:  # what this session's live grants make of it (the guard decides the same)
        decision = azure.grants.widen(azure.session.id, decision)[0]
    data = {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(decision).items()}
    return ToolOutput(f"{data['effect']}: {operation} at {scope or '/'} ({decision.rule}).", data)


def _explain_tool(azure: AzureSession, name: str, scope: str | None) -> ToolOutput:
    """The RBAC operations a tool may request and what the active policy decides for each (at ``scope``).

    This is where a tool's operations are published: listing them in every ``tools/list`` would
    cost each chat about 1.8 KB for something a person asks about rarely.
    """
    from azure_agent_mcp.policy import decide
    from azure_agent_mcp.tools import catalog

    tools = {t.name: t for t in catalog(devops=bool(getattr(azure, "devops_organization", None)))}
    chosen = tools.get(name)
    if chosen is None:
        raise ToolInputError(f"There is no tool named {name!r}.", hint="Pass one of: " + ", ".join(sorted(tools)) + ".")
    at = scope or "/"
    decided = []
    for declared in chosen.operations:
        decision = decide(azure.policy, declared.operation, at, data_action=declared.data_action)
        decided.append({"operation": declared.operation, "data_action": declared.data_action,
                        "effect": decision.effect.value, "rule": decision.rule})
    effects = sorted({d["effect"] for d in decided}) or ["allow"]
    summary = (f"{name} requests no Azure operation." if not decided else
               f"{name} may request {len(decided)} operation(s); at {at} the policy says: {', '.join(effects)}.")
    return ToolOutput(summary, {"policy": azure.policy.name, "tool": name, "scope": at, "operations": decided})


TOOLS = (
    AzureTool(
        name="whoami",
        description="The agent session, its principal and its token's agent markers (never the token).",
        run=whoami,
        local_only=True,
        output_schema=obj(("session",), session=ANY_OBJECT),
    ),
    AzureTool(
        name="policy_explain",
        description="What the active policy decides for an operation (e.g. Microsoft.Web/sites/restart/action) at a "
                    "scope, or for a tool's operations (tool=).",
        run=policy_explain,
        local_only=True,
        # without an operation: the policy's summary; with one: the decision (effect, rule, reason, hint)
        output_schema=obj(("policy",), policy=STRING, effect=STRING),
    ),
)
