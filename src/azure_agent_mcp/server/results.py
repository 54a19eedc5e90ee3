"""Tool results as agents read them: a short text plus structured JSON, errors in one shape.

Errors are ``{"error": {"code", "message", "operation", "scope", "rule", "hint"}}``: policy
denials name the rule and what would allow it; Azure errors keep ARM's code, message and status.
No exception text that could carry a token reaches a result: SDK errors are reduced to ARM's
own code and message.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mcp_types import CallToolResult, TextContent

from azure_agent_mcp.tools.base import ToolInputError, ToolOutput

if TYPE_CHECKING:
    from azure_agent_mcp.policy import Decision, Policy


def success(output: ToolOutput, policy: Policy) -> CallToolResult:
    from azure_agent_mcp.policy.redaction import redact_secrets, withhold_outputs

    data = output.data
    redacted: list[str] = list(output.redacted)
    if secrets_denied(policy):
        data, withheld = withhold_outputs(data)
        data, fields = redact_secrets(data)
        redacted.extend(withheld + fields)
    if redacted:
        data = {**data, "redacted_fields": redacted}
    summary = output.summary + (f" Redacted {len(redacted)} secret field(s)." if redacted else "")
    return CallToolResult(
        content=[TextContent(type="text", text=summary)],
        structured_content=data,
    )


# A secret-bearing operation every profile classifies as such: if the policy can never allow it,
# the policy denies secrets, and secret-looking fields in allowed responses are redacted.
_SECRET_PROBE = ("Microsoft.Storage/storageAccounts/listKeys/action", False)


def secrets_denied(policy: Policy) -> bool:
    from azure_agent_mcp.policy import tool_visibility

    return tool_visibility(policy, [_SECRET_PROBE]).effect.value == "deny"


def failure(
    code: str,
    message: str,
    *,
    decision: Decision | None = None,
    hint: str = "",
    status: int | None = None,
) -> CallToolResult:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "operation": decision.operation if decision else None,
        "scope": decision.scope if decision else None,
        "rule": decision.rule if decision else None,
        "hint": hint or None,
    }
    if decision is not None:
        error["policy"] = decision.policy
        error["effect"] = decision.effect.value
    if status is not None:
        error["status"] = status
    text = f"{code}: {message}"
    if decision is not None:
        text += f" [rule: {decision.rule}]"
    if hint:
        text += f" Hint: {hint}"
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={"error": error}, is_error=True)


_SIGN_IN_HINT = (
    "Entra refused the credential: check it (azure-agent-mcp whoami shows which one is in use) and sign in "
    "again if it is a user (azure-agent-mcp login, or az login)."
)


def error_payload(exc: BaseException) -> CallToolResult:
    """Map what a tool raised to the error shape; unknown exceptions say only their type."""
    from azure_agent_mcp.identity import SessionExpiredError
    from azure_agent_mcp.policy import PolicyDeniedError
    from azure_agent_mcp.tools.clients import AzureRequestError

    from azure_agent_mcp.policy import AuditUnavailable

    if isinstance(exc, AuditUnavailable):
        return failure(
            "AuditUnavailable",
            f"{exc}. Nothing more of this call was sent to Azure: no request leaves without its audit record.",
            hint=f"Make {exc.path} writable again (free space, permissions, the directory); the server keeps "
            "running and writes again on the next call by itself.",
        )
    if isinstance(exc, PolicyDeniedError):
        decision = exc.decision
        code = "ConfirmationRequired" if decision.effect.value == "confirm" else "PolicyDenied"
        return failure(code, decision.reason, decision=decision, hint=decision.hint)
    if isinstance(exc, ToolInputError):
        return failure(exc.code, str(exc), hint=exc.hint)
    if isinstance(exc, SessionExpiredError):
        return failure("SessionExpired", str(exc), hint="Start a new agent session (restart the server or a new chat).")
    from azure_agent_mcp.identity import IdentityMismatchError

    if isinstance(exc, IdentityMismatchError):
        return failure(
            "IdentityMismatch",
            str(exc.message),
            hint="The credential is not the identity this server is pinned to: fix the credential, "
            "or --expect-principal / the policy's ExpectedPrincipal.",
        )
    if isinstance(exc, AzureRequestError):
        return failure(exc.code, exc.message, status=exc.status, hint=_azure_hint(exc.code, exc.status))
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    if isinstance(exc, HttpResponseError):
        code, message = _arm_error(exc)
        if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
            return failure("AuthenticationFailed", message, hint=_SIGN_IN_HINT)
        return failure(code, message, status=exc.status_code, hint=_azure_hint(code, exc.status_code))
    if isinstance(exc, ClientAuthenticationError):
        return failure("AuthenticationFailed", _first_line(exc), hint=_SIGN_IN_HINT)
    from azure_agent_mcp.identity import IdentityError

    if isinstance(exc, IdentityError):  # written for operators: says what is missing, never a secret
        return failure(
            "CredentialUnavailable", _first_line(exc), hint="Check the server's --credential and sign-in (whoami shows it)."
        )
    return failure("InternalError", f"The tool failed with {type(exc).__name__}.", hint="See the server's stderr log.")


def _arm_error(exc: Any) -> tuple[str, str]:
    error = getattr(exc, "error", None)
    if error is not None and getattr(error, "code", None):
        return str(error.code), str(error.message or "")
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = json.loads(response.text())
            inner = body.get("error", {})
            return str(inner.get("code") or f"HTTP{exc.status_code}"), str(inner.get("message") or "")
        except (ValueError, AttributeError):
            pass
    return f"HTTP{exc.status_code}", _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__


def _azure_hint(code: str, status: int | None) -> str:
    if status == 403 and code == "AgentSessionSecretAccessDenied":
        return "Azure itself refuses secrets to agent-tagged tokens; a human must read this secret."
    if status == 403:
        return "Azure RBAC refused this: the identity needs a role assignment granting the operation at this scope."
    if status == 401:
        return "The token was refused; sign in again."
    if status == 404:
        return "Check the id or path (resource_list shows existing resources)."
    return ""
