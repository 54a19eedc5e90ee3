"""The server's state between tool calls: policy, audit log, and one Azure handle per agent session.

Over stdio there is one agent session (resolved at start-up). Over HTTP each MCP client gets its
own: a valid ``X-Agent-Session-Id`` header names it, otherwise one is derived from its MCP session
(``Mcp-Session-Id``). Each agent session has its own credential, so its own token partition; all
of them send through one connection pool. The sessions live in ``sessions.SessionTable`` (idle
eviction, a cap); what an evicted session held is closed off the request path (``evictions``).

With authentication (a ``Caller`` per request) a session belongs to the caller (``tid``, ``oid``)
that created it, and its table key is ``tid/oid/session id``: a header names a session only among
the caller's own, naming another caller's (or the server's) is refused (``SessionOwnershipError``),
and a request without header or MCP session (2026-07-28) gets the caller's own default session,
never the server's. Ownership outlives eviction: an evicted id cannot be claimed by someone else.
Each (caller, session) gets its own on-behalf-of credential, fed with the caller's newest token.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure_agent_mcp.server.evictions import EvictionCloser, close_session_resources
from azure_agent_mcp.server.sessions import (
    DEFAULT_IDLE,
    DEFAULT_MAX_SESSIONS,
    REASON_SHUTDOWN,
    SessionEntry,
    SessionLimitReached,
    SessionTable,
)
from azure_agent_mcp.tools.clients import AzureSession

if TYPE_CHECKING:
    from azure_agent_mcp.environment import AzureEnvironment
    from azure_agent_mcp.server.callers import Caller
    from azure_agent_mcp.identity import AgentSession
    from azure_agent_mcp.policy import AuditLog, Decision, Policy

_LOG = logging.getLogger("azure_agent_mcp.server")
__all__ = ["AgentRuntime", "RuntimeOptions", "SessionHeaderError", "SessionLimitReached", "SessionOwnershipError",
           "SessionRequest"]

SESSION_HEADER = "x-agent-session-id"
END_REASONS = {
    "idle": "the agent session was evicted after being idle (--session-idle)",
    "cap": "the agent session was evicted to make room (--max-sessions)",
    "mcp-session-ended": "the agent session ended with its MCP session (DELETE)",
}
"""Why a grant ended early, per eviction reason (the ``reason`` of its ``ended`` audit record)."""
MCP_SESSION_HEADER = "mcp-session-id"


class SessionHeaderError(ValueError):
    """The client's X-Agent-Session-Id header is not a usable session id."""


class SessionOwnershipError(PermissionError):
    """The named agent session (or MCP session) belongs to another caller; says nothing about that caller."""

    code = "SessionNotYours"


SERVER_OWNER: tuple[str, str] = ("", "")
"""The owner of sessions of no caller (stdio, anonymous HTTP, the server's own)."""
NOT_YOURS = ("X-Agent-Session-Id names an agent session that belongs to another caller; name one of your own, or "
             "send no header to get a session of your own")


@dataclass(frozen=True)
class RuntimeOptions:
    session_ttl: str = "8h"
    skip_confirmation: bool = False
    transport: str = "stdio"
    session_idle: str = DEFAULT_IDLE
    """An agent session unused for this long is evicted (a duration; 0 = never)."""
    max_sessions: int = DEFAULT_MAX_SESSIONS
    """Past this many agent sessions the least recently used idle one is evicted; none idle: refused."""
    devops_organization: str | None = None
    """The Azure DevOps organization of the devops_* tools (registered only when set)."""


@dataclass(frozen=True)
class SessionRequest:
    """Which agent session a request names: the table's key, how to make the session, its MCP session."""

    key: str | None
    """None: the server's default session."""
    session_id: str | None = None
    origin: str = ""
    connection: str | None = None
    """The MCP session whose DELETE ends this agent session (only for sessions made for it)."""
    caller: Caller | None = None
    """Who sent it, when authenticated: the session is the caller's and its credential acts on its behalf."""


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
        from azure_agent_mcp.identity import parse_duration
        from azure_agent_mcp.policy import Endpoints

        self.env = env
        self.policy = policy
        self.audit = audit
        self.options = options
        self.default_session = default_session
        self.endpoints = Endpoints.from_environment(env, options.devops_organization)
        self._credential_factory = credential_factory
        self._caller_credential_factory = caller_credential_factory
        self._owners: dict[str, tuple[str, str]] = {default_session.id: SERVER_OWNER}
        self._assertions: dict[tuple[str, str], Caller] = {}
        self._pipeline_policies: tuple[Any, Any] | None = None
        self._pool: Any = None
        self._lock = threading.RLock()
        # Agent session ids made for MCP sessions that name none: derived, so the same MCP session gets
        # the same id again after its agent session was evicted, and unlinkable to the Mcp-Session-Id.
        self._connection_secret = os.urandom(32)
        self._connection_session_id = functools.lru_cache(maxsize=4096)(self._derive_session_id)
        self._closer = EvictionCloser(self._close_evicted)
        self.sessions = SessionTable(
            idle_seconds=float(parse_duration(options.session_idle)),
            max_sessions=options.max_sessions,
            on_evict=self._closer.submit,
        )
        self.default_entry = self.sessions.add_pinned(default_session.id, default_session, default_credential)
        self.grants: Any = None
        """The agent sessions' time-bound grants (``access.grants.GrantBook``); only with an Elevation block."""
        if policy.elevation is not None:
            from azure_agent_mcp.access.grants import GrantBook

            self.grants = GrantBook(audit=audit)

    # -- sessions -------------------------------------------------------------------------------

    def locate(self, headers: Any | None, caller: Caller | None = None) -> SessionRequest:
        """Which agent session the MCP client that sent these headers is in (nothing is created; a
        caller's claim on a named or derived id is recorded)."""
        if self.options.transport != "http" or headers is None:
            return SessionRequest(None)
        lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
        connection = lowered.get(MCP_SESSION_HEADER)
        requested = lowered.get(SESSION_HEADER)
        if requested is not None:
            from azure_agent_mcp.identity.errors import InvalidSessionIdError
            from azure_agent_mcp.identity.session import ORIGIN_FLAG, validate_session_id

            try:
                session_id = validate_session_id(requested, "X-Agent-Session-Id")
            except InvalidSessionIdError as exc:
                raise SessionHeaderError(str(exc)) from exc
            # No connection: an MCP session's DELETE ends the agent session made for it, but one the
            # client named (the host's chat session, which outlives reconnects) only idles out.
            if caller is not None:
                self._own(caller, session_id)
                return SessionRequest(_caller_key(caller, session_id), session_id, ORIGIN_FLAG, None, caller)
            return SessionRequest(session_id, session_id, ORIGIN_FLAG)
        if caller is not None:
            from azure_agent_mcp.identity.session import ORIGIN_GENERATED

            # the caller's own: one per MCP session, and one default for requests without one
            tid, oid = caller.key
            session_id = self._connection_session_id(f"{tid}/{oid}/{connection or ''}")
            self._own(caller, session_id)
            return SessionRequest(_caller_key(caller, session_id), session_id, ORIGIN_GENERATED, connection, caller)
        if connection is None:
            # A 2026-07-28 request carries no MCP session: such clients share the server's default
            # agent session unless they name their own with X-Agent-Session-Id.
            return SessionRequest(None)
        from azure_agent_mcp.identity.session import ORIGIN_GENERATED

        session_id = self._connection_session_id(connection)
        return SessionRequest(session_id, session_id, ORIGIN_GENERATED, connection)

    def _own(self, caller: Caller, session_id: str) -> None:
        with self._lock:
            owner = self._owners.setdefault(session_id, caller.key)
        if owner != caller.key:
            raise SessionOwnershipError(NOT_YOURS)

    def claim(self, caller: Caller, requested: str) -> None:
        """Claim the session id ``requested`` for ``caller`` (the HTTP layer's check, before any call).

        Raises ``SessionOwnershipError`` when the id belongs to another caller (or to the server
        itself), ``SessionHeaderError`` when it is not a valid session id.
        """
        self.locate({SESSION_HEADER: requested}, caller)

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

    def _derive_session_id(self, connection: str) -> str:
        digest = hmac.new(self._connection_secret, connection.encode("utf-8", "replace"), hashlib.sha256).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    def session_for(self, headers: Any | None, caller: Caller | None = None) -> AgentSession:
        """The agent session of the MCP client that sent this request (created when new)."""
        return self.session_entry(headers, caller).session

    def session_entry(self, headers: Any | None, caller: Caller | None = None) -> SessionEntry:
        """The table entry of that session (not held against eviction: ``begin_call`` holds)."""
        return self._entry(self.locate(headers, caller), lease=False)

    def begin_call(self, headers: Any | None, caller: Caller | None = None) -> SessionEntry:
        """The request's agent session, held against eviction until ``end_call``.

        Raises SessionHeaderError (a bad X-Agent-Session-Id), SessionOwnershipError (another
        caller's) or SessionLimitReached (no room).
        """
        return self._entry(self.locate(headers, caller), lease=True)

    def end_call(self, entry: SessionEntry) -> None:
        if entry.pinned:
            return
        self.sessions.release(entry)

    def admits(self, headers: Any | None, caller: Caller | None = None) -> bool:
        """Whether a request with these headers (from ``caller``) would get an agent session now (the HTTP 503 check)."""
        try:
            request = self.locate(headers, caller)
        except (SessionHeaderError, SessionOwnershipError):
            return True  # answered by the tool call itself, naming the header
        return request.key is None or self.sessions.would_admit(request.key)

    def end_connection(self, connection: str) -> bool:
        """The MCP session ``connection`` ended (DELETE): forget it, and its agent session when unused."""
        return self.sessions.end_connection(connection)

    def _entry(self, request: SessionRequest, *, lease: bool) -> SessionEntry:
        if request.key is None:
            return self.default_entry
        use = self.sessions.lease if lease else self.sessions.touch
        entry = use(request.key, lambda: self._new_session(request), request.connection)
        if request.caller is not None and entry.caller is None:
            entry.caller = request.caller
        return entry

    def _new_session(self, request: SessionRequest) -> AgentSession:
        from azure_agent_mcp.identity import AgentSession, parse_duration

        seconds = parse_duration(self.options.session_ttl)
        now = self.default_session.clock()
        assert request.session_id is not None
        return AgentSession(id=request.session_id, origin=request.origin, created_at=now,
                            expires_at=now + seconds if seconds > 0 else None, clock=self.default_session.clock)

    def _entry_of(self, session: AgentSession | SessionEntry) -> SessionEntry:
        if isinstance(session, SessionEntry):
            return session
        if session.id == self.default_session.id:
            return self.default_entry
        entry = self.sessions.get(session.id)
        if entry is None:
            entry = self.sessions.touch(session.id, lambda: session)
        return entry

    def azure_for(self, session: AgentSession | SessionEntry) -> AzureSession:
        entry = self._entry_of(session)
        with self._lock:
            if entry.azure is None or entry.closed:
                if entry.closed:  # evicted meanwhile: start anew (same id, same caller, new credential)
                    fresh = self.sessions.touch(entry.key, lambda: entry.session)
                    if fresh.caller is None:
                        fresh.caller = entry.caller
                    return self.azure_for(fresh)
                if entry.credential is None:
                    entry.credential = self._credential_for(entry)
                entry.azure = self._new_azure(entry.session, entry.credential)
                entry.azure.caller = entry.caller.describe() if entry.caller is not None else None
            return entry.azure

    def _credential_for(self, entry: SessionEntry) -> Any:
        """The session's credential: on-behalf-of its caller, or the server's own for a session of nobody.

        A runtime that serves callers never lends the server's own identity to a session of nobody
        (fail closed): every session there belongs to the caller that created it."""
        if entry.caller is None:
            if self._caller_credential_factory is not None and not entry.pinned:
                raise RuntimeError("a session of no caller reached a runtime that acts on-behalf-of its callers; "
                                   "refusing to use the server's own credential for it")
            return self._credential_factory(entry.session)
        if self._caller_credential_factory is None:
            raise RuntimeError("an authenticated caller reached a runtime without on-behalf-of credentials")
        return self._caller_credential_factory(entry.session, self._assertion_of(entry.caller.key))

    def _new_azure(self, session: AgentSession, credential: Any) -> AzureSession:
        guard, correlation = self._guard_and_correlation()
        azure = AzureSession(self.env, session, credential, self.policy, guard, correlation, pool=self.pool,
                             devops_organization=self.options.devops_organization)
        azure.grants = self.grants
        return azure

    @property
    def pool(self) -> Any:
        """The one connection pool every session's SDK clients send through (built on first use)."""
        with self._lock:
            if self._pool is None:
                from azure_agent_mcp.tools.pool import HttpPool

                self._pool = HttpPool()
            return self._pool

    def _guard_and_correlation(self) -> tuple[Any, Any]:
        """The guard every client's transport goes through, and the correlation policy, built on first use."""
        if self._pipeline_policies is None:
            from azure_agent_mcp import telemetry
            from azure_agent_mcp.identity import CorrelationPolicy
            from azure_agent_mcp.policy import Guard

            running = telemetry.active()
            spans = running.request_span if running is not None else None  # None unless traces are exported
            guard = Guard(self.policy, self.endpoints, confirmer=self._confirm, audit=self.audit, spans=spans,
                          grants=self.grants)
            self._pipeline_policies = (guard, CorrelationPolicy())
        return self._pipeline_policies

    def principal_for(self, azure: AzureSession) -> dict[str, Any]:
        """oid / appid / upn / tid of the session's ARM token, read from its claims (never kept: the token).

        Kept on the AzureSession: an evicted session's next one starts without it."""
        cached = azure.principal
        if cached is not None:
            return cached
        token = azure.credential.get_token(self.env.arm_scope).token
        principal = principal_from_jwt(token)
        azure.principal = principal
        return principal

    # -- eviction ---------------------------------------------------------------------------------

    def _close_evicted(self, entry: SessionEntry, reason: str, idle: float) -> None:
        """Close what an evicted session held (its clients, its tokens, its credential) and record why."""
        with self._lock:
            entry.closed = True
            azure, credential = entry.azure, entry.credential
            entry.azure = entry.credential = entry.principal = None
        if reason != REASON_SHUTDOWN:  # (a shutdown ends every session's grants at once: close())
            self._end_grants([(entry, azure)], END_REASONS.get(reason, f"the agent session was evicted ({reason})"))
        close_session_resources(azure, credential, forget_tokens=reason != REASON_SHUTDOWN)
        if reason == REASON_SHUTDOWN:
            return
        record = {"kind": "session", "event": "evicted", "reason": reason, "session_id": entry.session.id,
                  "idle_seconds": round(idle, 3), "calls": entry.calls}
        try:
            self.audit.append(record, durable=False)
        except Exception as exc:  # the session is gone either way; say so where the operator looks
            _LOG.warning("the audit record of evicting agent session %s could not be written: %s",
                         entry.session.id, type(exc).__name__)

    def settle_evictions(self, timeout: float = 10.0) -> bool:
        """Wait until every eviction so far has closed its session's resources (tests, benches)."""
        return self._closer.settle(timeout)

    def start(self) -> None:
        """Start idle eviction (HTTP: sessions come and go; stdio has only its own)."""
        self.sessions.start_sweeper()

    def _end_grants(self, held: list[tuple[SessionEntry, Any]], reason: str, hurry: Any = None) -> None:
        """The sessions are ending: their grants stop applying now, and Azure's side of each is ended too
        (in parallel, within ``access.ending.END_SECONDS`` in all, audited), before their clients close."""
        if self.grants is None:
            return
        pairs = [(grant, azure) for entry, azure in held for grant in self.grants.take_session(entry.session.id)]
        if not pairs:
            return
        from azure_agent_mcp.access.ending import end_grants

        try:
            end_grants(pairs, self.grants, reason=reason, stop=hurry)
        except Exception:  # best effort: the local grants have ended; closing must go on
            _LOG.warning("ending the grants' Azure side failed", exc_info=True)

    def close(self, hurry: Any = None) -> None:
        """Stop: every session's grants end (Azure's side too, within a short deadline that ``hurry``, an
        Event set by a further signal, cuts short), then the sessions, the eviction thread, the pool."""
        if self.grants is not None:
            self._end_grants([(entry, entry.azure) for entry in self.sessions.entries() if not entry.closed],
                             "the server stopped", hurry)
        self.sessions.close()
        self._closer.close()
        if self.grants is not None:  # the grants end with the server (audited)
            self.grants.close()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # -- policy -----------------------------------------------------------------------------------

    def decide_request(self, method: str, url: str, body: bytes | None = None, session_id: str | None = None) -> Decision:
        """The guard's decision (remembered per URL, except for operations decided on their body), with the
        live grants of ``session_id`` applied."""
        guard = self._guard_and_correlation()[0]
        if session_id is not None:
            return guard.decide_in_session(session_id, method, url, body)[0]
        return guard.decide(method, url, body)[0]

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


def _caller_key(caller: Caller, session_id: str) -> str:
    """A caller's session in the table: session ids have no '/', so it never equals a caller-less key."""
    tid, oid = caller.key
    return f"{tid}/{oid}/{session_id}"


def approval_key(operation: str, scope: str) -> tuple[str, str]:
    return operation.lower(), scope.lower().rstrip("/")


def principal_from_jwt(token: str) -> dict[str, Any]:
    """The identifying claims of a JWT, read without verification (Azure verifies; we only describe)."""
    from azure_agent_mcp.identity.claims import unverified_jwt_claims

    claims = unverified_jwt_claims(token)
    keys = ("oid", "appid", "azp", "upn", "tid", "idtyp")
    return {k: claims[k] for k in keys if k in claims}
