"""The policy engine: RBAC-shaped policies enforced on every Azure request, and the audit trail.

Everything here is standard library only at import time, except ``Guard`` and ``GuardedTransport``
(the enforcement point, an azure-core transport), imported on first use so that ``serve`` and the
CLI start fast; the audit imports ``cryptography`` and ``portalocker`` when it first signs or locks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# name -> the module that defines it, imported on first use: `from azure_agent_mcp.policy import cli`
# (the command line) must not load the engine, the catalog and the audit store.
_EXPORTS = {
    "audit_files": "azure_agent_mcp.policy.audit",
    "AuditError": "azure_agent_mcp.policy.audit",
    "AuditLog": "azure_agent_mcp.policy.audit",
    "AuditUnavailable": "azure_agent_mcp.policy.audit",
    "builtin_profile": "azure_agent_mcp.policy.profiles",
    "ConfirmationRequiredError": "azure_agent_mcp.policy.errors",
    "decide": "azure_agent_mcp.policy.engine",
    "decide_request": "azure_agent_mcp.policy.decisions",
    "Decision": "azure_agent_mcp.policy.engine",
    "Effect": "azure_agent_mcp.policy.engine",
    "Endpoints": "azure_agent_mcp.policy.operations",
    "Guard": "azure_agent_mcp.policy.enforcement",
    "GuardedTransport": "azure_agent_mcp.policy.enforcement",
    "load_policy": "azure_agent_mcp.policy.loader",
    "map_request": "azure_agent_mcp.policy.operations",
    "MappedRequest": "azure_agent_mcp.policy.operations",
    "narrow_read_only": "azure_agent_mcp.policy.profiles",
    "parse_policy": "azure_agent_mcp.policy.model",
    "parse_policy_text": "azure_agent_mcp.policy.model",
    "PermissionBlock": "azure_agent_mcp.policy.model",
    "Policy": "azure_agent_mcp.policy.model",
    "PolicyDeniedError": "azure_agent_mcp.policy.errors",
    "PolicyError": "azure_agent_mcp.policy.errors",
    "PolicyLoadError": "azure_agent_mcp.policy.errors",
    "PROFILE_NAMES": "azure_agent_mcp.policy.profiles",
    "redact_arguments": "azure_agent_mcp.policy.redaction",
    "redact_secrets": "azure_agent_mcp.policy.redaction",
    "REDACTED": "azure_agent_mcp.policy.redaction",
    "scope_contains": "azure_agent_mcp.policy.scopes",
    "secret_bearing": "azure_agent_mcp.policy.catalog",
    "secret_operations": "azure_agent_mcp.policy.catalog",
    "secret_patterns": "azure_agent_mcp.policy.catalog",
    "SecretOperation": "azure_agent_mcp.policy.catalog",
    "tool_visibility": "azure_agent_mcp.policy.engine",
    "UNKNOWN_OPERATION_RULE": "azure_agent_mcp.policy.decisions",
    "UNMAPPABLE_RULE": "azure_agent_mcp.policy.decisions",
    "UnmappableRequestError": "azure_agent_mcp.policy.errors",
    "unverified_principal": "azure_agent_mcp.policy.enforcement",
    "verify_audit": "azure_agent_mcp.policy.audit",
    "VerifyResult": "azure_agent_mcp.policy.audit",
}

if TYPE_CHECKING:
    from azure_agent_mcp.policy.audit import audit_files, AuditError, AuditLog, AuditUnavailable, verify_audit, VerifyResult
    from azure_agent_mcp.policy.catalog import secret_bearing, secret_operations, secret_patterns, SecretOperation
    from azure_agent_mcp.policy.decisions import decide_request, UNKNOWN_OPERATION_RULE, UNMAPPABLE_RULE
    from azure_agent_mcp.policy.enforcement import Guard, GuardedTransport, unverified_principal
    from azure_agent_mcp.policy.engine import decide, Decision, Effect, tool_visibility
    from azure_agent_mcp.policy.errors import ConfirmationRequiredError, PolicyDeniedError, PolicyError, PolicyLoadError, UnmappableRequestError
    from azure_agent_mcp.policy.loader import load_policy
    from azure_agent_mcp.policy.model import parse_policy, parse_policy_text, PermissionBlock, Policy
    from azure_agent_mcp.policy.operations import Endpoints, map_request, MappedRequest
    from azure_agent_mcp.policy.profiles import builtin_profile, narrow_read_only, PROFILE_NAMES
    from azure_agent_mcp.policy.redaction import redact_arguments, redact_secrets, REDACTED
    from azure_agent_mcp.policy.scopes import scope_contains


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

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
