"""DNS-rebinding protection on every loopback bind (issue 9): Host and Origin checked against the bind.

A page on evil.example that makes its name resolve to a loopback address reaches the server, but its
requests say ``Host: evil.example`` (421) and ``Origin: http://evil.example`` (403). The allowed
names are derived from the address really bound (127.0.0.2, ::1 — not only the SDK's defaults),
plus ``localhost``, plus what ``--allow-host`` / ``--allow-origin`` name. Loopback addresses only.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from mcp import Client
from test_server_transports import _env, _serve_args

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "rebind-probe", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _can_bind(family: socket.AddressFamily, host: str) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
        return True
    except OSError:
        return False


def _free_port(family: socket.AddressFamily, host: str) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


HAS_127_0_0_2 = _can_bind(socket.AF_INET, "127.0.0.2")
HAS_IPV6_LOOPBACK = socket.has_ipv6 and _can_bind(socket.AF_INET6, "::1")


@contextmanager
def serving(sandbox, tmp_path: Path, host: str, *extra: str, port: int = 0) -> Iterator[str]:
    """``serve --transport http --host HOST`` against the session sandbox; yields its /mcp URL."""
    proc = subprocess.Popen(
        [sys.executable, *_serve_args(sandbox, tmp_path, "--transport", "http", "--host", host, "--port", str(port),
                                       "--dangerously-allow-anonymous", *extra)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(tmp_path),
        text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            match = re.search(r"serving MCP over HTTP at (http://\S+/mcp)", line or "")
            if match:
                url = match.group(1)
                break
            if not line and proc.poll() is not None:
                break
        assert url, f"serve --host {host} did not start (exit {proc.poll()})"
        # keep reading stderr (refusals are logged) so the server never blocks on a full pipe
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def _post(url: str, **headers: str) -> httpx.Response:
    with httpx.Client(timeout=30, trust_env=False) as http:
        return http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **headers})


def _authority(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


async def _still_serves(url: str) -> None:
    """A whole MCP session (initialize, tools/list, a tool call) after the refusals."""
    async with Client(url, mode="legacy") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "whoami" in names
        who = await client.call_tool("whoami", {})
        assert not who.is_error, who.content


def _assert_rebinding_refused(url: str, port: int) -> None:
    right = _authority(url)
    assert _post(url, Host=right).status_code == 200
    assert _post(url, Host=f"localhost:{port}").status_code == 200  # a loopback bind also answers to localhost

    for host in ("evil.example", f"evil.example:{port}", "EVIL.example", f"localhost.evil.example:{port}",
                 f"{right}.evil.example", "localhost", f"127.0.0.1:{port + 1}", f"0.0.0.0:{port}"):
        refused = _post(url, Host=host)
        assert refused.status_code == 421, (host, refused.status_code, refused.text)

    for origin in ("http://evil.example", f"http://evil.example:{port}", f"https://{right}", "null",
                   f"http://{right}.evil.example", "http://localhost:6274"):
        refused = _post(url, Host=right, Origin=origin)
        assert refused.status_code == 403, (origin, refused.status_code, refused.text)

    assert _post(url, Host=right, Origin=f"http://{right}").status_code == 200
    assert _post(url, Host=right, Origin=f"http://localhost:{port}").status_code == 200
    assert _post(url, Host=right).status_code == 200  # and it answers normally after the refusals


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.skipif(not HAS_127_0_0_2, reason="this machine cannot bind 127.0.0.2")
async def test_a_bind_on_127_0_0_2_refuses_rebound_hosts_and_origins(sandbox, tmp_path):
    with serving(sandbox, tmp_path, "127.0.0.2") as url:
        assert url.startswith("http://127.0.0.2:")
        port = int(_authority(url).rsplit(":", 1)[1])
        _assert_rebinding_refused(url, port)
        assert _post(url, Host="127.0.0.1:%d" % port).status_code == 421  # another loopback name is not this bind
        await _still_serves(url)


@pytest.mark.anyio
@pytest.mark.skipif(not HAS_IPV6_LOOPBACK, reason="this machine has no IPv6 loopback (::1)")
async def test_a_bind_on_ipv6_loopback_refuses_rebound_hosts_and_origins(sandbox, tmp_path):
    with serving(sandbox, tmp_path, "::1") as url:
        assert url.startswith("http://[::1]:")
        port = int(_authority(url).rsplit(":", 1)[1])
        _assert_rebinding_refused(url, port)
        for host in ("::1", f"::1:{port}", "[::1]", f"[0:0:0:0:0:0:0:1]:{port}"):
            assert _post(url, Host=host).status_code == 421, host
        await _still_serves(url)


@pytest.mark.anyio
@pytest.mark.skipif(not HAS_127_0_0_2, reason="this machine cannot bind 127.0.0.2")
async def test_allow_host_and_allow_origin_admit_exactly_what_they_name(sandbox, tmp_path):
    port = _free_port(socket.AF_INET, "127.0.0.2")
    with serving(sandbox, tmp_path, "127.0.0.2", "--allow-host", f"mcp.example:{port}",
                 "--allow-origin", "http://localhost:6274", port=port) as url:
        right = _authority(url)
        assert right == f"127.0.0.2:{port}"
        assert _post(url, Host=f"mcp.example:{port}").status_code == 200
        assert _post(url, Host=right, Origin="http://localhost:6274").status_code == 200
        assert _post(url, Host=f"mcp.example:{port}", Origin="http://localhost:6274").status_code == 200
        # named hosts and origins open nothing else
        for host in ("mcp.example", f"mcp.example:{port + 1}", f"x.mcp.example:{port}", "evil.example"):
            assert _post(url, Host=host).status_code == 421, host
        for origin in ("http://localhost:6275", "https://localhost:6274", "http://evil.example", "http://mcp.example"):
            assert _post(url, Host=right, Origin=origin).status_code == 403, origin
        assert _post(url, Host=right).status_code == 200
        await _still_serves(url)
