"""What a token's agentic claims say, in words: who is acting, as whom, for which agent.

Entra marks agent tokens with facet claims (space-separated numbers, in no particular order):
``xms_act_fct`` describes the actor (``appid``/``azp``), ``xms_sub_fct`` the subject (``oid``);
11 means an agent identity, 13 an agent's user account. ``xms_par_app_azp`` names the agent
identity's blueprint. Users tagged by this server carry a session marker instead. Reading these
lets whoami and the audit say "agent identity acting autonomously" rather than print numbers.

Stdlib only. Claims are read, never verified: Azure verifies tokens, we describe them.
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.identity.claims import SESSION_MARKERS

AGENT_IDENTITY_FACET = "11"
AGENT_USER_FACET = "13"

AUTONOMOUS = "agent identity acting autonomously"
AGENT_USER = "agent user"
ON_BEHALF_OF_USER = "agent identity acting for a user"
USER_WITH_AGENT_SESSION = "user with agent session"


def facets(value: Any) -> frozenset[str]:
    """The facet numbers of an ``xms_*_fct`` claim (a space-separated string, or a list)."""
    if isinstance(value, (list, tuple)):
        return frozenset(str(v) for v in value)
    if isinstance(value, (str, int)):
        return frozenset(str(value).split())
    return frozenset()


def describe_agentic(claims: dict[str, Any]) -> dict[str, Any] | None:
    """``{"summary", "description", ...}`` for a token an agent is using, or None for a plain token."""
    actor = facets(claims.get("xms_act_fct"))
    subject = facets(claims.get("xms_sub_fct"))
    app = claims.get("appid") or claims.get("azp")
    blueprint = claims.get("xms_par_app_azp")
    via = f" (agent identity {app}" + (f", blueprint {blueprint})" if blueprint else ")")
    if AGENT_USER_FACET in subject:
        who = claims.get("upn") or claims.get("oid")
        return {"summary": AGENT_USER, "description": f"agent user {who}, acted as by the agent identity{via}",
                "agent_identity": app, "blueprint": blueprint, "agent_user": who}
    if AGENT_IDENTITY_FACET in actor:
        if claims.get("idtyp") == "user":
            who = claims.get("upn") or claims.get("oid")
            return {"summary": ON_BEHALF_OF_USER, "description": f"agent identity acting on behalf of user {who}{via}",
                    "agent_identity": app, "blueprint": blueprint, "user": who}
        return {"summary": AUTONOMOUS, "description": f"agent identity acting autonomously{via}",
                "agent_identity": app, "blueprint": blueprint}
    sessions = {str(claims[name]) for name in SESSION_MARKERS if claims.get(name)}
    if sessions and claims.get("idtyp", "user") == "user":
        who = claims.get("upn") or claims.get("oid")
        return {"summary": USER_WITH_AGENT_SESSION,
                "description": f"user {who} with agent session {', '.join(sorted(sessions))}", "user": who}
    return None
