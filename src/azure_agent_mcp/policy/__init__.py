"""The policy engine: RBAC-shaped policies enforced on every Azure request, and the audit trail.

Everything here is standard library only at import time, except ``Guard`` and ``GuardedTransport``
(the enforcement point, an azure-core transport), imported on first use so that ``serve`` and the
CLI start fast; the audit imports ``cryptography`` and ``portalocker`` when it first signs or locks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure_agent_mcp.policy.audit import AuditError, AuditLog, AuditUnavailable, VerifyResult, audit_files, verify_audit
from azure_agent_mcp.policy.catalog import SecretOperation, secret_bearing, secret_operations, secret_patterns
from azure_agent_mcp.policy.decisions import UNKNOWN_OPERATION_RULE, UNMAPPABLE_RULE, decide_request
from azure_agent_mcp.policy.engine import Decision, Effect, decide, tool_visibility
from azure_agent_mcp.policy.errors import (
    ConfirmationRequiredError,
    PolicyDeniedError,
    PolicyError,
    PolicyLoadError,
    UnmappableRequestError,
)
from azure_agent_mcp.policy.loader import load_policy
from azure_agent_mcp.policy.model import PermissionBlock, Policy, parse_policy, parse_policy_text
from azure_agent_mcp.policy.operations import Endpoints, MappedRequest, map_request
from azure_agent_mcp.policy.profiles import PROFILE_NAMES, builtin_profile, narrow_read_only
from azure_agent_mcp.policy.redaction import REDACTED, redact_arguments, redact_secrets
from azure_agent_mcp.policy.scopes import scope_contains

if TYPE_CHECKING:
    from azure_agent_mcp.policy.enforcement import Guard, GuardedTransport, unverified_principal


def __getattr__(name: str) -> Any:
    if name in ("Guard", "GuardedTransport", "unverified_principal"):
        from azure_agent_mcp.policy import enforcement

        return getattr(enforcement, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PROFILE_NAMES",
    "REDACTED",
    "UNKNOWN_OPERATION_RULE",
    "UNMAPPABLE_RULE",
    "AuditError",
    "AuditLog",
    "AuditUnavailable",
    "ConfirmationRequiredError",
    "Decision",
    "Effect",
    "Endpoints",
    "MappedRequest",
    "PermissionBlock",
    "Policy",
    "PolicyDeniedError",
    "Guard",
    "GuardedTransport",
    "PolicyError",
    "PolicyLoadError",
    "SecretOperation",
    "UnmappableRequestError",
    "VerifyResult",
    "audit_files",
    "builtin_profile",
    "decide",
    "decide_request",
    "load_policy",
    "map_request",
    "narrow_read_only",
    "parse_policy",
    "parse_policy_text",
    "redact_arguments",
    "redact_secrets",
    "scope_contains",
    "secret_bearing",
    "secret_operations",
    "secret_patterns",
    "tool_visibility",
    "unverified_principal",
    "verify_audit",
]
