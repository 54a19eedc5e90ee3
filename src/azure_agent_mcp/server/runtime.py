"""The server's state between tool calls: policy, audit log, and one Azure handle per agent session.

Over stdio there is one agent session (resolved at start-up). Over HTTP each MCP client gets its
own: a valid ``X-Agent-Session-Id`` header names it, otherwise one is generated per MCP session
(``Mcp-Session-Id``). Each agent session has its own credential, so its own token partition.

With authentication (a ``Caller`` per request) a session belongs to the caller (``tid``, ``oid``)
that created it, and sessions are keyed by (tid, oid, session id): a header names a session only
among the caller's own, naming another caller's is refused (``SessionOwnershipError``), and a
request without header or MCP session (2026-07-28) gets the caller's own default session, never
the server's. Each (caller, session) gets its own on-behalf-of credential, fed with the caller's
newest token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure_agent_mcp.tools.clients import AzureSession

if TYPE_CHECKING:
    from azure_agent_mcp.environment import AzureEnvironment
    from azure_agent_mcp.server.callers import Caller
    from azure_agent_mcp.identity import AgentSession
    from azure_agent_mcp.policy import AuditLog, Decision, Policy

SESSION_HEADER = "x-agent-session-id"
MCP_SESSION_HEADER = "mcp-session-id"


class SessionHeaderError(ValueError):
    """The client's X-Agent-Session-Id header is not a usable session id."""


class SessionOwnershipError(PermissionError):
    """The named agent session (or MCP session) belongs to another caller; says nothing about that caller."""

    code = "SessionNotYours"


SessionKey = tuple[str, str, str]
"""(tid, oid, session id); ("", "", id) for sessions of no caller (stdio, anonymous HTTP, the server's own)."""
SERVER_OWNER: tuple[str, str] = ("", "")
NOT_YOURS = ("X-Agent-Session-Id names an agent session that belongs to another caller; name one of your own, or "
             "send no header to get a session of your own")


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
        caller_credential_factory: Callable[[AgentSession, Callable[[], str]], Any] | None = None,
    ) -> None:
        from azure_agent_mcp.policy import Endpoints

        self.env = env
        self.policy = policy
        self.audit = audit
        self.options = options
        self.default_session = default_session
        self.endpoints = Endpoints.from_environment(env)
        self._credential_factory = credential_factory
        self._caller_credential_factory = caller_credential_factory
        self._pipeline_policies: tuple[Any, Any] | None = None
        self._lock = threading.Lock()
        self._sessions: dict[SessionKey, AgentSession] = {}
        self._owners: dict[str, tuple[str, str]] = {default_session.id: SERVER_OWNER}
        self._by_connection: dict[tuple[tuple[str, str], str], SessionKey] = {}
        self._caller_defaults: dict[tuple[str, str], SessionKey] = {}
        self._azure: dict[SessionKey, AzureSession] = {}
        self._assertions: dict[tuple[str, str], Caller] = {}
        default_key = (*SERVER_OWNER, default_session.id)
        if default_credential is not None:
            self._azure[default_key] = self._new_azure(default_session, default_credential)
        self._sessions[default_key] = default_session

    # -- sessions -------------------------------------------------------------------------------

    def session_for(self, headers: Any | None, caller: Caller | None = None) -> AgentSession:
        """The agent session of the MCP client that sent this request (``caller``: who sent it, when authenticated)."""
        if self.options.transport != "http" or headers is None:
            return self.default_session
        lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
        requested = lowered.get(SESSION_HEADER)
        if caller is not None:
            return self._caller_session(caller, requested, lowered.get(MCP_SESSION_HEADER))
        if requested is not None:
            return self._named_session(requested)
        connection = lowered.get(MCP_SESSION_HEADER)
        if connection is None:
            # A 2026-07-28 request carries no MCP session: such clients share the server's default
            # agent session unless they name their own with X-Agent-Session-Id (anonymous mode only).
            return self.default_session
        with self._lock:
            key = self._by_connection.get((SERVER_OWNER, connection))
            if key is not None:
                return self._sessions[key]
        session = self._resolve(None)
        with self._lock:
            key = (*SERVER_OWNER, session.id)
            self._by_connection[(SERVER_OWNER, connection)] = key
            self._owners[session.id] = SERVER_OWNER
            self._sessions[key] = session
        return session

    def _named_session(self, requested: str) -> AgentSession:
        with self._lock:
            known = self._sessions.get((*SERVER_OWNER, requested))
        if known is not None:
            return known
        try:
            session = self._resolve(requested)
        except ValueError as exc:
            raise SessionHeaderError(f"X-Agent-Session-Id: {exc}") from exc
        with self._lock:
            self._owners.setdefault(session.id, SERVER_OWNER)
            return self._sessions.setdefault((*SERVER_OWNER, session.id), session)

    def _caller_session(self, caller: Caller, requested: str | None, connection: str | None) -> AgentSession:
        if requested is not None:
            return self.claim(caller, requested)
        with self._lock:
            key = (self._by_connection.get((caller.key, connection)) if connection is not None
                   else self._caller_defaults.get(caller.key))
            if key is not None:
                return self._sessions[key]
        session = self._resolve(None)
        with self._lock:
            key = (*caller.key, session.id)
            # another request of the same caller may have created it meanwhile: first one wins
            if connection is not None:
                key = self._by_connection.setdefault((caller.key, connection), key)
            else:
                key = self._caller_defaults.setdefault(caller.key, key)
            if key[2] == session.id:
                self._owners[session.id] = caller.key
                self._sessions[key] = session
            return self._sessions[key]

    def claim(self, caller: Caller, requested: str) -> AgentSession:
        """The caller's session named ``requested``, created for the caller if nobody owns that id yet.

        Raises ``SessionOwnershipError`` when the id belongs to another caller (or to the server
        itself), ``SessionHeaderError`` when it is not a valid session id.
        """
        with self._lock:
            owner = self._owners.get(requested)
            if owner is not None and owner != caller.key:
                raise SessionOwnershipError(NOT_YOURS)
            known = self._sessions.get((*caller.key, requested))
            if known is not None:
                return known
        try:
            session = self._resolve(requested)
        except ValueError as exc:
            raise SessionHeaderError(f"X-Agent-Session-Id: {exc}") from exc
        with self._lock:
            owner = self._owners.setdefault(session.id, caller.key)
            if owner != caller.key:  # claimed by another caller between the two locks
                raise SessionOwnershipError(NOT_YOURS)
            return self._sessions.setdefault((*caller.key, session.id), session)

    def owner_of(self, session_id: str) -> tuple[str, str] | None:
        """(tid, oid) of the caller that created the session, SERVER_OWNER for the server's own, None if unknown."""
        with self._lock:
            return self._owners.get(session_id)

    def note_caller(self, caller: Caller) -> None:
        """Remember the caller's newest token: the next on-behalf-of exchange of each of its sessions uses it."""
        with self._lock:
            held = self._assertions.get(caller.key)
            if held is None or (caller.issued_at, caller.expires_at) >= (held.issued_at, held.expires_at):
                self._assertions[caller.key] = caller

    def _assertion_of(self, key: tuple[str, str]) -> Callable[[], str]:
        def current() -> str:
            with self._lock:
                held = self._assertions.get(key)
            return held.assertion if held is not None else ""

        return current

    def _resolve(self, session_id: str | None) -> AgentSession:
        from azure_agent_mcp.identity import resolve_session

        # A private environ: per-client sessions must not overwrite the server's own session variable.
        return resolve_session(session_id=session_id, ttl=self.options.session_ttl, environ={})

    def azure_for(self, session: AgentSession, caller: Caller | None = None) -> AzureSession:
        key: SessionKey = (*(caller.key if caller is not None else SERVER_OWNER), session.id)
        with self._lock:
            azure = self._azure.get(key)
            if azure is None:
                if caller is None:
                    credential = self._credential_factory(session)
                elif self._caller_credential_factory is None:
                    raise RuntimeError("an authenticated caller reached a runtime without on-behalf-of credentials")
                else:
                    credential = self._caller_credential_factory(session, self._assertion_of(caller.key))
                azure = self._new_azure(session, credential)
                azure.caller = caller.describe() if caller is not None else None
                self._azure[key] = azure
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
        cached = azure.principal
        if cached is not None:
            return cached
        token = azure.credential.get_token(self.env.arm_scope).token
        principal = principal_from_jwt(token)
        azure.principal = principal
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
