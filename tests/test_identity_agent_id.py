"""Entra Agent ID credentials against the sandbox: agent identity, agent user, sidecar, pinning, TTL.

Real MSAL and real azure-mgmt-resource clients over HTTPS; facts are read from the sandbox's
request log (never from mocks).
"""

from __future__ import annotations

import datetime
import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.mgmt.resource.resources import ResourceManagementClient
from conftest import decode_claims

from azure_agent_mcp import USER_AGENT
from azure_agent_mcp.identity import (
    CorrelationPolicy,
    IdentityMismatchError,
    SessionExpiredError,
    TokenRequestError,
    build_credential,
    resolve_session,
    whoami,
)
from azure_agent_mcp.identity.agent_identity import BlueprintAssertion, assertion_from_file
from azure_agent_mcp.identity.errors import CredentialUnavailableError
from azure_agent_mcp.identity.pinning import ConflictingPinsError, InvalidPrincipalError, resolve_pin
from azure_agent_mcp.identity.sidecar import SidecarError, SidecarUrlError, validate_sidecar_url

ARM = "https://management.azure.com/.default"
VAULT = "https://vault.azure.net/.default"
EXCHANGE = "api://AzureADTokenExchange/.default"


def new_session(prefix: str, ttl: str = "8h", clock: Any = None):
    kwargs = {"clock": clock} if clock is not None else {}
    return resolve_session(session_id=f"{prefix}-{uuid.uuid4().hex[:8]}", ttl=ttl, environ={}, **kwargs)


def arm_client(credential: Any, env: Any) -> ResourceManagementClient:
    return ResourceManagementClient(credential, env.default_subscription, base_url=env.arm_endpoint,
                                    credential_scopes=[env.arm_scope], connection_verify=env.ca_bundle,
                                    user_agent=USER_AGENT, per_call_policies=[CorrelationPolicy()])


def ids(sandbox: Any) -> dict[str, str]:
    return sandbox.manifest["agent_identity"]


def strings_in(obj: Any, seen: set[int] | None = None, depth: int = 0) -> list[str]:
    """Every string reachable from ``obj``'s attributes, containers and closures (to look for secrets)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 8:
        return []
    seen.add(id(obj))
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, bytes):
        return [obj.decode("latin-1")]
    found: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += strings_in(key, seen, depth + 1) + strings_in(value, seen, depth + 1)
        return found
    if isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            found += strings_in(value, seen, depth + 1)
        return found
    if callable(obj) and getattr(obj, "__closure__", None):
        for cell in obj.__closure__:
            try:
                found += strings_in(cell.cell_contents, seen, depth + 1)
            except ValueError:
                pass
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict) and not isinstance(obj, type):
        found += strings_in(attributes, seen, depth + 1)
    return found


def test_autonomous_agent_end_to_end_and_cached_per_session(sandbox):
    env = sandbox.environment()
    agent = ids(sandbox)
    session = new_session("agent-auto")
    credential = build_credential("agent-identity", env, session)
    since = sandbox.last_seq()
    client = arm_client(credential, env)
    assert list(client.resource_groups.list())
    for _ in range(100):
        credential.get_token(ARM)
    tokens = sandbox.requests(kind="token", since=since)
    # Two exchanges for (session, ARM): the blueprint's fmi_path exchange, then the agent identity's request.
    assert [(e["client_id"], e["scope"], e["fmi_path"]) for e in tokens] == [
        (agent["blueprint_client_id"], EXCHANGE, agent["agent_identity_id"]),
        (agent["agent_identity_id"], ARM, None)]
    arm = sandbox.requests(kind="arm", since=since)
    assert arm and all(e["status"] == 200 for e in arm)
    claims = arm[0]["token_claims"]
    assert claims["appid"] == agent["agent_identity_id"] and claims["idtyp"] == "app"
    assert "11" in claims["xms_act_fct"].split() and "11" in claims["xms_sub_fct"].split()
    assert claims["xms_par_app_azp"] == agent["blueprint_client_id"]
    # Another resource costs one request (the exchange token is reused); another session starts over.
    credential.get_token(VAULT)
    assert len(sandbox.requests(kind="token", since=since)) == 3
    other = build_credential("agent-identity", env, new_session("agent-auto-2"))
    assert other.get_token(ARM).token != credential.get_token(ARM).token
    assert len(sandbox.requests(kind="token", since=since)) == 5
    described = json.dumps(credential.describe())
    assert agent["blueprint_client_secret"] not in described and "client secret" in described
    assert agent["blueprint_client_secret"] not in repr(credential.provider)
    credential.close()
    other.close()


@pytest.mark.parametrize("by", ["upn", "object_id"])
def test_agent_user_end_to_end(sandbox, by):
    env = sandbox.environment()
    agent = ids(sandbox)
    user = agent["agent_user_upn"] if by == "upn" else agent["agent_user_object_id"]
    credential = build_credential("agent-identity", env, new_session("agent-user"), agent_user=user)
    since = sandbox.last_seq()
    assert list(arm_client(credential, env).resource_groups.list())
    tokens = sandbox.requests(kind="token", since=since)
    assert [e["grant_type"] for e in tokens] == ["client_credentials", "client_credentials", "user_fic"]
    assert tokens[1]["scope"] == EXCHANGE and tokens[2]["agent_user"] == user
    claims = sandbox.requests(kind="arm", since=since)[0]["token_claims"]
    assert claims["upn"] == agent["agent_user_upn"] and claims["idtyp"] == "user"
    assert claims["oid"] == agent["agent_user_object_id"] and claims["appid"] == agent["agent_identity_id"]
    assert "13" in claims["xms_sub_fct"].split()
    info = whoami(credential, env, credential.session)
    assert info["agentic"]["summary"] == "agent user" and info["principal"]["upn"] == agent["agent_user_upn"]
    assert info["credential"]["flow"] == "agent user (user_fic)"
    credential.close()


def _certificate(tmp_path: Path) -> tuple[Path, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orders-agent-blueprint")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    path = tmp_path / "blueprint.pem"
    path.write_text(key_pem + cert_pem, encoding="utf-8")
    return path, cert_pem


def test_blueprint_with_a_certificate(sandbox, tmp_path):
    env = sandbox.environment()
    agent = ids(sandbox)
    path, cert_pem = _certificate(tmp_path)
    credential = build_credential("agent-identity", env, new_session("agent-cert"), blueprint_certificate=str(path))
    with pytest.raises(TokenRequestError, match="700027"):  # not registered yet: the blueprint refuses it
        credential.get_token(ARM)
    sandbox.add_client_certificate(agent["blueprint_client_id"], cert_pem)
    claims = decode_claims(credential.get_token(ARM).token)
    assert claims["appid"] == agent["agent_identity_id"]
    assert credential.describe()["blueprint_credential"] == "certificate"
    with pytest.raises(CredentialUnavailableError, match="one credential"):
        build_credential("agent-identity", env, new_session("agent-two"), blueprint_certificate=str(path),
                         blueprint_client_secret="also")


def test_blueprint_with_a_federated_credential(sandbox, tmp_path):
    """Workload identity federation: a token the blueprint trusts stands in for its secret."""
    from conftest import httpx_client

    env = sandbox.environment()
    manifest = sandbox.manifest
    automation = manifest["service_principals"][0]  # the blueprint's federated credential trusts it

    def managed_identity_token() -> str:
        data = {"grant_type": "client_credentials", "client_id": automation["client_id"],
                "client_secret": automation["client_secret"], "scope": EXCHANGE}
        response = httpx_client(manifest).post(f"{env.authority_host}/{env.tenant_id}/oauth2/v2.0/token", data=data)
        return response.json()["access_token"]

    calls = []

    def assertion() -> str:
        calls.append(1)
        return managed_identity_token()

    credential = build_credential("agent-identity", env, new_session("agent-wif"),
                                  blueprint_assertion=BlueprintAssertion(assertion, "managed identity (test)"))
    assert decode_claims(credential.get_token(ARM).token)["appid"] == ids(sandbox)["agent_identity_id"]
    assert calls == [1] and credential.describe()["blueprint_credential"] == "managed identity (test)"

    token_file = tmp_path / "federated-token"
    token_file.write_text(managed_identity_token(), encoding="utf-8")
    from_file = build_credential("agent-identity", env, new_session("agent-file"),
                                 blueprint_assertion=assertion_from_file(token_file))
    assert decode_claims(from_file.get_token(VAULT).token)["aud"] == "https://vault.azure.net"


def test_pinning_refuses_the_wrong_identity_and_names_both(fresh_sandbox_state):
    sandbox = fresh_sandbox_state
    env = sandbox.environment()
    agent = ids(sandbox)
    sandbox.set_wrong_identity(True)
    unpinned = build_credential("agent-identity", env, new_session("unpinned"))
    since = sandbox.last_seq()
    # Without a pin the mistake is silent: ARM accepts the shared project identity (a Reader too).
    assert list(arm_client(unpinned, env).resource_groups.list())
    assert sandbox.requests(kind="arm", since=since)[0]["token_claims"]["appid"] == agent["project_identity_client_id"]

    pinned = build_credential("agent-identity", env, new_session("pinned"), expect_principal=agent["agent_identity_id"])
    since = sandbox.last_seq()
    with pytest.raises(IdentityMismatchError) as caught:
        pinned.get_token(ARM)
    error = caught.value
    assert error.expected == agent["agent_identity_id"]
    assert error.presented["appid"] == agent["project_identity_client_id"]
    assert error.presented["oid"] == agent["project_identity_object_id"]
    assert agent["project_identity_client_id"] in str(error) and agent["agent_identity_id"] in str(error)
    assert "--expect-principal" in str(error)
    assert error.audit_fields()["identity_mismatch"]["presented"]["appid"] == agent["project_identity_client_id"]
    with pytest.raises(ClientAuthenticationError, match="identity pinning refused"):
        list(arm_client(pinned, env).resource_groups.list())
    assert sandbox.requests(kind="arm", since=since) == []  # fail closed: nothing reached ARM

    info = whoami(pinned, env, pinned.session)
    assert info["pinning"]["match"] is False and info["pinning"]["expected"] == agent["agent_identity_id"]
    assert info["principal"]["appid"] == agent["project_identity_client_id"]
    assert "eyJ" not in json.dumps(info)  # never a token (JWTs start with eyJ)

    sandbox.set_wrong_identity(False)
    right = build_credential("agent-identity", env, new_session("pinned-ok"),
                             expect_principal=agent["agent_identity_id"])
    assert list(arm_client(right, env).resource_groups.list())
    assert whoami(right, env, right.session)["pinning"]["match"] is True
    # The agent user's token is pinned by the agent identity too (its appid), or by the user's object id.
    for pin in (agent["agent_identity_id"], agent["agent_user_object_id"]):
        user = build_credential("agent-identity", env, new_session("pinned-user"), agent_user=agent["agent_user_upn"],
                                expect_principal=pin)
        assert decode_claims(user.get_token(ARM).token)["upn"] == agent["agent_user_upn"]


def test_pins_are_validated_and_must_agree():
    assert resolve_pin(None, None) == (None, None)
    pin = "5A1DB0C5-A9E0-4000-A000-000000000A11"
    assert resolve_pin(pin, None) == (pin.lower(), "--expect-principal")
    assert resolve_pin(None, pin) == (pin.lower(), "policy ExpectedPrincipal")
    assert resolve_pin(pin, pin.lower())[0] == pin.lower()
    with pytest.raises(ConflictingPinsError, match="disagree"):
        resolve_pin(pin, "5a1db0c5-9e0c-4000-a000-000000000c21")
    with pytest.raises(InvalidPrincipalError, match="not an app id or object id"):
        resolve_pin("orders-agent", None)


def test_sidecar_credential_holds_no_secret(sandbox, caplog):
    env = sandbox.environment()
    agent = ids(sandbox)
    caplog.set_level(logging.DEBUG)
    credential = build_credential("sidecar", env, new_session("sidecar"))
    since = sandbox.last_seq()
    assert list(arm_client(credential, env).resource_groups.list())
    for _ in range(20):
        credential.get_token(ARM)
    sidecar = sandbox.requests(kind="sidecar", since=since)
    assert len(sidecar) == 1 and sidecar[0]["agent_identity"] == agent["agent_identity_id"]
    arm = sandbox.requests(kind="arm", since=since)[0]["token_claims"]
    assert arm["appid"] == agent["agent_identity_id"] and arm["xms_par_app_azp"] == agent["blueprint_client_id"]
    token = credential.get_token(ARM).token
    secret = agent["blueprint_client_secret"]
    reachable = strings_in(credential)
    assert not any(secret in text for text in reachable), "the server-side credential reaches the blueprint secret"
    assert not any(agent["blueprint_client_id"] in text for text in reachable)  # it does not even know the blueprint
    assert credential.describe()["holds_credential"] is False
    assert secret not in caplog.text and token not in caplog.text
    # The agent user through the sidecar.
    user = build_credential("sidecar", env, new_session("sidecar-user"), agent_user=agent["agent_user_object_id"])
    assert decode_claims(user.get_token(ARM).token)["oid"] == agent["agent_user_object_id"]


def test_sidecar_problems_are_shown_clearly(sandbox):
    env = sandbox.environment()
    agent = ids(sandbox)
    wrong = build_credential("sidecar", env, new_session("sidecar-bad"),
                             agent_identity_id=agent["project_identity_client_id"])
    with pytest.raises(SidecarError) as caught:
        wrong.get_token(ARM)
    message = str(caught.value)
    assert "HTTP 401 Unauthorized" in message and "AADSTS82001" in message
    assert caught.value.problem["status"] == 401
    with pytest.raises(SidecarError, match="no API configured"):
        wrong.get_token("https://graph.microsoft.com/.default")
    gone = build_credential("sidecar", env, new_session("sidecar-gone"), sidecar_url="http://127.0.0.1:9")
    with pytest.raises(SidecarError, match="could not reach the auth sidecar"):
        gone.get_token(ARM)


def test_sidecar_url_rules():
    assert validate_sidecar_url("http://localhost:5000/") == "http://localhost:5000"
    assert validate_sidecar_url("https://[::1]:8443/sidecar") == "https://[::1]:8443/sidecar"
    with pytest.raises(SidecarUrlError, match="loopback"):
        validate_sidecar_url("http://sidecar.internal:5000")
    with pytest.raises(SidecarUrlError, match="HTTPS"):
        validate_sidecar_url("http://sidecar.internal:5000", allow_remote=True)
    assert validate_sidecar_url("https://sidecar.internal", allow_remote=True) == "https://sidecar.internal"
    with pytest.raises(SidecarUrlError, match="user info"):
        validate_sidecar_url("http://me:pw@localhost:5000")
    with pytest.raises(SidecarUrlError, match="query"):
        validate_sidecar_url("http://localhost:5000/?AgentIdentity=x")
    with pytest.raises(SidecarUrlError, match="not an http"):
        validate_sidecar_url("file:///tmp/sidecar")


def test_sidecar_passes_a_claims_challenge(sandbox):
    env = sandbox.environment()
    credential = build_credential("sidecar", env, new_session("sidecar-cc"))
    plain = credential.get_token_info(ARM)
    challenge = json.dumps({"access_token": {"acrs": {"essential": True, "value": "c1"}}})
    answered = credential.get_token_info(ARM, options={"claims": challenge})
    assert decode_claims(answered.token)["acrs"] == ["c1"] and answered.token != plain.token


def test_agent_tokens_never_outlive_the_session(sandbox):
    env = sandbox.environment()
    now = [1_000_000.0]
    session = new_session("agent-ttl", ttl="10m", clock=lambda: now[0])
    for kind in ("agent-identity", "sidecar"):
        credential = build_credential(kind, env, session, clock=lambda: now[0])
        token = credential.get_token(ARM)
        assert token.expires_on <= session.expires_at  # reported expiry capped at the session's end
        assert decode_claims(token.token)["exp"] > session.expires_at  # though Entra issued it for longer
        since = sandbox.last_seq()
        now[0] = session.expires_at + 1
        with pytest.raises(SessionExpiredError, match="expired"):
            credential.get_token(ARM)
        with pytest.raises(SessionExpiredError):
            credential.get_token_info(VAULT)
        assert sandbox.requests(kind="token", since=since) == []
        assert sandbox.requests(kind="sidecar", since=since) == []
        if kind == "agent-identity":
            assert credential.provider._clients == {}  # MSAL clients and their exchange tokens dropped
        now[0] = 1_000_000.0
        session = new_session("agent-ttl", ttl="10m", clock=lambda: now[0])


def test_agent_identity_options_are_checked(sandbox):
    env = sandbox.environment()
    session = new_session("agent-options")
    with pytest.raises(CredentialUnavailableError, match="neither a user principal name"):
        build_credential("agent-identity", env, session, agent_user="agent-orders")
    with pytest.raises(CredentialUnavailableError, match="must be a GUID"):
        build_credential("agent-identity", env, session, agent_identity_id="orders-agent")
    wrong_secret = build_credential("agent-identity", env, session, blueprint_client_secret="not-the-secret")
    with pytest.raises(TokenRequestError) as caught:
        wrong_secret.get_token(ARM)
    assert "7000215" in str(caught.value) and "not-the-secret" not in str(caught.value)
    assert "fmi_path" in str(caught.value)  # names the leg that failed


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "COPILOT_"))}
    environ["AZURE_AGENT_MCP_STATE_DIR"] = str(tmp_path / "state")
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "azure_agent_mcp", *args], capture_output=True, text=True,
                          env=environ, timeout=120)


def test_cli_flags_whoami_and_pinning(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    agent = ids(sandbox)
    manifest = str(sandbox.manifest_path)
    done = _cli(tmp_path, "whoami", "--json", "--sandbox", manifest, "--credential", "agent-identity",
                "--agent-user", agent["agent_user_upn"], "--expect-principal", agent["agent_identity_id"])
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["agentic"]["summary"] == "agent user" and info["pinning"]["match"] is True
    assert agent["blueprint_client_secret"] not in done.stdout + done.stderr

    # The secret from the environment wins over the manifest's; a wrong one fails without echoing it.
    done = _cli(tmp_path, "whoami", "--sandbox", manifest, "--credential", "agent-identity",
                AZURE_AGENT_MCP_BLUEPRINT_SECRET="env-secret-value")
    assert done.returncode == 1 and "7000215" in done.stderr and "env-secret-value" not in done.stderr

    sandbox.set_wrong_identity(True)
    done = _cli(tmp_path, "whoami", "--sandbox", manifest, "--credential", "agent-identity",
                "--expect-principal", agent["agent_identity_id"])
    assert done.returncode == 1
    assert "MISMATCH" in done.stdout and agent["project_identity_client_id"] in done.stdout
    assert "identity pinning refused" in done.stderr

    done = _cli(tmp_path, "whoami", "--sandbox", manifest, "--credential", "sidecar", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["principal"]["appid"] == agent["project_identity_client_id"]  # switch still on

    assert _cli(tmp_path, "whoami", "--expect-principal", "orders-agent").returncode == 2
    done = _cli(tmp_path, "whoami", "--sandbox", manifest, "--credential", "sandbox", "--agent-user", "x@y.z")
    assert done.returncode == 2 and "--agent-user" in done.stderr
    done = _cli(tmp_path, "whoami", "--credential", "sidecar", "--sidecar-url", "http://10.1.2.3:5000")
    assert done.returncode == 1 and "loopback" in done.stderr


# -- through the MCP server (tools/call -> ARM) ------------------------------------------------------


def _agent_runtime(sandbox: Any, audit_path: Path, **options: Any) -> Any:
    """An in-process server whose sessions act as the agent identity (as `serve --credential agent-identity`)."""
    from azure_agent_mcp.policy import AuditLog, load_policy
    from azure_agent_mcp.server.runtime import AgentRuntime, RuntimeOptions

    env = sandbox.environment()
    return AgentRuntime(env=env, policy=load_policy("read-only"), audit=AuditLog(audit_path),
                        default_session=new_session("mcp-agent"),
                        credential_factory=lambda s: build_credential("agent-identity", env, s, **options),
                        options=RuntimeOptions())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("flow", ["autonomous", "agent user"])
async def test_mcp_tool_call_as_the_agent(sandbox, tmp_path, flow):
    from mcp import Client
    from server_helpers import audit_records, server_for

    agent = ids(sandbox)
    options = {"agent_user": agent["agent_user_upn"]} if flow == "agent user" else {}
    runtime = _agent_runtime(sandbox, tmp_path / "audit.jsonl", **options)
    since = sandbox.last_seq()
    try:
        async with Client(server_for(runtime)) as client:
            groups = await client.call_tool("group_list", {"subscription": sandbox.manifest["subscriptions"][0]["id"]})
            assert not groups.is_error, groups
            who = await client.call_tool("whoami", {})
    finally:
        runtime.close()
    assert who.structured_content["agentic"]["summary"] == ("agent user" if options else
                                                            "agent identity acting autonomously")
    claims = sandbox.requests(kind="arm", since=since)[-1]["token_claims"]
    assert claims["appid"] == agent["agent_identity_id"]
    assert ("13" if options else "11") in claims["xms_sub_fct"].split()
    grants = [e["grant_type"] for e in sandbox.requests(kind="token", since=since)]
    assert grants == (["client_credentials", "client_credentials", "user_fic"] if options else
                      ["client_credentials", "client_credentials"])
    record = next(r for r in audit_records(tmp_path / "audit.jsonl", "tool") if r["tool"] == "group_list")
    assert record["status"] == "ok" and record["principal"]["appid"] == agent["agent_identity_id"]


@pytest.mark.anyio
async def test_mcp_tool_call_refused_by_pinning(fresh_sandbox_state, tmp_path):
    from mcp import Client
    from server_helpers import audit_records, error_of, server_for

    sandbox = fresh_sandbox_state
    agent = ids(sandbox)
    sandbox.set_wrong_identity(True)
    runtime = _agent_runtime(sandbox, tmp_path / "audit.jsonl", expect_principal=agent["agent_identity_id"])
    since = sandbox.last_seq()
    try:
        async with Client(server_for(runtime)) as client:
            result = await client.call_tool("group_list", {"subscription": sandbox.manifest["subscriptions"][0]["id"]})
    finally:
        runtime.close()
    assert result.is_error
    message = error_of(result)["message"]
    assert agent["project_identity_client_id"] in message and agent["agent_identity_id"] in message
    assert sandbox.requests(kind="arm", since=since) == []  # refused before anything reached ARM
    record = next(r for r in audit_records(tmp_path / "audit.jsonl", "tool") if r["tool"] == "group_list")
    assert record["status"] == "error" and record["error_code"]
    assert "eyJ" not in json.dumps(record)
