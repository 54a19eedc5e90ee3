"""Driving `serve --transport http` with authentication: the server subprocess, and bearer tokens for it.

``mint`` signs tokens with the sandbox's own Entra key (what Entra would issue for the server app),
with any claim changed, so each way a token can be wrong is one keyword away. ``AuthServe`` keeps
every byte the server wrote to stderr, for the "no token bytes anywhere" checks.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from serve_helpers import SERVE, StderrPump, serve_env  # noqa: F401  (SERVE, serve_env: re-exported)

SECRET_ENV = "AAM_TEST_SERVER_APP_SECRET"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "auth-test", "version": "0"}}}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def server_app(sandbox: Any) -> dict[str, str]:
    """The MCP server's app registration: the manifest's when the sandbox has one, else a made-up one."""
    app = sandbox.manifest.get("mcp_server_app")
    if app:
        return {"client_id": app["client_id"], "app_id_uri": app["app_id_uri"], "scope": app["scope"],
                "client_secret": app.get("client_secret", "")}
    client_id = "6f1c5a52-7c1e-4b59-9a57-4e3b0f7d2a10"
    return {"client_id": client_id, "app_id_uri": f"api://{client_id}", "scope": f"api://{client_id}/user_impersonation",
            "client_secret": "not-a-real-secret"}


def user(sandbox: Any, name: str) -> dict[str, Any]:
    return next(u for u in sandbox.manifest["users"] if u["name"] == name)


def mint(sandbox: Any, name: str = "developer", *, key: Any = None, headers: dict[str, Any] | None = None,
         algorithm: str = "RS256", drop: tuple[str, ...] = (), **claims: Any) -> str:
    """A token for the server app as the sandbox's Entra would sign it; ``claims`` override, ``drop`` remove."""
    import jwt

    person = user(sandbox, name)
    app = server_app(sandbox)
    now = int(time.time())
    body: dict[str, Any] = {
        "aud": app["client_id"], "iss": sandbox.state.issuer, "iat": now, "nbf": now - 5, "exp": now + 3600,
        "tid": sandbox.state.tenant_id, "oid": person["object_id"], "sub": person["object_id"],
        "upn": person["upn"], "name": person["name"], "azp": sandbox.manifest["public_client_id"],
        "scp": "user_impersonation", "ver": "2.0", "uti": uuid.uuid4().hex,
    }
    body.update(claims)
    for name_ in drop:
        body.pop(name_, None)
    if algorithm == "none":
        return jwt.encode(body, None, algorithm="none", headers=headers)
    if key is None:
        assert headers is None and algorithm == "RS256", "the sandbox's key signs with its own header only"
        return sandbox.state.tokens.sign(body)
    return jwt.encode(body, key, algorithm=algorithm, headers=headers)


class AuthServe:
    """`serve --transport http --port 0 --sandbox MANIFEST` with authentication on; ``url`` is /mcp."""

    def __init__(self, sandbox: Any, tmp_path: Path, *extra: str, explicit_app: bool | None = None,
                 timeout: float = 30, env: dict[str, str] | None = None) -> None:
        app = server_app(sandbox)
        self.audit = tmp_path / "audit.jsonl"
        args = [*SERVE, "--sandbox", str(sandbox.manifest_path), "--audit-log", str(self.audit),
                "--transport", "http", "--port", "0"]
        if explicit_app if explicit_app is not None else not sandbox.manifest.get("mcp_server_app"):
            args += ["--auth-client-id", app["client_id"], "--auth-app-id-uri", app["app_id_uri"],
                     "--auth-secret-env", SECRET_ENV]
        self.proc = subprocess.Popen(
            [*args, *extra], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=serve_env(tmp_path / "state", **{SECRET_ENV: app["client_secret"] or "unused"}, **(env or {})),
        )
        pump = StderrPump(self.proc)
        self.stderr_bytes = pump.data  # grows while the server runs
        self.url = pump.wait_for_url(timeout)
        if not self.url:
            self.stop()
            raise AssertionError(f"serve did not start: {pump.text(2000)}")
        self.origin = self.url.rsplit("/mcp", 1)[0]

    def post(self, body: Any = None, *, token: str | None = None, **headers: str) -> httpx.Response:
        sent = dict(MCP_HEADERS)
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        sent.update({k.replace("_", "-"): v for k, v in headers.items()})
        return httpx.post(self.url, json=body if body is not None else INIT, headers=sent, timeout=30)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> AuthServe:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# -- signing in through the sandbox's public client, as an MCP client does -----------------------------


def sign_in(sandbox: Any, name: str, scopes: list[str] | None = None) -> dict[str, Any]:
    """Authorization code + PKCE with msal, the browser replaced by httpx following the 302 to a loopback
    listener; returns msal's token result (``access_token`` is for the MCP server app)."""
    import http.server
    import ssl
    import warnings
    from urllib.parse import parse_qsl, urlsplit

    import msal
    import requests

    manifest = sandbox.manifest
    received: list[dict[str, str]] = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            received.append(dict(parse_qsl(urlsplit(self.path).query)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"signed in")

        def log_message(self, *args: Any) -> None:
            pass

    listener = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    http_client = requests.Session()
    http_client.verify = manifest["ca_bundle"]
    http_client.trust_env = False
    app = msal.PublicClientApplication(
        manifest["mcp_public_client"]["client_id"], authority=f"{manifest['authority_host']}/{manifest['tenant_id']}",
        http_client=http_client, instance_discovery=False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended")
            flow = app.initiate_auth_code_flow(scopes or [manifest["mcp_server_app"]["scope"]],
                                               redirect_uri=f"http://127.0.0.1:{listener.server_port}/callback",
                                               login_hint=user(sandbox, name)["upn"])
        browser = httpx.Client(verify=ssl.create_default_context(cafile=manifest["ca_bundle"]), trust_env=False,
                               timeout=30)
        page = browser.get(flow["auth_uri"], follow_redirects=True)
        assert page.status_code == 200, page.text
    finally:
        listener.shutdown()
        listener.server_close()
    assert len(received) == 1, received
    result = app.acquire_token_by_auth_code_flow(flow, received[0])
    assert "access_token" in result, result
    return result
