"""The server's state between tool calls: policy, audit log, and one Azure handle per agent session.

Over stdio there is one agent session (resolved at start-up). Over HTTP each MCP client gets its
own: a valid ``X-Agent-Session-Id`` header names it, otherwise one is generated per MCP session
(``Mcp-Session-Id``). Each agent session has its own credential, so its own token partition.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure_agent_mcp.tools.clients import AzureSession

if TYPE_CHECKING:
    from azure_agent_mcp.environment import AzureEnvironment
    from azure_agent_mcp.identity import AgentSession
    from azure_agent_mcp.policy import AuditLog, Decision, Policy

SESSION_HEADER = "x-agent-session-id"
MCP_SESSION_HEADER = "mcp-session-id"


class SessionHeaderError(ValueError):
    """The client's X-Agent-Session-Id header is not a usable session id."""


@dataclass(frozen=True)
class RuntimeOptions:
    session_ttl: str = "8h"
    skip_confirmation: bool = False
    transport: str = "stdio"


class AgentRuntime:
    def __init__(
        self,
        env: AzureEnvironment,
        policy: Policy,
        audit: AuditLog,
        default_session: AgentSession,
        credential_factory: Callable[[AgentSession], Any],
        options: RuntimeOptions,
        default_credential: Any = None,
    ) -> None:
        from azure_agent_mcp.policy import Endpoints

        self.env = env
        self.policy = policy
        self.audit = audit
        self.options = options
        self.default_session = default_session
        self.endpoints = Endpoints.from_environment(env)
        self._credential_factory = credential_factory
        self._pipeline_policies: tuple[Any, Any] | None = None
        self._lock = threading.Lock()
        self._sessions: dict[str, AgentSession] = {}
        self._by_connection: dict[str, str] = {}
        self._azure: dict[str, AzureSession] = {}
        self._principals: dict[str, dict[str, Any]] = {}
        if default_credential is not None:
            self._azure[default_session.id] = self._new_azure(default_session, default_credential)
        self._sessions[default_session.id] = default_session

    # -- sessions -------------------------------------------------------------------------------

    def session_for(self, headers: Any | None) -> AgentSession:
        """The agent session of the MCP client that sent this request."""
        if self.options.transport != "http" or headers is None:
            return self.default_session
        lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
        requested = lowered.get(SESSION_HEADER)
        if requested is not None:
            return self._named_session(requested)
        connection = lowered.get(MCP_SESSION_HEADER)
        if connection is None:
            # A 2026-07-28 request carries no MCP session: such clients share the server's default
            # agent session unless they name their own with X-Agent-Session-Id.
            return self.default_session
        with self._lock:
            session_id = self._by_connection.get(connection)
            if session_id is not None:
                return self._sessions[session_id]
        session = self._resolve(None)
        with self._lock:
            self._by_connection[connection] = session.id
            self._sessions[session.id] = session
        return session

    def _named_session(self, requested: str) -> AgentSession:
        with self._lock:
            known = self._sessions.get(requested)
        if known is not None:
            return known
        try:
            session = self._resolve(requested)
        except ValueError as exc:
            raise SessionHeaderError(f"X-Agent-Session-Id: {exc}") from exc
        with self._lock:
            return self._sessions.setdefault(session.id, session)

    def _resolve(self, session_id: str | None) -> AgentSession:
        from azure_agent_mcp.identity import resolve_session

        # A private environ: per-client sessions must not overwrite the server's own session variable.
        return resolve_session(session_id=session_id, ttl=self.options.session_ttl, environ={})

    def azure_for(self, session: AgentSession) -> AzureSession:
        with self._lock:
            azure = self._azure.get(session.id)
            if azure is None:
                azure = self._new_azure(session, self._credential_factory(session))
                self._azure[session.id] = azure
            return azure

    def _new_azure(self, session: AgentSession, credential: Any) -> AzureSession:
        guard, correlation = self._guard_and_correlation()
        return AzureSession(self.env, session, credential, self.policy, guard, correlation)

    def _guard_and_correlation(self) -> tuple[Any, Any]:
        """The guard every client's transport goes through, and the correlation policy, built on first use."""
        if self._pipeline_policies is None:
            from azure_agent_mcp.identity import CorrelationPolicy
            from azure_agent_mcp.policy import Guard

            guard = Guard(self.policy, self.endpoints, confirmer=self._confirm, audit=self.audit)
            self._pipeline_policies = (guard, CorrelationPolicy())
        return self._pipeline_policies

    def principal_for(self, azure: AzureSession) -> dict[str, Any]:
        """oid / appid / upn / tid of the session's ARM token, read from its claims (never kept: the token)."""
        cached = self._principals.get(azure.session.id)
        if cached is not None:
            return cached
        token = azure.credential.get_token(self.env.arm_scope).token
        principal = principal_from_jwt(token)
        self._principals[azure.session.id] = principal
        return principal

    def close(self) -> None:
        with self._lock:
            handles = list(self._azure.values())
            self._azure.clear()
        for azure in handles:
            azure.close()
            close = getattr(azure.credential, "close", None)
            if close is not None:
                close()

    # -- policy -----------------------------------------------------------------------------------

    def decide_request(self, method: str, url: str, body: bytes | None = None) -> Decision:
        from azure_agent_mcp.policy import decide_request

        return decide_request(self.policy, self.endpoints, method, url, body)[0]

    def _confirm(self, decision: Decision) -> bool:
        """The pipeline's confirmer: allow what the user approved for this call (or everything when told to skip)."""
        if self.options.skip_confirmation:
            return True
        from azure_agent_mcp.callcontext import current_call

        call = current_call()
        if call is None:
            return False
        approved = call.extra.get("approved") or frozenset()
        return approval_key(decision.operation, decision.scope) in approved


def approval_key(operation: str, scope: str) -> tuple[str, str]:
    return operation.lower(), scope.lower().rstrip("/")


def principal_from_jwt(token: str) -> dict[str, Any]:
    """The identifying claims of a JWT, read without verification (Azure verifies; we only describe)."""
    from azure_agent_mcp.identity.claims import unverified_jwt_claims

    claims = unverified_jwt_claims(token)
    keys = ("oid", "appid", "azp", "upn", "tid", "idtyp")
    return {k: claims[k] for k in keys if k in claims}
