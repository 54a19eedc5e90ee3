"""Admin API: faults, claims challenges, reset; and the sandbox's resilience to bad input."""

from __future__ import annotations

import socket
import ssl
import time

import httpx
import pytest
from conftest import ARM_SCOPE, UserCredential, decode_claims, httpx_client

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
GROUP = f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app"


def _resources(sandbox, credential, **kwargs):
    from azure.mgmt.resource.resources import ResourceManagementClient

    return ResourceManagementClient(credential, SUB_A, base_url=sandbox.manifest["arm_endpoint"],
                                    credential_scopes=[ARM_SCOPE], connection_verify=sandbox.manifest["ca_bundle"],
                                    **kwargs)


def test_429_with_retry_after_is_retried_by_azure_core_and_logged(fresh_sandbox_state, developer_credential):
    sandbox = fresh_sandbox_state
    client = _resources(sandbox, developer_credential)
    fault = sandbox.add_fault(r"/resourceGroups/rg-prod-app$", status=429, retry_after=1, count=1)
    assert fault["remaining"] == 1
    since = sandbox.last_seq()
    started = time.monotonic()
    group = client.resource_groups.get("rg-prod-app")
    assert group.name == "rg-prod-app"
    assert time.monotonic() - started >= 0.9  # azure-core honoured Retry-After
    entries = [e for e in sandbox.requests(kind="arm", since=since) if e["path"].endswith("/rg-prod-app")]
    assert [(e["status"], e.get("fault", False)) for e in entries] == [(429, True), (200, False)]
    assert entries[0]["correlation_id"] == entries[1]["correlation_id"]
    assert sandbox.stats()["faults_injected"] == 1


def test_status_fault_on_the_token_endpoint_and_count(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    sandbox.add_fault(r"/oauth2/v2\.0/token$", status=503, count=2)
    for _ in range(2):
        with pytest.raises(httpx.HTTPStatusError) as failed:
            sandbox_tokens.user_token()
        assert failed.value.response.status_code == 503
        assert failed.value.response.json()["error"] == "temporarily_unavailable"
    assert sandbox_tokens.user_token()  # the fault is used up


def test_dropped_connection_is_retried(fresh_sandbox_state, developer_credential):
    sandbox = fresh_sandbox_state
    client = _resources(sandbox, developer_credential, retry_backoff_factor=0.1)
    sandbox.add_fault(r"/resourceGroups/rg-prod-data$", drop=True)
    since = sandbox.last_seq()
    assert client.resource_groups.get("rg-prod-data").name == "rg-prod-data"
    entries = [e for e in sandbox.requests(kind="arm", since=since) if e["path"].endswith("rg-prod-data")]
    assert [(e["status"], e.get("dropped", False)) for e in entries] == [(None, True), (200, False)]
    # A raw client sees the connection end without any response.
    sandbox.add_fault(r"/resourceGroups/rg-prod-data$", drop=True)
    with pytest.raises(httpx.TransportError):
        httpx_client(sandbox.manifest).get(sandbox.manifest["arm_endpoint"] + "/subscriptions/" + SUB_A
                                           + "/resourceGroups/rg-prod-data", params={"api-version": "2022-09-01"})


def test_latency_fault_delays_then_serves(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    sandbox.add_fault("/subscriptions$", latency_ms=300)
    client = httpx_client(sandbox.manifest)
    started = time.monotonic()
    response = client.get(sandbox.manifest["arm_endpoint"] + "/subscriptions", params={"api-version": "2022-12-01"},
                          headers={"Authorization": f"Bearer {sandbox_tokens.user_token()}"})
    assert response.status_code == 200 and time.monotonic() - started >= 0.3


def test_claims_challenge_is_answered_by_azure_core(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    claims = {"access_token": {"acrs": {"essential": True, "value": "c1"}}}
    sandbox.add_claims_challenge(r"/resourceGroups/rg-prod-network$", claims)
    raw = httpx_client(sandbox.manifest).get(
        sandbox.manifest["arm_endpoint"] + f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-network",
        params={"api-version": "2022-09-01"}, headers={"Authorization": f"Bearer {sandbox_tokens.user_token()}"})
    assert raw.status_code == 401
    header = raw.headers["www-authenticate"]
    assert 'error="insufficient_claims"' in header and "claims=" in header
    credential = UserCredential(sandbox_tokens, "developer")
    client = _resources(sandbox, credential)
    assert client.resource_groups.get("rg-prod-network").name == "rg-prod-network"
    assert any(c["claims"] and "c1" in c["claims"] for c in credential.calls)
    token = sandbox_tokens.user_token(claims=claims)
    assert decode_claims(token)["acrs"] == ["c1"]


def test_reset_restores_the_seed_world(sandbox, sandbox_tokens):
    token = sandbox_tokens.user_token()
    client = httpx_client(sandbox.manifest)
    base = sandbox.manifest["arm_endpoint"] + f"/subscriptions/{SUB_A}/resourceGroups/rg-reset-me"
    headers = {"Authorization": f"Bearer {token}"}
    assert client.put(base, params={"api-version": "2022-09-01"}, headers=headers,
                      json={"location": "eastus"}).status_code == 201
    sandbox.add_fault("never-matches-anything", status=500)
    sandbox.reset()
    assert client.get(base, params={"api-version": "2022-09-01"}, headers=headers).status_code == 404
    assert sandbox.stats()["arm_requests"] == 1  # counters restarted with the request above
    assert sandbox.requests(kind="arm")[0]["path"].endswith("rg-reset-me")


def test_admin_rejects_bad_specs(sandbox):
    from azure_agent_mcp.sandbox import SandboxError

    with pytest.raises(SandboxError, match="regular expression"):
        sandbox.add_fault("([unclosed", status=500)
    with pytest.raises(SandboxError, match="status"):
        sandbox.add_fault("/x", status=200)
    with pytest.raises(SandboxError, match="kind"):
        sandbox.requests(kind="bogus")
    with pytest.raises(SandboxError, match="claims"):
        sandbox.add_claims_challenge("/x", {"id_token": {}})


def test_bad_input_is_answered_and_the_sandbox_keeps_serving(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    client = httpx_client(sandbox.manifest)
    token = sandbox_tokens.user_token()
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    url = sandbox.manifest["arm_endpoint"] + f"/subscriptions/{SUB_A}/resourceGroups/rg-bad-json"
    malformed = client.put(url, params={"api-version": "2022-09-01"}, headers=headers, content=b'{"location": ')
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "InvalidRequestContent"
    unknown = client.get(sandbox.manifest["arm_endpoint"] + "/no/such/route", params={"api-version": "2022-09-01"},
                         headers=headers)
    assert unknown.status_code == 404 and set(unknown.json()["error"]) == {"code", "message"}
    too_big = client.put(url, params={"api-version": "2022-09-01"}, headers=headers,
                         content=b"x" * (4 * 1024 * 1024 + 1))
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "RequestEntityTooLarge"
    form = client.post(f"{sandbox.manifest['authority_host']}/{sandbox.manifest['tenant_id']}/oauth2/v2.0/token",
                       content=b"\xff\xfe\x00garbage", headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 400 and form.json()["error"] == "invalid_request"

    # Raw garbage on the TLS socket, then a half-sent request: the server shrugs both off.
    context = ssl.create_default_context(cafile=sandbox.manifest["ca_bundle"])
    for payload in (b"NOT HTTP AT ALL\r\n\r\n", b"GET /subscriptions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab"):
        with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(payload)
    ok = client.get(sandbox.manifest["arm_endpoint"] + "/subscriptions", params={"api-version": "2022-12-01"},
                    headers=headers)
    assert ok.status_code == 200 and len(ok.json()["value"]) == 2
