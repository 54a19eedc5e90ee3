"""A warm call's path: one thread hop (the worker sends the requests and writes the call's record),
reused worker threads, and the guard's remembered decisions agreeing with fresh ones."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from mcp import Client
from server_helpers import make_runtime, server_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ThreadNoting:
    """The runtime's audit log, noting which thread appended each record."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.appended: list[tuple[str, int, str]] = []

    def append(self, record: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.appended.append((record.get("kind"), threading.get_ident(), threading.current_thread().name))
        return self.inner.append(record, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_each_call_is_one_hop_whose_worker_writes_the_record_and_workers_are_reused(sandbox, tmp_path):
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
    noting = ThreadNoting(runtime.audit)
    runtime.audit = noting
    loop_thread = threading.get_ident()
    async with Client(server_for(runtime)) as client:
        for _ in range(6):
            result = await client.call_tool("resource_list", {"top": 5})
            assert not result.is_error, result.content
    tools = [(ident, name) for kind, ident, name in noting.appended if kind == "tool"]
    intents = [(ident, name) for kind, ident, name in noting.appended if kind == "intent"]
    assert len(tools) == 6 and len(intents) == 6
    for (tool_ident, tool_name), (intent_ident, _) in zip(tools, intents):
        # the tool record is written on the thread that sent the call's request, not handed to another
        assert tool_ident == intent_ident != loop_thread
        assert tool_name == "azure-agent-mcp worker"
    # sequential calls reuse one worker instead of starting a thread each
    assert len({ident for ident, _ in tools}) == 1


def test_remembered_decisions_equal_fresh_ones(sandbox, tmp_path):
    from azure_agent_mcp.policy import decide_request

    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
    arm = runtime.env.arm_endpoint.rstrip("/")
    sub = runtime.env.default_subscription
    urls = [
        ("GET", f"{arm}/subscriptions/{sub}/resources?api-version=2022-09-01"),
        ("DELETE", f"{arm}/subscriptions/{sub}/resourcegroups/rg-prod-app?api-version=2022-09-01"),
        ("POST", f"{arm}/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/s/listKeys?api-version=2023-01-01"),
        ("GET", "https://elsewhere.example/subscriptions"),
    ]
    for _ in range(2):  # the second round is answered from memory
        for method, url in urls:
            assert runtime.decide_request(method, url) == decide_request(runtime.policy, runtime.endpoints, method, url)[0]


def test_connections_accepted_on_the_http_listener_have_tcp_nodelay():
    """Without TCP_NODELAY every answer written in two parts waited for the client's delayed ACK
    (about 40 ms per request): asyncio sets it only on sockets made with IPPROTO_TCP."""
    import asyncio
    import socket

    from azure_agent_mcp.server.serve import listening_socket

    async def main() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Protocol(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        listener = listening_socket("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Protocol, sock=listener)
        try:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            nodelay = await asyncio.wait_for(accepted, 30)
            writer.close()
            return nodelay
        finally:
            server.close()

    assert asyncio.run(main()) != 0


def test_the_sdks_no_op_span_middleware_is_dropped_only_when_nothing_would_record_it(sandbox, tmp_path, monkeypatch):
    from opentelemetry import trace

    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl")
    names = [type(m).__name__ for m in server_for(runtime).middleware]
    assert "OpenTelemetryMiddleware" not in names and "ToolAuditMiddleware" in names

    class Installed(trace.NoOpTracerProvider):
        """Stands for a provider an OpenTelemetry distro installed before serve started."""

    monkeypatch.setattr(trace, "get_tracer_provider", lambda: Installed())
    names = [type(m).__name__ for m in server_for(runtime).middleware]
    assert names.index("OpenTelemetryMiddleware") < names.index("ToolAuditMiddleware")
