"""Agent sessions, tagged credentials with a per-session token cache, and whoami.

Only the session and the error types load eagerly (stdlib); the credential side imports azure-core
and MSAL, so it loads on first use and ``azure-agent-mcp --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure_agent_mcp.identity.errors import (
    CredentialUnavailableError,
    IdentityError,
    InvalidDurationError,
    InvalidSessionIdError,
    SessionExpiredError,
    UnknownCredentialKindError,
)
from azure_agent_mcp.identity.session import SESSION_ENV, AgentSession, parse_duration, resolve_session

if TYPE_CHECKING:
    from azure_agent_mcp.identity.correlation import CorrelationPolicy
    from azure_agent_mcp.identity.credential import AgentCredential, TokenRequestError
    from azure_agent_mcp.identity.factory import build_credential
    from azure_agent_mcp.identity.pinning import IdentityMismatchError, PinnedCredential, resolve_pin
    from azure_agent_mcp.identity.whoami_report import whoami

_LAZY = {
    "AgentCredential": "azure_agent_mcp.identity.credential",
    "TokenRequestError": "azure_agent_mcp.identity.credential",
    "build_credential": "azure_agent_mcp.identity.factory",
    "CorrelationPolicy": "azure_agent_mcp.identity.correlation",
    "whoami": "azure_agent_mcp.identity.whoami_report",
    "IdentityMismatchError": "azure_agent_mcp.identity.pinning",
    "PinnedCredential": "azure_agent_mcp.identity.pinning",
    "resolve_pin": "azure_agent_mcp.identity.pinning",
}

__all__ = [
    "SESSION_ENV",
    "AgentCredential",
    "AgentSession",
    "CorrelationPolicy",
    "CredentialUnavailableError",
    "IdentityError",
    "IdentityMismatchError",
    "InvalidDurationError",
    "InvalidSessionIdError",
    "PinnedCredential",
    "SessionExpiredError",
    "TokenRequestError",
    "UnknownCredentialKindError",
    "build_credential",
    "parse_duration",
    "resolve_pin",
    "resolve_session",
    "whoami",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'azure_agent_mcp.identity' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
