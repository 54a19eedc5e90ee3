"""``/healthz``: answered without a token on an authenticated server, 503 while draining or while
the audit cannot be written, and nothing else of the server reachable through it."""

from __future__ import annotations

import httpx
import pytest

from auth_helpers import AuthServe
from azure_agent_mcp.policy import AuditUnavailable
from azure_agent_mcp.server.health import health_app


def test_healthz_answers_a_probe_without_a_token_and_mcp_still_demands_one(sandbox, tmp_path):
    with AuthServe(sandbox, tmp_path) as server:
        probe = httpx.get(server.origin + "/healthz", timeout=30)
        assert probe.status_code == 200 and probe.json() == {"status": "ok"}
        assert probe.headers["cache-control"] == "no-store"
        # a probe names the pod's address, not the server's: the Host check does not apply here
        assert httpx.get(server.origin + "/healthz", headers={"host": "10.1.2.3:8765"}, timeout=30).status_code == 200
        assert httpx.post(server.origin + "/healthz", timeout=30).status_code == 405
        assert httpx.get(server.origin + "/healthz/../mcp", timeout=30).status_code in (401, 404)
        unauthenticated = server.post()
        assert unauthenticated.status_code == 401
        assert server.alive()


class _Audit:
    def __init__(self, broken: bool) -> None:
        self.broken = broken

    def check_writable(self) -> None:
        if self.broken:
            raise AuditUnavailable("/var/audit/audit.jsonl", "read-only file system")


async def _inner(scope, receive, send):  # the MCP app behind: must never see /healthz
    raise AssertionError(f"{scope['path']} reached the MCP app")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    ("draining", "broken", "status", "body"),
    [(False, False, 200, "ok"), (True, False, 503, "draining"), (False, True, 503, "audit-unavailable")],
)
async def test_healthz_says_when_calls_would_be_refused(anyio_backend, draining, broken, status, body):
    app = health_app(_inner, draining=lambda: draining, audit=_Audit(broken))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as client:
        answer = await client.get("/healthz")
    assert answer.status_code == status
    assert answer.json() == {"status": body}
    assert "read-only" not in answer.text  # the cause stays in the server's own log, not on an open endpoint
