"""The HTTP server as an OAuth 2.1 resource server (MCP authorization): an ASGI layer in front of the SDK's app.

What it does, in order, for each HTTP request:

- serves Protected Resource Metadata (RFC 9728) at ``/.well-known/oauth-protected-resource`` and
  at the path-suffixed form for the ``/mcp`` resource, without authentication;
- requires a bearer token everywhere else (``/healthz`` aside): none gives 401 with
  ``WWW-Authenticate: Bearer resource_metadata="...", scope="..."``; a bad one adds
  ``error="invalid_token"`` and a description; a token without the server's scope gives 403
  ``insufficient_scope``. Bodies are JSON naming the problem; never the token, never a trace;
- binds sessions to their caller (``tid`` + ``oid``): an ``Mcp-Session-Id`` opened by another
  caller, or an ``X-Agent-Session-Id`` another caller created, is refused with 403 and audited.

Why not the SDK's ``RequireAuthMiddleware`` / ``BearerAuthBackend``: its verifier protocol returns
None for every failure, so the answer cannot say what was wrong; it puts ``error="invalid_token"``
on a request that sent no token (RFC 6750 §3.1 says not to); it serves the metadata only at the
path-suffixed URL; and it answers another caller's MCP session with 404, where this server's
contract is 403 plus an audit record. What it does right is kept: the SDK's
``AuthenticatedUser``/``AccessToken`` go into the ASGI scope, so the SDK's own session-owner
check still runs behind this one, and ``ProtectedResourceMetadata`` shapes the document.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from azure_agent_mcp.server.auth_config import AuthConfig
from azure_agent_mcp.server.bearer import EntraTokenVerifier, TokenRejected
from azure_agent_mcp.server.callers import SCOPE_KEY, Caller, caller_from_claims

_LOG = logging.getLogger("azure_agent_mcp.auth")
PRM_PATH = "/.well-known/oauth-protected-resource"
UNAUTHENTICATED_PATHS = frozenset({"/healthz"})
MCP_SESSION_LIMIT = 100_000
"""MCP sessions whose owner is remembered; the oldest are forgotten first (the SDK drops idle ones itself)."""


def metadata_url(resource_url: str) -> str:
    """RFC 9728 §3.1: the well-known path inserted between the host and the resource's path."""
    parts = urlsplit(resource_url)
    path = parts.path if parts.path != "/" else ""
    return f"{parts.scheme}://{parts.netloc}{PRM_PATH}{path}"


def protected_resource_metadata(config: AuthConfig, resource_url: str) -> dict[str, Any]:
    from mcp.shared.auth import ProtectedResourceMetadata

    document = ProtectedResourceMetadata(
        resource=resource_url,
        authorization_servers=[config.issuer],
        scopes_supported=[config.scope],
        bearer_methods_supported=["header"],
        resource_name="azure-agent-mcp",
    )
    out = document.model_dump(mode="json", exclude_none=True)
    # pydantic normalises URLs (a trailing slash on a bare origin); issuers compare as exact strings
    out["resource"] = resource_url
    out["authorization_servers"] = [config.issuer]
    return out


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


class ResourceServer:
    """ASGI middleware: metadata, bearer validation, caller binding; everything else goes to ``app``."""

    def __init__(self, app: Any, *, config: AuthConfig, resource_url: str, runtime: Any,
                 verifier: EntraTokenVerifier | None = None, audit: Any = None) -> None:
        self.app = app
        self.config = config
        self.resource_url = resource_url
        self.metadata_url = metadata_url(resource_url)
        self.verifier = verifier or EntraTokenVerifier(config)
        self.runtime = runtime
        self.audit = audit if audit is not None else getattr(runtime, "audit", None)
        resource_path = urlsplit(resource_url).path.rstrip("/")
        self.metadata_paths = frozenset({PRM_PATH, PRM_PATH + resource_path})
        self._document: bytes | None = None
        self._mcp_owners: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._owners_lock = threading.Lock()

    # -- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path.rstrip("/") in self.metadata_paths or path in self.metadata_paths:
            await self._metadata(scope, send)
            return
        if path in UNAUTHENTICATED_PATHS:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        try:
            caller = await self._authenticate(headers)
        except TokenRejected as exc:
            await self._refuse_token(send, exc, sent=bool(headers.get("authorization")))
            return
        scope = dict(scope)
        scope[SCOPE_KEY] = caller
        self._attach_sdk_user(scope, caller)
        self.runtime.note_caller(caller)
        refused = await self._check_sessions(caller, headers)
        if refused is not None:
            await _json(send, 403, refused)
            return
        await self.app(scope, receive, self._watch_session(caller, headers, scope.get("method", ""), send))

    # -- metadata -------------------------------------------------------------------------------

    async def _metadata(self, scope: dict[str, Any], send: Callable[..., Any]) -> None:
        method = scope.get("method", "GET")
        cors = [(b"access-control-allow-origin", b"*"), (b"access-control-allow-methods", b"GET, OPTIONS"),
                (b"access-control-allow-headers", b"*")]
        if method == "OPTIONS":
            await _send(send, 204, b"", cors)
            return
        if method not in ("GET", "HEAD"):
            await _json(send, 405, {"error": "method_not_allowed", "error_description": "GET the metadata document"},
                        [(b"allow", b"GET, OPTIONS")])
            return
        if self._document is None:
            self._document = json.dumps(protected_resource_metadata(self.config, self.resource_url)).encode()
        await _send(send, 200, self._document if method == "GET" else b"",
                    [(b"content-type", b"application/json"), (b"cache-control", b"public, max-age=3600"), *cors])

    # -- authentication -------------------------------------------------------------------------

    async def _authenticate(self, headers: dict[str, str]) -> Caller:
        raw = headers.get("authorization")
        if raw is None:
            raise TokenRejected("missing", "this server requires a bearer token from Entra ID: sign in and send "
                                           f"Authorization: Bearer <token for {self.config.scope}>")
        if raw == "\0multiple":
            raise TokenRejected("malformed", "send one Authorization header, not several", status=400,
                                error="invalid_request")
        scheme, _, token = raw.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenRejected("missing", "the Authorization header must be 'Bearer <token>' (no other scheme)")
        verified = self.verifier.cached(token)
        if verified is None:
            import anyio.to_thread

            # off the event loop: a first sight may fetch the tenant's keys
            verified = await anyio.to_thread.run_sync(self.verifier.verify, token)
        return caller_from_claims(verified.claims, token)

    async def _refuse_token(self, send: Callable[..., Any], exc: TokenRejected, *, sent: bool) -> None:
        parts = []
        if sent and exc.reason != "missing":
            parts += [f'error="{exc.error}"', f'error_description="{_quoted(exc.description)}"']
        parts += [f'resource_metadata="{self.metadata_url}"', f'scope="{self.config.scope}"']
        body = {"error": exc.error if exc.reason != "missing" else "invalid_request", "reason": exc.reason,
                "error_description": exc.description, "resource_metadata": self.metadata_url}
        if exc.status == 403:
            body["required_scope"] = self.config.scope
        _LOG.warning("refused an HTTP request: %s (%s)", exc.reason, exc.status)
        extra = [(b"www-authenticate", ("Bearer " + ", ".join(parts)).encode())] if exc.status in (401, 403) else []
        await _json(send, exc.status, body, extra)

    @staticmethod
    def _attach_sdk_user(scope: dict[str, Any], caller: Caller) -> None:
        """The SDK's own view of the principal: its session manager binds MCP sessions to it too."""
        from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
        from mcp.server.auth.provider import AccessToken
        from starlette.authentication import AuthCredentials

        scopes = ["user_impersonation"]
        access = AccessToken(token=caller.assertion, client_id=caller.azp or "", scopes=scopes,
                             expires_at=caller.expires_at or None, subject=f"{caller.tid}/{caller.oid}")
        scope["user"] = AuthenticatedUser(access)
        scope["auth"] = AuthCredentials(scopes)

    # -- sessions bound to their caller ---------------------------------------------------------

    async def _check_sessions(self, caller: Caller, headers: dict[str, str]) -> dict[str, Any] | None:
        from azure_agent_mcp.server.runtime import SessionHeaderError, SessionOwnershipError

        connection = headers.get("mcp-session-id")
        if connection is not None:
            with self._owners_lock:
                owner = self._mcp_owners.get(connection)
            if owner is not None and owner != caller.key:
                return await self._refused(caller, "mcp_session", None,
                                           "Mcp-Session-Id names an MCP session another caller opened; open your own "
                                           "(initialize without the header)")
        requested = headers.get("x-agent-session-id")
        if requested is not None:
            try:
                self.runtime.claim(caller, requested)
            except SessionOwnershipError as exc:
                return await self._refused(caller, "agent_session", requested, str(exc))
            except SessionHeaderError:
                pass  # not a session id at all: the tool call answers InvalidSessionId, as without auth
        return None

    async def _refused(self, caller: Caller, what: str, requested: str | None, message: str) -> dict[str, Any]:
        import anyio.to_thread

        correlation = str(uuid.uuid4())
        record = {"kind": "access", "event": "session_refused", "session_kind": what, "decision": "deny",
                  "status": "refused", "caller": caller.describe(), "requested_session_id": requested,
                  "reason": "the session belongs to another caller", "correlation_id": correlation}
        _LOG.warning("refused %s access by caller %s/%s: the session belongs to another caller (correlation_id=%s)",
                     what, caller.tid, caller.oid, correlation)
        if self.audit is not None:
            try:
                await anyio.to_thread.run_sync(
                    functools.partial(self.audit.append, {k: v for k, v in record.items() if v is not None}))
            except Exception as exc:  # refused either way; the stderr line above says so
                _LOG.warning("the refusal's audit record could not be written: %s", type(exc).__name__)
        return {"error": "forbidden", "reason": "session_not_yours", "error_description": message,
                "correlation_id": correlation}

    def _watch_session(self, caller: Caller, headers: dict[str, str], method: str,
                       send: Callable[..., Any]) -> Callable[..., Any]:
        """``send`` that notes which caller an MCP session was opened by (and forgets it once DELETEd)."""
        opening = "mcp-session-id" not in headers
        closing = None if opening or method != "DELETE" else headers["mcp-session-id"]
        if not opening and closing is None:
            return send

        async def watching(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start" and message.get("status", 500) < 400:
                if opening:
                    for name, value in message.get("headers") or []:
                        if name.lower() == b"mcp-session-id":
                            self._remember(value.decode("latin-1"), caller.key)
                elif closing is not None:
                    with self._owners_lock:
                        self._mcp_owners.pop(closing, None)
            await send(message)

        return watching

    def _remember(self, connection: str, owner: tuple[str, str]) -> None:
        with self._owners_lock:
            self._mcp_owners[connection] = owner
            while len(self._mcp_owners) > MCP_SESSION_LIMIT:
                self._mcp_owners.popitem(last=False)


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers") or []:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key == "authorization" and key in out:
            text = "\0multiple"
        out[key] = text
    return out


async def _json(send: Callable[..., Any], status: int, body: dict[str, Any],
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await _send(send, status, data, [(b"content-type", b"application/json"), *(headers or [])])


async def _send(send: Callable[..., Any], status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
