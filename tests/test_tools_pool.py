"""The shared connection pool: proxies from the environment still honoured (read once, NO_PROXY as
requests applies it), through a loopback CONNECT proxy that records what it tunnelled; no cookie
crosses from one request to the next; through serve, every session's ARM request takes the proxy."""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from azure_agent_mcp.tools.pool import HttpPool, ProxySettings
from http_raw import call, result_of
from serve_helpers import HttpServe


class _Tunnel(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            data += chunk
        line = data.split(b"\r\n", 1)[0].decode()
        method, target, _ = line.split(" ", 2)
        self.server.seen.append(f"{method} {target}")  # type: ignore[attr-defined]
        if method != "CONNECT":
            self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, port = target.rsplit(":", 1)
        if host not in ("127.0.0.1", "localhost"):  # loopback only
            self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        upstream = socket.create_connection((host, int(port)))
        self.request.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        sockets = [self.request, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 30)
                if not readable:
                    return
                for source in readable:
                    chunk = source.recv(65536)
                    if not chunk:
                        return
                    (upstream if source is self.request else self.request).sendall(chunk)
        finally:
            upstream.close()


class _Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.seen: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def connect_proxy() -> Iterator[_Proxy]:
    proxy = _Proxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def _arm_url(sandbox: Any) -> str:
    return sandbox.manifest["arm_endpoint"].rstrip("/") + "/subscriptions?api-version=2022-12-01"


def test_https_proxy_from_the_environment_carries_the_pools_requests(sandbox, connect_proxy):
    pool = HttpPool(ProxySettings.from_environment({"HTTPS_PROXY": connect_proxy.url, "PATH": "/bin"}))
    try:
        answer = pool.session.get(_arm_url(sandbox), verify=sandbox.manifest["ca_bundle"], timeout=30)
        assert answer.status_code == 401  # no token: ARM's own answer, through the tunnel
        host = _arm_url(sandbox).split("/")[2]
        assert connect_proxy.seen == [f"CONNECT {host}"]
        assert pool.session.trust_env is False
    finally:
        pool.close()


def test_no_proxy_is_honoured_and_lowercase_wins(sandbox, connect_proxy):
    bypass = ProxySettings.from_environment({"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": connect_proxy.url,
                                             "NO_PROXY": "127.0.0.1,example.internal"})
    assert bypass.proxies == {"https": connect_proxy.url}
    assert bypass.for_url(_arm_url(sandbox)) == {}
    assert bypass.for_url("https://management.azure.com/x") == {"https": connect_proxy.url}
    assert bypass.for_url("https://vault.example.internal/secrets") == {}
    pool = HttpPool(bypass)
    try:
        assert pool.session.get(_arm_url(sandbox), verify=sandbox.manifest["ca_bundle"], timeout=30).status_code == 401
        assert connect_proxy.seen == []
    finally:
        pool.close()
    assert ProxySettings.from_environment({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}).proxies == {}
    assert ProxySettings.from_environment({}).for_url(_arm_url(sandbox)) == {}


class _CookieServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.server.cookies.append(self.headers.get("Cookie"))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Set-Cookie", "affinity=session-a; Path=/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_no_cookie_one_session_received_rides_on_the_next_request():
    server = HTTPServer(("127.0.0.1", 0), _CookieServer)
    server.cookies = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pool = HttpPool(ProxySettings())
    try:
        for _ in range(2):
            assert pool.session.get(f"http://127.0.0.1:{server.server_address[1]}/", timeout=10).status_code == 200
        assert server.cookies == [None, None]  # type: ignore[attr-defined]
        assert len(pool.session.cookies) == 0
    finally:
        pool.close()
        server.shutdown()
        server.server_close()


def test_serve_sends_every_sessions_arm_requests_through_the_environments_proxy(fresh_sandbox_state, connect_proxy,
                                                                                tmp_path: Path, monkeypatch):
    sandbox = fresh_sandbox_state
    host = _arm_url(sandbox).split("/")[2]
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server = HttpServe(sandbox, tmp_path / "audit.jsonl", tmp_path / "state")
    try:
        since = sandbox.last_seq()
        with httpx.Client(timeout=60, trust_env=False) as http:
            for session in ("proxied-1", "proxied-2"):
                assert not result_of(call(http, server.url, "group_list", session=session)).get("isError")
        arm = [r for r in sandbox.requests(kind="arm", since=since) if r.get("token_session", "").startswith("proxied-")]
        assert {r["token_session"] for r in arm} == {"proxied-1", "proxied-2"}
        assert f"CONNECT {host}" in connect_proxy.seen
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=20)
