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
    from azure_agent_mcp.policy.redaction import redact_secrets, response_text, withhold_outputs

    data = output.data
    redacted: list[str] = list(output.redacted)
    if secrets_denied(policy):
        text = response_text(data)  # one serialisation serves both pre-checks when nothing is withheld
        withheld_data, withheld = withhold_outputs(data, text=text)
        data, fields = redact_secrets(withheld_data, text=text if withheld_data is data else None)
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
    **details: Any,
) -> CallToolResult:
    """The error result. ``details`` (``endpoint``, ``cause``, ``retry_after``, ...) are added when not None."""
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
    error.update({k: v for k, v in details.items() if v is not None})
    # Azure DevOps' messages open with their own code ("TF51006: ..."): say it once
    text = message if message.startswith(f"{code}:") else f"{code}: {message}"
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
    from azure_agent_mcp.callcontext import CallCancelledError, CallDeadlineError, current_control
    from azure_agent_mcp.identity import SessionExpiredError
    from azure_agent_mcp.identity.credential import TokenServiceUnavailableError
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
    if isinstance(exc, CallDeadlineError):
        return deadline_failure(exc.timeout)
    if isinstance(exc, CallCancelledError):
        return cancelled_failure(exc.reason)
    if isinstance(exc, TokenServiceUnavailableError):
        return token_service_failure(exc)
    obo = on_behalf_of_failure(exc)
    if obo is not None:
        return obo
    network = network_failure(exc)
    if network is not None:
        control = current_control()
        if control is not None and (control.expired or network.cause == "timeout" and control.remaining() is not None
                                    and control.remaining() < 0.5):
            return deadline_failure(control.timeout, network)
        return failure("NetworkError", network.message, hint=network.hint, endpoint=network.endpoint,
                       cause=network.cause)
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
    from azure_agent_mcp.tools.devops_client import DevOpsRequestError

    if isinstance(exc, DevOpsRequestError):  # its TF code, typeKey and message, and what to do about it
        return failure(exc.code, exc.message, status=exc.status,
                       hint=exc.hint or _azure_hint(exc.code, exc.status, exc.retry_after),
                       type_key=exc.type_key, service="Azure DevOps",
                       retry_after=_whole_seconds(exc.retry_after))
    if isinstance(exc, AzureRequestError):
        return failure(exc.code, exc.message, status=exc.status, hint=_azure_hint(exc.code, exc.status, exc.retry_after),
                       retry_after=_whole_seconds(exc.retry_after))
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    if isinstance(exc, HttpResponseError):
        code, message = _arm_error(exc)
        if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
            return failure("AuthenticationFailed", message, hint=_SIGN_IN_HINT)
        from azure_agent_mcp.tools.clients import retry_after_seconds

        response = getattr(exc, "response", None)
        retry_after = retry_after_seconds(getattr(response, "headers", None))
        return failure(code, message, status=exc.status_code, hint=_azure_hint(code, exc.status_code, retry_after),
                       retry_after=_whole_seconds(retry_after))
    if isinstance(exc, ClientAuthenticationError):
        return failure("AuthenticationFailed", _first_line(exc), hint=_SIGN_IN_HINT)
    from azure_agent_mcp.identity import IdentityError

    if isinstance(exc, IdentityError):  # written for operators: says what is missing, never a secret
        return failure(
            "CredentialUnavailable", _first_line(exc), hint="Check the server's --credential and sign-in (whoami shows it)."
        )
    return failure(
        "InternalError",
        f"The tool failed with {type(exc).__name__}.",
        hint="The server's stderr log has a line for this call: search it for the correlation id.",
    )


def on_behalf_of_failure(exc: BaseException) -> CallToolResult | None:
    """The on-behalf-of exchange's own refusals (consent missing, the caller's token refused), or None."""
    import sys

    obo = sys.modules.get("azure_agent_mcp.identity.obo")
    if obo is None:  # never imported: no exchange ever ran in this process
        return None
    if isinstance(exc, obo.ConsentRequiredError):
        return failure(
            "ConsentRequired",
            f"Entra needs consent first: {exc.message}. Nothing was sent to Azure.",
            hint="The user consents at consent_url (sign in, accept); a tenant administrator can consent for everyone "
            "at admin_consent_url. Then call again.",
            consent_url=exc.consent_url,
            admin_consent_url=exc.admin_consent_url,
        )
    if isinstance(exc, obo.OboPrincipalMismatchError):
        return failure("IdentityMismatch", str(exc.message),
                       hint="The token service answered for someone else; nothing was sent. Tell the server's operator.")
    if isinstance(exc, obo.OboRefusedError):
        return failure("OnBehalfOfRefused", str(exc.message), hint="Sign in to the MCP server again (a fresh token).")
    return None


def deadline_failure(timeout: float | None, network: NetworkFailure | None = None) -> CallToolResult:
    limit = f"{timeout:g} s" if timeout else "its"
    message = f"The call did not finish within {limit} deadline (--call-timeout)"
    if network is not None:
        message += f": {network.label} at {network.endpoint} did not answer {network.request} in time"
    message += ". Nothing more of this call is sent to Azure; a request already sent may still complete."
    return failure(
        "DeadlineExceeded",
        message,
        hint="Retry later; if Azure is slow rather than down, start the server with a longer --call-timeout.",
        endpoint=network.endpoint if network else None,
        cause="timeout" if network else None,
    )


def cancelled_failure(reason: str) -> CallToolResult:
    from azure_agent_mcp.callcontext import CANCEL_REASONS

    why = CANCEL_REASONS.get(reason, reason)
    return failure(
        "Cancelled" if reason != "shutdown" else "ServerShuttingDown",
        f"The call was cancelled: {why}. No further request of this call is sent to Azure; a request already "
        "sent may still complete (the audit log records each one).",
        hint="Call again (after the server restarts, if it was shutting down).",
    )


def token_service_failure(exc: Any) -> CallToolResult:
    seconds = _whole_seconds(getattr(exc, "retry_after", None))
    when = f"retry in {seconds} s" if seconds is not None else "retry shortly"
    status = getattr(exc, "status", None)
    detail = f" (HTTP {status})" if status else ""
    endpoint = getattr(exc, "endpoint", None)
    where = f" at {endpoint}" if endpoint else ""
    return failure(
        "TokenServiceUnavailable",
        f"Token service unavailable{detail}: Entra{where} is throttling or failing token requests; {when}.",
        hint=f"This is Entra's side, not the credential: {when}. Until then token requests for this account are "
        "held back (MSAL's throttling), so calls that need a new token fail fast.",
        status=status,
        retry_after=seconds,
        endpoint=endpoint,
    )


def _whole_seconds(value: float | None) -> int | None:
    if value is None:
        return None
    import math

    return max(int(math.ceil(value)), 0)


# -- network failures: which endpoint, and why -------------------------------------------------------

_CAUSES = {
    "refused": ("the connection was refused",
                "Nothing accepts connections there: check the endpoint (cloud, sandbox manifest) and that the "
                "service is up."),
    "reset": ("the connection was reset or closed before the answer arrived",
              "Retry; if it persists, look at proxies, firewalls or load balancers between this server and Azure. "
              "A write may have reached Azure: check before repeating it."),
    "tls": ("the TLS handshake failed",
            "Check the CA bundle the server trusts (the sandbox CA, REQUESTS_CA_BUNDLE) and any TLS-inspecting "
            "proxy."),
    "timeout": ("the connection or the answer timed out",
                "Retry later; check the network path to the endpoint."),
    "dns": ("the host name did not resolve", "Check DNS and the endpoint's host name."),
    "unreachable": ("the network request failed", "Check the network path to the endpoint."),
}


class NetworkFailure:
    def __init__(self, cause: str, label: str, method: str | None, url: str | None) -> None:
        from urllib.parse import urlsplit

        self.cause = cause
        self.label = label
        parts = urlsplit(url or "")
        self.endpoint = f"{parts.scheme}://{parts.netloc}" if parts.netloc else "an unknown endpoint"
        self.request = f"{method or 'the request'} {parts.path or '/'}" if parts.netloc else "the request"

    @property
    def message(self) -> str:
        return f"{self.label} at {self.endpoint} could not be reached: {_CAUSES[self.cause][0]} ({self.request})."

    @property
    def hint(self) -> str:
        return _CAUSES[self.cause][1]


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (causes, contexts, azure-core's and urllib3's inner errors)."""
    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo and len(seen) < 32:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend([item.__cause__, item.__context__, getattr(item, "inner_exception", None),
                     getattr(item, "exc_value", None), getattr(item, "reason", None), getattr(item, "error", None)])
        todo.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))
    return seen


def _is_network(exc: BaseException) -> bool:
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return True
    try:
        import requests

        if isinstance(exc, requests.RequestException) and not isinstance(exc, requests.HTTPError):
            return True
    except ImportError:  # pragma: no cover - requests comes with azure-core
        pass
    return isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__module__ == "ssl"


def _cause(chain: list[BaseException]) -> str:
    import errno
    import socket
    import ssl

    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, ssl.SSLError) for e in chain) or names & {"SSLError", "SSLCertVerificationError"} or (
        "ssl" in text and ("certificate" in text or "handshake" in text or "wrong version" in text)
    ):
        return "tls"
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolutionError" in names or (
        "name or service not known" in text or "getaddrinfo failed" in text or "nodename nor servname" in text
    ):
        return "dns"
    if any(isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED for e in chain) or (
        "connection refused" in text or "actively refused" in text
    ):
        return "refused"
    if any(isinstance(e, TimeoutError) for e in chain) or names & {
        "ReadTimeout", "ConnectTimeout", "Timeout", "ReadTimeoutError", "ConnectTimeoutError",
        "ServiceResponseTimeoutError", "ServiceRequestTimeoutError",
    } or "timed out" in text:
        return "timeout"
    if any(isinstance(e, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)) for e in chain) or names & {
        "RemoteDisconnected", "ProtocolError", "IncompleteRead", "IncompleteReadError",
    } or "connection aborted" in text or "connection reset" in text or "remote end closed" in text:
        return "reset"
    return "unreachable"


def _request_of(chain: list[BaseException]) -> tuple[str, str | None, str | None]:
    for item in chain:
        tagged = getattr(item, "azure_agent_mcp_request", None)
        if isinstance(tagged, tuple) and len(tagged) == 3:
            return tagged
    for item in chain:
        request = getattr(item, "request", None)
        url = getattr(request, "url", None)
        if isinstance(url, str) and url:
            return "Azure", getattr(request, "method", None), url
    return "Azure", None, None


def network_failure(exc: BaseException) -> NetworkFailure | None:
    """The endpoint and cause of a network failure (refused, reset, TLS, timeout, DNS), or None."""
    if not _is_network(exc):
        # a credential failure caused by the network (MSAL could not reach Entra) is a network failure too
        from azure.core.exceptions import ClientAuthenticationError

        from azure_agent_mcp.identity import IdentityError

        wraps = isinstance(exc, IdentityError) or (
            isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None
        )
        if not wraps:
            return None
    chain = _chain(exc)
    if not any(_is_network(e) for e in chain):
        return None
    label, method, url = _request_of(chain)
    return NetworkFailure(_cause(chain), label, method, url)


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


_NOT_FOUND_HINTS = {
    "DeploymentNotFound": "deployment_list shows the deployments at a scope: pass resource_group for a group's "
    "deployments, omit it for the subscription's own.",
    "RoleDefinitionDoesNotExist": "Find a role by role_name, or pass the roleDefinitionId a role assignment shows "
    "(role_assignment_list).",
    "ResourceGroupNotFound": "group_list shows the subscription's resource groups.",
}


def _azure_hint(code: str, status: int | None, retry_after: float | None = None) -> str:
    seconds = _whole_seconds(retry_after)
    if status == 429:
        when = f"retry in {seconds} s (Retry-After)" if seconds is not None else "retry after a pause"
        return f"Azure is throttling these requests: {when}."
    if seconds is not None and status is not None and status >= 500:
        return f"Azure is unavailable for now: retry in {seconds} s (Retry-After)."
    if status == 403 and code == "AgentSessionSecretAccessDenied":
        return "Azure itself refuses secrets to agent-tagged tokens; a human must read this secret."
    if status == 403 and code == "InsufficientAccessError":
        return ("Log Analytics refused the query: the identity needs Microsoft.OperationalInsights/workspaces/query/read "
                "on the workspace (roles Log Analytics Reader or Reader grant it); role_assignment_list shows what it has.")
    if status == 403:
        return "Azure RBAC refused this: the identity needs a role assignment granting the operation at this scope."
    if status == 401:
        return "The token was refused; sign in again."
    if status == 404 and code in _NOT_FOUND_HINTS:
        return _NOT_FOUND_HINTS[code]
    if status == 404:
        return "Check the id or path (resource_list shows existing resources)."
    return ""
