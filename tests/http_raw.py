"""Raw streamable-HTTP JSON-RPC for tests that need many sessions cheaply: one POST per tools/call on
the 2026-07-28 protocol (no handshake), the agent session named by ``X-Agent-Session-Id``."""

from __future__ import annotations

import itertools
from typing import Any

MODERN = "2026-07-28"
_ids = itertools.count(1)


def modern_body(tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "raw-tests", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": next(_ids), "method": "tools/call",
            "params": {"name": tool, "arguments": arguments or {}, "_meta": meta}}


def modern_headers(tool: str, session: str | None = None) -> dict[str, str]:
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": tool,
               "Accept": "application/json, text/event-stream"}
    if session is not None:
        headers["X-Agent-Session-Id"] = session
    return headers


def call(http: Any, url: str, tool: str, arguments: dict[str, Any] | None = None, *, session: str | None = None) -> Any:
    """POST one tools/call (httpx.Client); the httpx response."""
    return http.post(url, json=modern_body(tool, arguments), headers=modern_headers(tool, session))


def result_of(response: Any) -> dict[str, Any]:
    """The tools/call result of a 200 JSON answer."""
    assert response.status_code == 200, (response.status_code, response.text[:500])
    answer = response.json()
    assert "result" in answer, answer
    return answer["result"]
