"""The agent claims request, and how a resource's claims challenge joins it.

Entra learns that an agent is acting from two things on the token request: ``client_session``
(query string and form body) and a client-originated claims request naming the session. Two
claims shapes exist: ``xms_cli_sid`` (what Azure CLI sends today, the default) and
``xms_agent_session`` (its earlier shape). A resource's claims challenge (``insufficient_claims``)
is merged in, but never allowed to replace the session marker.

Stdlib only.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from azure_agent_mcp.identity.errors import IdentityError

PROFILES = ("xms_cli_sid", "xms_agent_session")
DEFAULT_PROFILE = "xms_cli_sid"

AGENT_MARKERS = ("xms_cli_ses", "xms_cli_sid", "xms_agent_session", "xms_act_fct", "xms_sub_fct", "xms_par_app_azp")
"""Token claims that say an agent (or an agent identity) is acting."""

SESSION_MARKERS = ("xms_cli_ses", "xms_cli_sid", "xms_agent_session")
"""The markers whose value is the agent session id."""


class InvalidClaimsError(IdentityError, ValueError):
    """A claims request (or a challenge's claims) that is not a JSON object."""


def agent_claims(session_id: str, profile: str = DEFAULT_PROFILE) -> str:
    """The claims request that asks Entra to put the session into the access token (compact JSON)."""
    if profile == "xms_cli_sid":
        request: dict[str, Any] = {"access_token": {"xms_cli_sid": {"values": [session_id]}}}
    elif profile == "xms_agent_session":
        request = {"access_token": {"xms_agent_session": {"essential": True, "value": session_id}}}
    else:
        raise InvalidClaimsError(f"unknown session claims profile {profile!r}: choose one of {', '.join(PROFILES)}")
    return json.dumps(request, separators=(",", ":"))


def parse_claims(claims: str) -> dict[str, Any]:
    try:
        parsed = json.loads(claims)
    except (TypeError, ValueError) as exc:
        raise InvalidClaimsError("the claims request is not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise InvalidClaimsError("the claims request is not a JSON object")
    return parsed


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge_claims(agent: str | None, challenge: str | None) -> str | None:
    """One claims request carrying both; where both name the same claim the agent's wins (the tag is ours)."""
    if not challenge:
        return agent
    if not agent:
        return json.dumps(parse_claims(challenge), separators=(",", ":"))
    merged = _deep_merge(parse_claims(challenge), parse_claims(agent))
    return json.dumps(merged, separators=(",", ":"))


def decode_challenge_claims(encoded: str) -> str:
    """The claims JSON from a ``WWW-Authenticate`` challenge's base64url ``claims`` parameter."""
    try:
        text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidClaimsError("the challenge's claims parameter is not base64url JSON") from exc
    parse_claims(text)
    return text


def unverified_jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, read without verifying it (we describe tokens; Azure verifies them).

    Returns {} for tokens that are not JWTs (some providers issue opaque tokens).
    """
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}


def agent_markers(claims: dict[str, Any]) -> dict[str, Any]:
    """The agent markers present in a token's claims, by name."""
    return {name: claims[name] for name in AGENT_MARKERS if name in claims}
