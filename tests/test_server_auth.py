"""The HTTP server as an OAuth resource server: metadata, every way a token is refused, and the caller binding.

Tokens are signed by the sandbox's Entra key (or, for the forgeries, by keys and algorithms it
never uses) and sent to a real `serve --transport http` subprocess. Each refusal is checked for its
status, its WWW-Authenticate header, a JSON body naming the problem, a server that still serves,
and no byte of the token in the server's stderr, the audit log or the sandbox journal.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest

from auth_helpers import INIT, AuthServe, mint, server_app, user


@pytest.fixture(scope="module")
def served(sandbox, tmp_path_factory):
    with AuthServe(sandbox, tmp_path_factory.mktemp("auth")) as server:
        yield server


def _challenge(response: httpx.Response) -> dict[str, str]:
    header = response.headers.get("www-authenticate", "")
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def _no_token_bytes(served: AuthServe, sandbox: Any, token: str) -> None:
    """Neither the whole token nor its signature part appears anywhere the server or the sandbox wrote."""
    signature = token.rsplit(".", 1)[-1]
    needles = [token.encode(), signature.encode()] if len(signature) >= 16 else [token.encode()]
    audit = served.audit.read_bytes() if served.audit.exists() else b""
    journal = json.dumps(sandbox.requests()).encode()
    for place, data in (("stderr", bytes(served.stderr_bytes)), ("audit", audit), ("journal", journal)):
        for needle in needles:
            assert needle not in data, f"token bytes in the server's {place}"


def _still_serving(served: AuthServe, sandbox: Any) -> None:
    answer = served.post(token=mint(sandbox))
    assert answer.status_code == 200, answer.text
    assert answer.headers.get("mcp-session-id")


# -- Protected Resource Metadata (RFC 9728) ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"])
def test_metadata_names_the_resource_tenant_and_scope(served, sandbox, path):
    app = server_app(sandbox)
    answer = httpx.get(served.origin + path, timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    document = answer.json()
    # RFC 9728 §2/§3.3: resource is the URL the client uses; the AS is the tenant's issuer exactly
    assert document["resource"] == served.url
    assert document["authorization_servers"] == [sandbox.state.issuer]
    assert document["scopes_supported"] == [app["scope"]]
    assert document["bearer_methods_supported"] == ["header"]
    # the issuer's discovery document is where an MCP client goes next, and it names the same issuer
    import ssl

    discovery = httpx.get(f"{sandbox.state.issuer}/.well-known/openid-configuration",
                          verify=ssl.create_default_context(cafile=sandbox.manifest["ca_bundle"]), timeout=30)
    assert discovery.json()["issuer"] == document["authorization_servers"][0]


def test_metadata_needs_no_token_and_allows_cross_origin_reads(served):
    answer = httpx.options(served.origin + "/.well-known/oauth-protected-resource/mcp", timeout=30)
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "*"
    assert httpx.post(served.origin + "/.well-known/oauth-protected-resource", timeout=30).status_code == 405


# -- 401 / 403 ----------------------------------------------------------------------------------------


def test_missing_token_is_401_with_the_metadata_url_and_no_error_code(served, sandbox):
    answer = served.post()
    assert answer.status_code == 401
    challenge = _challenge(answer)
    assert challenge["resource_metadata"] == served.origin + "/.well-known/oauth-protected-resource/mcp"
    assert challenge["scope"] == server_app(sandbox)["scope"]
    assert "error" not in challenge  # RFC 6750 §3.1: no error code when no credentials were sent
    body = answer.json()
    assert body["reason"] == "missing" and "bearer token" in body["error_description"]
    # the metadata URL in the challenge really serves the document
    assert httpx.get(challenge["resource_metadata"], timeout=30).json()["resource"] == served.url


def test_other_schemes_and_empty_bearer_are_missing_tokens(served, sandbox):
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "bearer"):
        answer = httpx.post(served.url, json=INIT, headers={"authorization": header, "accept": "application/json, text/event-stream"},
                            timeout=30)
        assert answer.status_code == 401 and answer.json()["reason"] == "missing", header


def _another_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


BAD_TOKENS = {
    "expired": lambda sb: mint(sb, exp=1_700_000_000, nbf=1_699_990_000, iat=1_699_990_000),
    "not_yet_valid": lambda sb: mint(sb, nbf=2_000_000_000 + 10, exp=2_000_003_600),
    "wrong_audience": lambda sb: mint(sb, aud="https://management.azure.com/"),
    "wrong_issuer": lambda sb: mint(sb, iss="https://login.microsoftonline.com/another-tenant/v2.0"),
    "wrong_tenant": lambda sb: mint(sb, tid=str(uuid.uuid4())),
    # signed by a key of our own, under the sandbox's kid
    "bad_signature": lambda sb: mint(sb, key=_another_key(), headers={"kid": sb.state.tokens.kid}),
    "unsupported_algorithm": lambda sb: mint(sb, algorithm="none"),
    "unknown_key": lambda sb: mint(sb, key=_another_key(), headers={"kid": "kid-of-another-key"}),
    "malformed": lambda sb: "not.a-jwt",
}


@pytest.mark.parametrize("reason", sorted(BAD_TOKENS))
def test_bad_token_is_401_invalid_token_naming_the_problem(served, sandbox, reason):
    token = BAD_TOKENS[reason](sandbox)
    answer = served.post(token=token)
    assert answer.status_code == 401, answer.text
    challenge = _challenge(answer)
    assert challenge["error"] == "invalid_token"
    assert challenge["error_description"]
    assert challenge["resource_metadata"].endswith("/.well-known/oauth-protected-resource/mcp")
    body = answer.json()
    assert body["reason"] == reason, body
    assert body["error"] == "invalid_token"
    assert "Traceback" not in answer.text and token not in answer.text
    _still_serving(served, sandbox)
    _no_token_bytes(served, sandbox, token)


def test_hs256_with_the_public_key_as_secret_is_refused(served, sandbox):
    import jwt

    token = jwt.encode({"aud": server_app(sandbox)["client_id"], "iss": sandbox.state.issuer, "exp": 4_000_000_000},
                       "a-shared-secret-guess-that-is-long-enough", algorithm="HS256",
                       headers={"kid": sandbox.state.tokens.kid})
    answer = served.post(token=token)
    assert answer.status_code == 401 and answer.json()["reason"] == "unsupported_algorithm"


def test_wrong_scope_is_403_insufficient_scope_with_the_required_scope(served, sandbox):
    token = mint(sandbox, scp="Files.Read")
    answer = served.post(token=token)
    assert answer.status_code == 403
    challenge = _challenge(answer)
    assert challenge["error"] == "insufficient_scope"
    assert challenge["scope"] == server_app(sandbox)["scope"]
    body = answer.json()
    assert body["reason"] == "insufficient_scope" and body["required_scope"] == server_app(sandbox)["scope"]
    app_only = mint(sandbox, drop=("scp",), roles=["Something.All"])
    assert served.post(token=app_only).status_code == 403
    _still_serving(served, sandbox)
    _no_token_bytes(served, sandbox, token)


def test_a_flood_of_unknown_key_ids_fetches_the_jwks_at_most_once(served, sandbox):
    _still_serving(served, sandbox)  # keys fetched and cached
    since = sandbox.last_seq()
    key = _another_key()
    for n in range(25):
        answer = served.post(token=mint(sandbox, key=key, headers={"kid": f"random-kid-{n}-{uuid.uuid4().hex}"}))
        assert answer.status_code == 401 and answer.json()["reason"] == "unknown_key"
    fetches = [r for r in sandbox.requests(since=since) if r.get("path", "").endswith("/discovery/v2.0/keys")]
    assert len(fetches) <= 1, fetches
    _still_serving(served, sandbox)


def test_a_valid_token_reaches_mcp_and_lists_tools(served, sandbox):
    token = mint(sandbox)
    opened = served.post(token=token)
    assert opened.status_code == 200
    session = opened.headers["mcp-session-id"]
    listed = served.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, token=token, mcp_session_id=session,
                         mcp_protocol_version="2025-06-18")
    assert listed.status_code == 200
    assert "resource_list" in listed.text


# -- sessions bound to their caller --------------------------------------------------------------------


def _tool_call(name: str, arguments: dict[str, Any] | None = None, request_id: int = 3) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": arguments or {}}}


def test_another_callers_mcp_session_is_403_and_audited(served, sandbox):
    alice, bob = mint(sandbox, "developer"), mint(sandbox, "reader")
    session = served.post(token=alice).headers["mcp-session-id"]
    stolen = served.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, token=bob, mcp_session_id=session,
                         mcp_protocol_version="2025-06-18")
    assert stolen.status_code == 403
    body = stolen.json()
    assert body["reason"] == "session_not_yours" and "another caller" in body["error_description"]
    # the owner keeps using it
    own = served.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, token=alice, mcp_session_id=session,
                      mcp_protocol_version="2025-06-18")
    assert own.status_code == 200
    records = [r for r in _audit(served) if r.get("kind") == "access" and r.get("correlation_id") == body["correlation_id"]]
    assert len(records) == 1
    record = records[0]
    assert record["decision"] == "deny" and record["session_kind"] == "mcp_session"
    assert record["caller"]["oid"] == user(sandbox, "reader")["object_id"]
    assert user(sandbox, "developer")["object_id"] not in json.dumps(record)  # nothing of the owner
    _no_token_bytes(served, sandbox, alice)
    _no_token_bytes(served, sandbox, bob)


def test_another_callers_agent_session_is_403_and_audited(served, sandbox):
    alice, bob = mint(sandbox, "developer"), mint(sandbox, "reader")
    name = f"alices-session-{uuid.uuid4().hex[:8]}"
    mine = served.post(token=alice, x_agent_session_id=name)
    assert mine.status_code == 200
    theirs = served.post(token=bob, x_agent_session_id=name)
    assert theirs.status_code == 403
    body = theirs.json()
    assert body["reason"] == "session_not_yours"
    records = [r for r in _audit(served) if r.get("correlation_id") == body["correlation_id"]]
    assert len(records) == 1 and records[0]["kind"] == "access"
    assert records[0]["session_kind"] == "agent_session" and records[0]["requested_session_id"] == name
    assert records[0]["caller"]["upn"] == user(sandbox, "reader")["upn"]
    assert user(sandbox, "developer")["object_id"] not in json.dumps(records[0])
    # the server's own agent session is nobody's to name either
    again = served.post(token=alice, x_agent_session_id=name)
    assert again.status_code == 200
    _still_serving(served, sandbox)


def _audit(served: AuthServe) -> list[dict[str, Any]]:
    if not served.audit.exists():
        return []
    return [json.loads(line) for line in served.audit.read_text().splitlines() if line.strip()]


def test_without_a_header_each_caller_gets_its_own_session_on_the_modern_protocol(served, sandbox):
    """2026-07-28 requests carry no Mcp-Session-Id: each caller gets a default session of its own, not the server's."""
    import anyio

    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def calls(name: str) -> None:
        for _ in range(2):  # a new token each time: the same caller, the same default session
            headers = {"Authorization": f"Bearer {mint(sandbox, name)}"}
            async with httpx.AsyncClient(headers=headers, timeout=30) as http:
                async with Client(streamable_http_client(served.url, http_client=http), mode="2026-07-28") as client:
                    result = await client.call_tool("policy_explain", {})
                    assert not result.is_error, result.content

    async def both() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(calls, "developer")
            group.start_soon(calls, "reader")

    anyio.run(both)
    sessions = {}
    for name in ("developer", "reader"):
        sessions[name] = {r.get("session_id") for r in _audit(served)
                          if r.get("kind") == "tool" and (r.get("caller") or {}).get("upn") == user(sandbox, name)["upn"]}
    assert all(len(ids) == 1 for ids in sessions.values()), sessions
    assert sessions["developer"].isdisjoint(sessions["reader"])


def test_http_refuses_to_start_without_its_app_unless_anonymous_on_loopback(sandbox, tmp_path):
    import subprocess

    from auth_helpers import SERVE, serve_env

    base = [*SERVE, "--sandbox", str(sandbox.manifest_path), "--audit-log", str(tmp_path / "a.jsonl"),
            "--transport", "http", "--port", "0"]
    if not sandbox.manifest.get("mcp_server_app"):
        done = subprocess.run(base, capture_output=True, text=True, env=serve_env(tmp_path / "s"), timeout=60,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 2 and "--auth-client-id" in done.stderr and "--dangerously-allow-anonymous" in done.stderr
    remote = subprocess.run([*base, "--host", "0.0.0.0", "--allow-remote", "--dangerously-allow-anonymous"],
                            capture_output=True, text=True, env=serve_env(tmp_path / "s"), timeout=60,
                            stdin=subprocess.DEVNULL)
    assert remote.returncode == 2 and "loopback" in remote.stderr


def test_with_authentication_the_server_needs_no_credential_of_its_own(sandbox, tmp_path):
    """Team mode acts only on behalf of callers: a --credential that is not ready does not stop it starting."""
    import shutil

    if shutil.which("az"):
        pytest.skip("az is on PATH here: --credential azure-cli would be ready anyway")
    with AuthServe(sandbox, tmp_path, "--credential", "azure-cli") as server:
        assert server.post(token=mint(sandbox)).status_code == 200
