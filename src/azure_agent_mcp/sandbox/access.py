"""Who is calling (bearer token -> principal) and the resource providers' agent rule.

Shared by ARM and the Key Vault data plane; each plane renders failures in its own error shape.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from azure_agent_mcp.sandbox.protocol import Request
from azure_agent_mcp.sandbox.rbac import pattern_matches
from azure_agent_mcp.sandbox.tokens import TokenExpiredError, TokenInvalidError, TokenService

AGENT_CLAIMS = ("xms_cli_ses", "xms_cli_sid", "xms_agent_session")

# Operations the RP agent rule refuses to agent-tagged tokens: they return secret material.
SECRET_BEARING = (
    "*/listKeys/action",
    "*/regenerateKey/action",
    "*/listCredentials/action",
    "*/listConnectionStrings/action",
    "*/listSecrets/action",
    "*/listAdminKeys/action",
    "Microsoft.Web/sites/config/list/action",
    "Microsoft.KeyVault/vaults/secrets/getSecret/action",
)

_LOG_CLAIMS = ("oid", "appid", "upn", "idtyp", "xms_cli_ses", "xms_cli_sid", "xms_agent_session", "uti",
               "xms_act_fct", "xms_sub_fct", "xms_par_app_azp")


@dataclass(frozen=True)
class Principal:
    claims: dict[str, Any]

    @property
    def object_id(self) -> str:
        return str(self.claims.get("oid") or "")

    @property
    def display(self) -> str:
        """How ARM names the client in AuthorizationFailed: the upn for users, the appid for apps."""
        return str(self.claims.get("upn") or self.claims.get("appid") or self.object_id)

    @property
    def agent_markers(self) -> dict[str, Any]:
        return {name: self.claims[name] for name in AGENT_CLAIMS if self.claims.get(name)}

    @property
    def tagged(self) -> bool:
        return bool(self.agent_markers)

    def log_fields(self) -> dict[str, Any]:
        return {
            "token_session": self.claims.get("xms_cli_ses"),
            "token_claims": {name: self.claims.get(name) for name in _LOG_CLAIMS},
        }


@dataclass(frozen=True)
class AuthFailure:
    """Why a bearer token was refused: ARM's error code and message, and the challenge's description."""

    code: str
    message: str
    description: str


def _utc(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%m/%d/%Y %H:%M:%S")


def authenticate(tokens: TokenService, request: Request, audiences: frozenset[str]) -> Principal | AuthFailure:
    header = request.headers.get("authorization")
    if not header:
        return AuthFailure(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
            "The authentication failed because of missing 'Authorization' header.",
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return AuthFailure(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            "The authentication failed because the 'Authorization' header is not in the 'Bearer <token>' format.",
        )
    try:
        claims = tokens.verify(token)
    except TokenExpiredError as exc:
        return AuthFailure(
            "ExpiredAuthenticationToken",
            f"The access token expiry UTC time '{_utc(exc.exp)}' is earlier than current UTC time '{_utc(exc.now)}'.",
            "The access token has expired.",
        )
    except TokenInvalidError as exc:
        return AuthFailure(
            "InvalidAuthenticationToken",
            f"The access token is invalid: {exc}.",
            f"The access token is invalid: {exc}.",
        )
    aud = claims.get("aud")
    if aud not in audiences:
        allowed = ",".join(f"'{a}'" for a in sorted(audiences))
        return AuthFailure(
            "InvalidAuthenticationTokenAudience",
            f"The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match "
            f"with one of the allowed audiences {allowed}.",
            "The access token has been obtained for the wrong audience.",
        )
    if not claims.get("oid"):
        return AuthFailure(
            "InvalidAuthenticationToken",
            "The received access token is not valid: at least one of the claims 'puid' or 'altsecid' or 'oid' "
            "should be present.",
            "The access token carries no 'oid'.",
        )
    return Principal(claims)


def is_secret_bearing(operation: str) -> bool:
    return any(pattern_matches(p, operation) for p in SECRET_BEARING)


def agent_rule_message(principal: Principal, operation: str) -> str:
    markers = ", ".join(sorted(principal.agent_markers))
    return (
        f"The access token carries an agent-session claim ({markers}); an agent-session token may not read "
        f"secrets: operation '{operation}' is refused by the resource provider for agent sessions. Ask the user "
        "to perform this operation themselves, outside the agent session."
    )
