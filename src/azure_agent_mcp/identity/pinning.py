"""Identity pinning: refuse any token that is not for the principal this server must run as.

Published agents have been seen authenticating as a shared project identity instead of their own,
and the only trace was the ``appid`` at the resource. With a pin (``--expect-principal`` or the
policy's ``ExpectedPrincipal``), every token the credential hands out is checked before use: its
``appid``, ``azp`` or ``oid`` must be the pinned GUID, otherwise ``IdentityMismatchError`` names
the presented and the expected identity and nothing is sent (fail closed; a token we cannot read
is refused too).

The check sits outside the session's credential, so it sees every token exactly as the SDK
clients get it, cached or fresh; a token string that passed once is remembered, so the hot path
stays a dictionary lookup.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import ClientAuthenticationError

from azure_agent_mcp.identity.agentic_claims import describe_agentic
from azure_agent_mcp.identity.claims import unverified_jwt_claims
from azure_agent_mcp.identity.errors import IdentityError

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
IDENTIFYING_CLAIMS = ("appid", "azp", "oid", "upn", "idtyp", "tid", "xms_act_fct", "xms_sub_fct", "xms_par_app_azp")
"""What a mismatch report may show of a token: identifiers only, never the token."""
FLAG_SOURCE = "--expect-principal"
POLICY_SOURCE = "policy ExpectedPrincipal"
_REMEMBERED = 256


class InvalidPrincipalError(IdentityError, ValueError):
    """A pin that is not an app id or object id (a GUID)."""


class ConflictingPinsError(IdentityError):
    """``--expect-principal`` and the policy's ``ExpectedPrincipal`` name different principals."""


class IdentityMismatchError(ClientAuthenticationError, IdentityError):
    """The credential produced a token for another principal than the pinned one; it was not used.

    ``presented``: the token's identifying claims (appid, azp, oid, upn, idtyp, agent facets);
    ``expected``: the pinned GUID; ``source``: where the pin came from. Being a
    ``ClientAuthenticationError``, it surfaces from SDK clients as an authentication failure.
    """

    def __init__(self, presented: dict[str, Any], expected: str, source: str) -> None:
        self.presented = presented
        self.expected = expected
        self.source = source
        message = (
            f"identity pinning refused a token: it was issued to {describe_principal(presented)}, but this server "
            f"is pinned to {expected} ({source}); nothing was sent to Azure with it. Check which identity the "
            f"credential really uses (blueprint, agent identity id, a shared project identity?) or correct the pin."
        )
        super().__init__(message=message)

    def audit_fields(self) -> dict[str, Any]:
        """For the audit record of the refused call: which identity was presented and which expected."""
        return {"identity_mismatch": {"presented": dict(self.presented), "expected": self.expected,
                                      "source": self.source}}


def describe_principal(claims: dict[str, Any]) -> str:
    """``appid X (oid Y, idtyp app)`` or ``user U (oid Y, app X)``, plus what the agentic claims say."""
    app = claims.get("appid") or claims.get("azp")
    if claims.get("upn"):
        text = f"user {claims['upn']} (oid {claims.get('oid', '?')}, app {app or '?'})"
    elif app:
        text = f"app {app} (oid {claims.get('oid', '?')}, idtyp {claims.get('idtyp', '?')})"
    else:
        text = f"object {claims.get('oid', '?')}"
    agentic = describe_agentic(claims)
    return text + (f", {agentic['summary']}" if agentic else ", no agent identity claims")


def normalize_principal(value: str, source: str = FLAG_SOURCE) -> str:
    """The pin as a lower-case GUID (an app id or object id); raises InvalidPrincipalError."""
    text = (value or "").strip()
    if not _GUID.fullmatch(text):
        raise InvalidPrincipalError(
            f"{source} {value!r} is not an app id or object id: give the GUID of the principal this server must "
            "run as (for Entra Agent ID, the agent identity's id)"
        )
    return text.lower()


def resolve_pin(flag: str | None, policy_value: str | None) -> tuple[str | None, str | None]:
    """(expected principal, source) from the flag and the policy; both set and different -> refuse."""
    pinned = normalize_principal(flag, FLAG_SOURCE) if flag else None
    from_policy = normalize_principal(policy_value, POLICY_SOURCE) if policy_value else None
    if pinned and from_policy and pinned != from_policy:
        raise ConflictingPinsError(
            f"{FLAG_SOURCE} {pinned} and the {POLICY_SOURCE} {from_policy} disagree; refusing to start: "
            "remove one or make them name the same principal"
        )
    if pinned:
        return pinned, FLAG_SOURCE
    if from_policy:
        return from_policy, POLICY_SOURCE
    return None, None


def presented_principal(token: str) -> dict[str, Any]:
    claims = unverified_jwt_claims(token)
    return {name: claims[name] for name in IDENTIFYING_CLAIMS if name in claims}


def matches(claims: dict[str, Any], expected: str) -> bool:
    return any(str(claims.get(name, "")).lower() == expected for name in ("appid", "azp", "oid"))


class PinnedCredential:
    """Wraps a session credential (TokenCredential + SupportsTokenInfo); everything else passes through."""

    def __init__(self, inner: Any, expected: str, source: str = FLAG_SOURCE) -> None:
        self._inner = inner
        self.expected_principal = normalize_principal(expected, source)
        self.pin_source = source
        self._passed: dict[str, None] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def inner(self) -> Any:
        return self._inner

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        token = self._inner.get_token(*scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs)
        self.check(token.token)
        return token

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        info = self._inner.get_token_info(*scopes, options=options)
        self.check(info.token)
        return info

    def check(self, token: str) -> None:
        """Raise IdentityMismatchError unless ``token`` is for the pinned principal."""
        if token in self._passed:
            return
        presented = presented_principal(token)
        if not matches(presented, self.expected_principal):
            raise IdentityMismatchError(presented or {"token": "not a readable JWT"}, self.expected_principal,
                                        self.pin_source)
        with self._lock:
            if len(self._passed) >= _REMEMBERED:
                self._passed.clear()
            self._passed[token] = None

    def describe(self) -> dict[str, Any]:
        describe = getattr(self._inner, "describe", None)
        details = describe() if callable(describe) else {"kind": getattr(self._inner, "kind", "unknown")}
        return {**details, "expected_principal": self.expected_principal, "pin_source": self.pin_source}

    def close(self) -> None:
        with self._lock:
            self._passed.clear()
        self._inner.close()

    def __enter__(self) -> PinnedCredential:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pin(credential: Any, expected: str | None, source: str = FLAG_SOURCE) -> Any:
    """``credential`` checked against ``expected`` (unchanged when there is no pin)."""
    return PinnedCredential(credential, expected, source) if expected else credential
