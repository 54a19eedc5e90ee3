"""Who is calling: the principal of a verified bearer token, as sessions, OBO and the audit need it.

A caller is its tenant and object id (``key``); the upn, name and client app (``azp``) describe it.
The token itself rides along only as the OBO grant's user assertion: it is excluded from ``repr``
and from ``describe()``, so it cannot reach a log line, an audit record or a tool result by way of
this object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CallerKey = tuple[str, str]
"""(tid, oid)"""

SCOPE_KEY = "azure_agent_mcp.caller"
"""Where the ASGI layer leaves the request's Caller in the ASGI scope."""


@dataclass(frozen=True)
class Caller:
    tid: str
    oid: str
    upn: str | None = None
    name: str | None = None
    azp: str | None = None
    expires_at: int = 0
    issued_at: int = 0
    assertion: str = field(default="", repr=False, compare=False)

    @property
    def key(self) -> CallerKey:
        return self.tid, self.oid

    def describe(self) -> dict[str, Any]:
        """What the audit and whoami say about the caller (never the token)."""
        out = {"tid": self.tid, "oid": self.oid, "upn": self.upn, "name": self.name, "azp": self.azp}
        return {k: v for k, v in out.items() if v}


def caller_from_claims(claims: dict[str, Any], assertion: str) -> Caller:
    return Caller(
        tid=str(claims["tid"]),
        oid=str(claims["oid"]),
        upn=_text(claims.get("upn") or claims.get("preferred_username")),
        name=_text(claims.get("name")),
        azp=_text(claims.get("azp") or claims.get("appid")),
        expires_at=int(claims.get("exp") or 0),
        issued_at=int(claims.get("iat") or 0),
        assertion=assertion,
    )


def _text(value: Any) -> str | None:
    return str(value)[:256] if value else None


def request_caller(request: Any) -> Caller | None:
    """The Caller the ASGI layer attached to this HTTP request, or None (stdio, anonymous HTTP)."""
    return scope_caller(getattr(request, "scope", None))


def scope_caller(scope: Any) -> Caller | None:
    """The Caller the resource server put on an ASGI scope, or None."""
    if not isinstance(scope, dict):
        return None
    caller = scope.get(SCOPE_KEY)
    return caller if isinstance(caller, Caller) else None


def caller_of(ctx: Any) -> Caller | None:
    """The caller of the request an MCPServer ``Context`` is handling, or None."""
    try:
        request = ctx.request_context.request
    except Exception:  # outside a request (in-process calls)
        return None
    return request_caller(request)
