"""``GET /healthz``: the probe a load balancer or Kubernetes asks before it routes a caller here.

It answers without authentication (a probe holds no token) and says nothing a caller could use:
``ok`` while the server takes calls, 503 ``draining`` once a shutdown began (new calls are refused
then, so the replica must leave the rotation), and 503 ``audit-unavailable`` while the audit log
cannot be written (every call would fail closed, so routing callers here helps nobody).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

HEALTH_PATH = "/healthz"


def health_app(app: Any, draining: Callable[[], bool], audit: Any = None) -> Any:
    """``app`` with ``/healthz`` answered in front of it; every other request goes to ``app`` untouched."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != HEALTH_PATH:
            await app(scope, receive, send)
            return
        if scope.get("method") not in ("GET", "HEAD"):
            await _answer(send, 405, {"status": "error", "message": "GET /healthz only."}, scope)
            return
        status, body = 200, {"status": "ok"}
        if draining():
            status, body = 503, {"status": "draining"}
        elif not _audit_writable(audit):
            status, body = 503, {"status": "audit-unavailable"}
        await _answer(send, status, body, scope)

    return wrapped


def _audit_writable(audit: Any) -> bool:
    check = getattr(audit, "check_writable", None)
    if check is None:
        return True
    try:
        check()
    except Exception:
        return False
    return True


async def _answer(send: Any, status: int, body: dict[str, Any], scope: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                    (b"cache-control", b"no-store")],
    })
    await send({"type": "http.response.body", "body": payload if scope.get("method") != "HEAD" else b""})
