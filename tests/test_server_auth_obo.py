"""Team mode end to end: sandbox users sign in through the public client, work through one server at once,
and every ARM request carries the right user and agent session (the on-behalf-of grant, per caller).

Real msal (authorization code + PKCE, the redirect followed by httpx), the official MCP client's
streamable HTTP transport with an Authorization header, `serve --transport http --sandbox` in a
subprocess; the outcome is read from the sandbox's request journal and the audit log.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from auth_helpers import AuthServe, server_app, sign_in, user

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@pytest.fixture(scope="module")
def served(sandbox, tmp_path_factory):
    with AuthServe(sandbox, tmp_path_factory.mktemp("obo")) as server:
        yield server


def _audit(served: AuthServe) -> list[dict[str, Any]]:
    return [json.loads(line) for line in served.audit.read_text().splitlines() if line.strip()]


async def _work(url: str, token: str, mode: str, results: dict[str, Any], label: str,
                headers: dict[str, str] | None = None) -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}", **(headers or {})}, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            who = await client.call_tool("whoami", {})
            assert not who.is_error, who.content
            calls = []
            for tool in ("group_list", "resource_list", "group_list"):
                result = await client.call_tool(tool, {})
                assert not result.is_error, result.content
                calls.append(result)
            results[label] = who.structured_content


def _no_token_bytes(served: AuthServe, sandbox: Any, *tokens: str) -> None:
    audit = served.audit.read_bytes()
    journal = json.dumps(sandbox.requests()).encode()
    for token in tokens:
        for needle in (token.encode(), token.rsplit(".", 1)[-1].encode()):
            for place, data in (("stderr", bytes(served.stderr_bytes)), ("audit", audit), ("journal", journal)):
                assert needle not in data, f"token bytes in the {place}"


def test_two_users_work_at_the_same_time_each_as_themselves(served, sandbox):
    tokens = {name: sign_in(sandbox, name)["access_token"] for name in ("developer", "reader")}
    since = sandbox.last_seq()
    results: dict[str, Any] = {}

    async def together() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(_work, served.url, tokens["developer"], "legacy", results, "developer")
            group.start_soon(_work, served.url, tokens["reader"], "legacy", results, "reader")
            group.start_soon(_work, served.url, tokens["reader"], "2026-07-28", results, "reader-modern")

    anyio.run(together)
    sessions = {label: who["session"]["id"] for label, who in results.items()}
    assert len(set(sessions.values())) == 3, sessions
    owner = {sessions["developer"]: "developer", sessions["reader"]: "reader", sessions["reader-modern"]: "reader"}
    for label, who in results.items():
        person = user(sandbox, owner[who["session"]["id"]])
        assert who["caller"]["oid"] == person["object_id"] and who["caller"]["upn"] == person["upn"]
        assert who["caller"]["azp"] == sandbox.manifest["mcp_public_client"]["client_id"]
        assert who["principal"]["oid"] == person["object_id"], "the ARM token is the caller's own"
        assert who["credential"]["kind"] == "on-behalf-of"
        assert who["session_in_token"], "the ARM token carries the agent session"

    # what ARM received: every request carries the right user's oid and that user's agent session
    arm = sandbox.requests("arm", since=since)
    assert {e.get("token_session") for e in arm} == set(sessions.values())
    for entry in arm:
        person = user(sandbox, owner[entry["token_session"]])
        assert entry["token_claims"]["oid"] == person["object_id"], entry
        assert entry["token_claims"].get("xms_cli_sid") == entry["token_session"]
    # each OBO exchange tagged its session as user tokens are: query, body and the claims request
    exchanges = [e for e in sandbox.requests("token", since=since) if e.get("grant_type") == JWT_BEARER]
    assert {e["client_session_query"] for e in exchanges} == set(sessions.values())
    for exchange in exchanges:
        assert exchange["client_session_body"] == exchange["client_session_query"]
        assert exchange["client_id"] == server_app(sandbox)["client_id"]
        assert json.loads(exchange["claims"])["access_token"]["xms_cli_sid"]["values"] == [exchange["client_session_query"]]
        assert exchange["subject_oid"] == user(sandbox, owner[exchange["client_session_query"]])["object_id"]

    # the audit names each caller, on the tool records and the intent records
    records = _audit(served)
    for kind in ("tool", "intent"):
        mine = [r for r in records if r.get("kind") == kind and r.get("session_id") in owner]
        assert mine, kind
        for record in mine:
            person = user(sandbox, owner[record["session_id"]])
            assert record["caller"]["oid"] == person["object_id"] and record["caller"]["upn"] == person["upn"], record
    _no_token_bytes(served, sandbox, *tokens.values())


def test_a_caller_naming_another_callers_agent_session_is_refused(served, sandbox):
    developer, reader = sign_in(sandbox, "developer")["access_token"], sign_in(sandbox, "reader")["access_token"]
    results: dict[str, Any] = {}
    anyio.run(_work, served.url, developer, "legacy", results, "mine")
    taken = results["mine"]["session"]["id"]

    async def steal() -> int:
        headers = {"Authorization": f"Bearer {reader}", "X-Agent-Session-Id": taken}
        async with httpx.AsyncClient(headers=headers, timeout=30) as http:
            answer = await http.post(served.url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}},
                headers={"accept": "application/json, text/event-stream"})
            assert answer.json()["reason"] == "session_not_yours"
            return answer.status_code

    since = sandbox.last_seq()
    assert anyio.run(steal) == 403
    assert not [e for e in sandbox.requests("arm", since=since) if e.get("token_session") == taken]
    refused = [r for r in _audit(served) if r.get("kind") == "access" and r.get("requested_session_id") == taken]
    assert len(refused) == 1 and refused[0]["caller"]["oid"] == user(sandbox, "reader")["object_id"]
    # the owner, naming it, still works in it
    again: dict[str, Any] = {}
    anyio.run(_work, served.url, developer, "legacy", again, "mine", {"X-Agent-Session-Id": taken})
    assert again["mine"]["session"]["id"] == taken


def test_consent_required_names_the_consent_urls_and_sends_nothing_to_arm(served, sandbox):
    newcomer = sign_in(sandbox, "newcomer")["access_token"]
    since = sandbox.last_seq()
    app = server_app(sandbox)
    authority = f"{sandbox.manifest['authority_host']}/{sandbox.manifest['tenant_id']}"

    async def call() -> Any:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {newcomer}"}, timeout=60) as http:
            async with Client(streamable_http_client(served.url, http_client=http), mode="legacy") as client:
                return await client.call_tool("group_list", {})

    result = anyio.run(call)
    assert result.is_error
    error = result.structured_content["error"]
    assert error["code"] == "ConsentRequired", error
    assert error["consent_url"] == (f"{authority}/oauth2/v2.0/authorize?client_id={app['client_id']}&response_type=code"
                                    "&scope=https://management.azure.com/user_impersonation")
    assert error["admin_consent_url"] == f"{authority}/v2.0/adminconsent?client_id={app['client_id']}"
    assert "consent" in error["message"] and app["client_id"] in error["message"]
    assert not [e for e in sandbox.requests("arm", since=since)
                if (e.get("token_claims") or {}).get("oid") == user(sandbox, "newcomer")["object_id"]]
    record = [r for r in _audit(served) if r.get("kind") == "tool" and r.get("error_code") == "ConsentRequired"][-1]
    assert record["caller"]["upn"] == user(sandbox, "newcomer")["upn"]
    _no_token_bytes(served, sandbox, newcomer)
    # once the user has consented, the same caller works without signing in again
    sandbox.grant_consent(user(sandbox, "newcomer")["upn"], "https://management.azure.com")
    try:
        result = anyio.run(call)
        assert not result.is_error, result.content
    finally:
        sandbox.revoke_consent(user(sandbox, "newcomer")["upn"], "https://management.azure.com")


def test_claims_challenge_from_arm_goes_through_the_obo_exchange(served, sandbox):
    token = sign_in(sandbox, "developer")["access_token"]
    results: dict[str, Any] = {}
    anyio.run(_work, served.url, token, "legacy", results, "warm", {"X-Agent-Session-Id": "challenged-session-1"})
    subscription = sandbox.manifest["subscriptions"][0]["id"]
    since = sandbox.last_seq()
    sandbox.add_claims_challenge(f"/subscriptions/{subscription}/resourcegroups$",
                                 {"access_token": {"acrs": {"essential": True, "value": "c1"}}})
    try:
        again: dict[str, Any] = {}
        anyio.run(_work, served.url, token, "legacy", again, "warm", {"X-Agent-Session-Id": "challenged-session-1"})
    finally:
        sandbox.clear_claims_challenges()
    exchanges = [e for e in sandbox.requests("token", since=since)
                 if e.get("grant_type") == JWT_BEARER and e.get("client_session_query") == "challenged-session-1"]
    assert len(exchanges) == 1, [(e.get("claims"), e.get("status"), e.get("scope"), e.get("error_code")) for e in exchanges]
    wire = json.loads(exchanges[0]["claims"])["access_token"]
    assert wire["acrs"] == {"essential": True, "value": "c1"}
    assert wire["xms_cli_sid"] == {"values": ["challenged-session-1"]}, "merged with the agent claims"
    answered = [e for e in sandbox.requests("arm", since=since) if e["path"].endswith("/resourcegroups")]
    assert [e["status"] for e in answered][:2] == [401, 200]


def test_entra_failing_the_exchange_is_token_service_unavailable(sandbox, tmp_path):
    """A server of its own: Entra's Retry-After holds the server app's exchanges back for every caller (MSAL)."""
    token = sign_in(sandbox, "reader")["access_token"]
    served = AuthServe(sandbox, tmp_path)
    session = f"outage-{time.monotonic_ns()}"  # a new session: its first call needs an exchange
    since = sandbox.last_seq()
    sandbox.add_fault(r"/oauth2/v2\.0/token$", status=503, count=2, retry_after=7)
    try:
        async def call() -> Any:
            headers = {"Authorization": f"Bearer {token}", "X-Agent-Session-Id": session}
            async with httpx.AsyncClient(headers=headers, timeout=60) as http:
                async with Client(streamable_http_client(served.url, http_client=http), mode="legacy") as client:
                    return await client.call_tool("group_list", {})

        result = anyio.run(call)
    finally:
        sandbox.clear_faults()
        served.stop()
    assert result.is_error
    error = result.structured_content["error"]
    assert error["code"] == "TokenServiceUnavailable", error
    assert error["retry_after"] == 7
    assert not [e for e in sandbox.requests("arm", since=since) if e.get("token_session") == session]
    _no_token_bytes(served, sandbox, token)


def test_key_vault_tokens_are_on_behalf_of_the_caller_too(served, sandbox):
    token = sign_in(sandbox, "developer")["access_token"]
    vault = sandbox.manifest["vaults"][0]["name"]
    since = sandbox.last_seq()

    async def call() -> Any:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            async with Client(streamable_http_client(served.url, http_client=http), mode="legacy") as client:
                return await client.call_tool("keyvault_secret_list", {"vault": vault})

    result = anyio.run(call)
    assert not result.is_error, result.content
    answered = [e for e in sandbox.requests("vault", since=since) if e.get("status") == 200]
    assert answered and all(e["token_claims"]["oid"] == user(sandbox, "developer")["object_id"] for e in answered)
    exchanges = [e for e in sandbox.requests("token", since=since) if e.get("grant_type") == JWT_BEARER]
    assert any("vault.azure.net" in (e.get("scope") or "") for e in exchanges)
    assert all(e["client_session_query"] == answered[0]["token_session"] for e in exchanges
               if "vault.azure.net" in (e.get("scope") or ""))


def _certificate_pem() -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "azure-agent-mcp server app")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


async def _group_list(url: str, token: str) -> Any:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            return await client.call_tool("group_list", {})


def test_the_server_app_can_prove_itself_with_a_certificate(sandbox, tmp_path):
    key_pem, cert_pem = _certificate_pem()
    pem = tmp_path / "server-app.pem"
    pem.write_text(key_pem + cert_pem)
    token = sign_in(sandbox, "developer")["access_token"]
    with AuthServe(sandbox, tmp_path, "--auth-certificate", str(pem)) as served:
        refused = anyio.run(_group_list, served.url, token)
        assert refused.is_error, "a certificate Entra does not know is refused: the secret was not used instead"
        assert key_pem.splitlines()[1] not in served.stderr_bytes.decode() + json.dumps(refused.structured_content)
        sandbox.add_client_certificate(server_app(sandbox)["client_id"], cert_pem)
        result = anyio.run(_group_list, served.url, token)
        assert not result.is_error, result.content


def test_the_server_app_can_prove_itself_with_a_federated_assertion_file(sandbox, tmp_path):
    from conftest import SandboxTokens

    exchange = SandboxTokens(sandbox.manifest).app_token("api://AzureADTokenExchange/.default")
    assertion = tmp_path / "federated-token"
    assertion.write_text(exchange)
    token = sign_in(sandbox, "reader")["access_token"]
    since = sandbox.last_seq()
    with AuthServe(sandbox, tmp_path, "--auth-assertion-file", str(assertion)) as served:
        result = anyio.run(_group_list, served.url, token)
        assert not result.is_error, result.content
        _no_token_bytes(served, sandbox, exchange, token)
    arm = sandbox.requests("arm", since=since)
    assert arm and all(e["token_claims"]["oid"] == user(sandbox, "reader")["object_id"] for e in arm)


def test_an_exchange_answered_for_another_user_is_refused_and_nothing_reaches_arm(served, sandbox):
    developer = user(sandbox, "developer")
    token = sign_in(sandbox, "developer")["access_token"]
    since = sandbox.last_seq()

    async def call() -> Any:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            async with Client(streamable_http_client(served.url, http_client=http), mode="legacy") as client:
                return await client.call_tool("group_list", {})

    sandbox.set_obo_answers_for_another_user(True)
    try:
        result = anyio.run(call)
    finally:
        sandbox.set_obo_answers_for_another_user(False)
    assert result.is_error
    error = result.structured_content["error"]
    assert error["code"] == "IdentityMismatch", error
    assert developer["object_id"] in error["message"] and "nothing was sent" in error["message"]
    exchanges = [e for e in sandbox.requests("token", since=since) if e.get("grant_type") == JWT_BEARER]
    assert exchanges and all(e["subject_oid"] != developer["object_id"] for e in exchanges)
    assert sandbox.requests("arm", since=since) == [], "no ARM request with the other user's token"
    record = [r for r in _audit(served) if r.get("kind") == "tool" and r.get("error_code") == "IdentityMismatch"][-1]
    assert record["caller"]["oid"] == developer["object_id"]
    _no_token_bytes(served, sandbox, token)
