"""The HTTP edge of the session table: refusing new sessions at the cap, and ending them on DELETE.

Both happen on the HTTP request, around the SDK's streamable-HTTP app, because that is where the
client can be told: a request that would need a new agent session while every session has a call
in flight gets HTTP 503 with ``Retry-After`` and a JSON-RPC error naming the cap and the flag
(the tool call still refuses such a session itself, should two requests race for the last
place). An MCP ``DELETE`` the SDK accepted (2xx: it terminated that MCP session) ends what the
runtime kept for it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from azure_agent_mcp.server.callers import scope_caller
from azure_agent_mcp.server.sessions import SessionLimitReached

if TYPE_CHECKING:
    from azure_agent_mcp.server.runtime import AgentRuntime

JSONRPC_SERVER_ERROR = -32000


class SessionGate:
    """ASGI middleware: ``SessionGate(app, runtime)``."""

    def __init__(self, app: Any, runtime: AgentRuntime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method")
        if method == "POST":
            headers = _headers(scope)
            # behind the resource server: the caller it authenticated is on the scope (None when anonymous)
            if not self.runtime.admits(headers, scope_caller(scope)):
                await _refuse(send, SessionLimitReached(self.runtime.sessions.max_sessions))
                return
        elif method == "DELETE":
            connection = _headers(scope).get("mcp-session-id")
            if connection:
                await self._delete(scope, receive, send, connection)
                return
        await self.app(scope, receive, send)

    async def _delete(self, scope: dict[str, Any], receive: Any, send: Any, connection: str) -> None:
        status: list[int] = []

        async def watch(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                status.append(int(message.get("status", 0)))
            await send(message)

        await self.app(scope, receive, watch)
        if status and 200 <= status[0] < 300:
            self.runtime.end_connection(connection)


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}


async def _refuse(send: Any, error: SessionLimitReached) -> None:
    body = json.dumps({
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": JSONRPC_SERVER_ERROR, "message": str(error), "data": error.payload()},
    }).encode()
    await send({
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", b"application/json"),
            (b"retry-after", str(error.retry_after).encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})
