"""Azure DevOps tokens (``499b84ac-.../.default``) from every credential kind, against the sandbox.

For each kind: the token's audience and principal, the agent session tag where the kind tags, and
the cost: N ``get_token`` calls in one session make the token requests of one (counted in the
sandbox's request journal), and ARM and Azure DevOps tokens never stand in for each other. Real
MSAL and azure-identity over HTTPS; the facts are read from the tokens and the journal.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from conftest import decode_claims

from azure_agent_mcp.identity import build_credential, resolve_session
from azure_agent_mcp.identity.credential import AgentCredential
from azure_agent_mcp.identity.errors import CredentialUnavailableError

DEVOPS_APP = "499b84ac-1321-427f-aa17-267ca6975798"
DEVOPS = f"{DEVOPS_APP}/.default"
ARM = "https://management.azure.com/.default"
EXCHANGE = "api://AzureADTokenExchange/.default"
CALLS = 100


def new_session(prefix: str):
    return resolve_session(session_id=f"{prefix}-{uuid.uuid4().hex[:8]}", ttl="8h", environ={})


def ids(sandbox: Any) -> dict[str, str]:
    return sandbox.manifest["agent_identity"]


def person(sandbox: Any, name: str) -> dict[str, Any]:
    return next(u for u in sandbox.manifest["users"] if u["name"] == name)


def calls(credential: Any, n: int = CALLS, scope: str = DEVOPS) -> set[str]:
    """``n`` get_token calls; the distinct token strings they returned."""
    return {credential.get_token(scope).token for _ in range(n)}


def test_the_environment_names_the_devops_scope(sandbox):
    env = sandbox.environment()
    assert env.devops_scope == DEVOPS and env.devops_audience == DEVOPS_APP
    assert env.devops_endpoint == sandbox.manifest["devops_endpoint"]


# -- tagged user credentials ------------------------------------------------------------------------


def _assert_tagged_request(entry: dict[str, Any], session_id: str) -> None:
    assert entry["client_session_query"] == entry["client_session_body"] == session_id
    assert json.loads(entry["claims"])["access_token"]["xms_cli_sid"]["values"] == [session_id]


def test_tagged_user_devops_token_carries_the_session_like_arm(sandbox):
    env = sandbox.environment()
    build_credential("sandbox", env, new_session("warm-up")).get_token(ARM)  # the sign-in, not measured
    session = new_session("devops-user")
    credential = build_credential("sandbox", env, session)
    since = sandbox.last_seq()
    tokens = calls(credential)
    assert len(tokens) == 1
    requests = sandbox.requests(kind="token", since=since)
    assert len(requests) == 1, "one token request per session for 100 calls"
    assert DEVOPS in requests[0]["scope"].split()
    _assert_tagged_request(requests[0], session.id)
    claims = decode_claims(tokens.pop())
    developer = person(sandbox, "developer")
    assert claims["aud"] == DEVOPS_APP and claims["oid"] == developer["object_id"] and claims["idtyp"] == "user"
    assert claims["xms_cli_ses"] == claims["xms_cli_sid"] == session.id
    assert credential.tagged and credential.describe()["kind"] == "sandbox"


def test_arm_and_devops_tokens_never_mix_in_either_cache(sandbox):
    env = sandbox.environment()
    session = new_session("devops-mix")
    credential = build_credential("sandbox", env, session)
    since = sandbox.last_seq()
    seen: dict[str, set[str]] = {ARM: set(), DEVOPS: set()}
    for _ in range(50):
        for scope in (DEVOPS, ARM):
            seen[scope].add(credential.get_token(scope).token)
    assert len(seen[ARM]) == len(seen[DEVOPS]) == 1 and seen[ARM] != seen[DEVOPS]
    assert decode_claims(next(iter(seen[ARM])))["aud"] == "https://management.azure.com/"
    assert decode_claims(next(iter(seen[DEVOPS])))["aud"] == DEVOPS_APP
    assert len(sandbox.requests(kind="token", since=since)) == 2  # one per audience
    # A new AgentCredential for the same session (a restarted cache in front of the same MSAL cache)
    # finds each audience's token in the session's MSAL partition, and not the other's.
    again = build_credential("sandbox", env, session)
    since = sandbox.last_seq()
    assert again.get_token(DEVOPS).token in seen[DEVOPS] and again.get_token(ARM).token in seen[ARM]
    assert sandbox.requests(kind="token", since=since) == []
    # Another session gets its own DevOps token, tagged with its own id.
    other = new_session("devops-mix-other")
    token = build_credential("sandbox", env, other).get_token(DEVOPS).token
    assert token not in seen[DEVOPS] and decode_claims(token)["xms_cli_sid"] == other.id


def test_a_devops_claims_challenge_keeps_the_session_tag(sandbox):
    """A challenge (conditional access, say) for Azure DevOps is merged with the agent claims, never replacing them."""
    env = sandbox.environment()
    session = new_session("devops-challenge")
    credential = build_credential("sandbox", env, session)
    plain = credential.get_token(DEVOPS).token
    challenge = json.dumps({"access_token": {"acrs": {"essential": True, "value": "c1"}}})
    since = sandbox.last_seq()
    answered = credential.get_token_info(DEVOPS, options={"claims": challenge}).token
    (request,) = sandbox.requests(kind="token", since=since)
    asked = json.loads(request["claims"])["access_token"]
    assert asked["xms_cli_sid"]["values"] == [session.id] and asked["acrs"]["value"] == "c1"
    claims = decode_claims(answered)
    assert answered != plain and claims["aud"] == DEVOPS_APP
    assert claims["acrs"] == ["c1"] and claims["xms_cli_sid"] == session.id
    assert credential.get_token(DEVOPS).token == answered  # the answer replaced the plain entry
    assert decode_claims(credential.get_token(ARM).token)["aud"] == "https://management.azure.com/"


def test_cached_msal_user_from_the_servers_own_sign_in(sandbox, tmp_path, monkeypatch):
    """``--credential msal``: the account `azure-agent-mcp login` left in the persisted cache."""
    from azure_agent_mcp.identity.msal_provider import device_code_login, persisted_apps

    monkeypatch.setenv("AZURE_AGENT_MCP_PLAINTEXT_CACHE", "1")
    env = sandbox.environment()
    cache = tmp_path / "msal_cache.bin"
    login = new_session("login")
    account = device_code_login(persisted_apps(env, cache_path=cache), login, (ARM,), tenant=env.tenant_id,
                                show=lambda _message: None, timeout=30)
    assert account["object_id"] == person(sandbox, "developer")["object_id"]
    session = new_session("devops-msal")
    credential = build_credential("msal", env, session, cache_path=cache)
    since = sandbox.last_seq()
    tokens = calls(credential)
    requests = sandbox.requests(kind="token", since=since)
    assert len(tokens) == 1 and len(requests) == 1 and requests[0]["grant_type"] == "refresh_token"
    _assert_tagged_request(requests[0], session.id)
    claims = decode_claims(tokens.pop())
    assert claims["aud"] == DEVOPS_APP and claims["xms_cli_sid"] == session.id
    assert claims["oid"] == account["object_id"]
    assert credential.kind == "msal"


# -- on-behalf-of (the team server) --------------------------------------------------------------------


def _obo_credential(sandbox: Any, assertion: str, session: Any) -> AgentCredential:
    from auth_helpers import server_app

    from azure_agent_mcp.identity.agent_identity import BlueprintSecret
    from azure_agent_mcp.identity.obo import OboProvider, ServerApp

    env = sandbox.environment()
    app = ServerApp(authority_host=env.authority_host, tenant_id=env.tenant_id,
                    client_id=server_app(sandbox)["client_id"],
                    credential=BlueprintSecret(server_app(sandbox)["client_secret"]), ca_bundle=env.ca_bundle)
    return AgentCredential(OboProvider(app, session, lambda: assertion), session)


def test_on_behalf_of_devops_token_is_the_callers_and_tagged(sandbox):
    from auth_helpers import server_app, sign_in

    caller = sign_in(sandbox, "developer")["access_token"]
    session = new_session("devops-obo")
    credential = _obo_credential(sandbox, caller, session)
    since = sandbox.last_seq()
    tokens = calls(credential)
    requests = sandbox.requests(kind="token", since=since)
    assert len(tokens) == 1 and len(requests) == 1
    exchange = requests[0]
    assert exchange["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert exchange["requested_token_use"] == "on_behalf_of" and DEVOPS in exchange["scope"].split()
    _assert_tagged_request(exchange, session.id)
    claims = decode_claims(tokens.pop())
    assert claims["aud"] == DEVOPS_APP and claims["oid"] == person(sandbox, "developer")["object_id"]
    assert claims["appid"] == server_app(sandbox)["client_id"] and claims["xms_cli_sid"] == session.id
    arm = credential.get_token(ARM).token
    assert decode_claims(arm)["aud"] == "https://management.azure.com/"
    assert len(sandbox.requests(kind="token", since=since)) == 2


def test_on_behalf_of_without_devops_consent_says_how_to_consent(fresh_sandbox_state):
    """The newcomer never consented: the refusal names Azure DevOps and the consent URL, which works."""
    import httpx
    from auth_helpers import sign_in

    from azure_agent_mcp.identity.obo import ConsentRequiredError

    sandbox = fresh_sandbox_state
    newcomer = person(sandbox, "newcomer")
    caller = sign_in(sandbox, "newcomer")["access_token"]
    credential = _obo_credential(sandbox, caller, new_session("devops-consent"))
    with pytest.raises(ConsentRequiredError) as caught:
        credential.get_token(DEVOPS)
    assert DEVOPS_APP in str(caught.value) and "65001" in str(caught.value)
    assert f"scope={DEVOPS_APP}/user_impersonation" in caught.value.consent_url
    # The developer's consent for Azure DevOps is seeded (the sandbox's mcp_world); the newcomer's is not.
    consents = {(c["user"], c["resource"]) for c in sandbox.consents()}
    assert (person(sandbox, "developer")["upn"], DEVOPS_APP) in consents
    assert (newcomer["upn"], DEVOPS_APP) not in consents
    # Consenting at the URL the error gave (the sandbox's authorize endpoint) lets the exchange through.
    ssl_context = __import__("ssl").create_default_context(cafile=sandbox.manifest["ca_bundle"])
    page = httpx.get(caught.value.consent_url + f"&prompt=consent&login_hint={newcomer['upn']}", verify=ssl_context,
                     timeout=30)
    assert page.status_code == 200, page.text
    # (a new server app client: MSAL holds a refused request's answer for a while, by design)
    claims = decode_claims(_obo_credential(sandbox, caller, new_session("devops-consented")).get_token(DEVOPS).token)
    assert claims["aud"] == DEVOPS_APP and claims["oid"] == newcomer["object_id"]


# -- Entra Agent ID: the agent identity, autonomous and as its agent user --------------------------------


def test_agent_identity_autonomous_devops_token(sandbox):
    env = sandbox.environment()
    agent = ids(sandbox)
    credential = build_credential("agent-identity", env, new_session("devops-agent"))
    since = sandbox.last_seq()
    tokens = calls(credential)
    requests = sandbox.requests(kind="token", since=since)
    assert len(tokens) == 1
    assert [(e["client_id"], e["scope"], e["fmi_path"]) for e in requests] == [
        (agent["blueprint_client_id"], EXCHANGE, agent["agent_identity_id"]),
        (agent["agent_identity_id"], DEVOPS, None)]
    claims = decode_claims(tokens.pop())
    assert claims["aud"] == DEVOPS_APP and claims["idtyp"] == "app"
    assert claims["oid"] == claims["appid"] == agent["agent_identity_id"]
    assert "11" in claims["xms_sub_fct"].split() and claims["xms_par_app_azp"] == agent["blueprint_client_id"]
    assert not credential.tagged
    # ARM next: the blueprint's exchange token is reused, one more request, an ARM token.
    assert decode_claims(credential.get_token(ARM).token)["aud"] == "https://management.azure.com/"
    assert len(sandbox.requests(kind="token", since=since)) == 3
    credential.close()


@pytest.mark.parametrize("by", ["upn", "object_id"])
def test_agent_user_devops_token_through_user_fic(sandbox, by):
    env = sandbox.environment()
    agent = ids(sandbox)
    user = agent["agent_user_upn"] if by == "upn" else agent["agent_user_object_id"]
    credential = build_credential("agent-identity", env, new_session("devops-agent-user"), agent_user=user)
    since = sandbox.last_seq()
    tokens = calls(credential)
    requests = sandbox.requests(kind="token", since=since)
    assert len(tokens) == 1
    assert [e["grant_type"] for e in requests] == ["client_credentials", "client_credentials", "user_fic"]
    assert requests[1]["scope"] == EXCHANGE
    assert DEVOPS in requests[2]["scope"].split() and requests[2]["agent_user"] == user
    claims = decode_claims(tokens.pop())
    assert claims["aud"] == DEVOPS_APP and claims["idtyp"] == "user"
    assert claims["oid"] == agent["agent_user_object_id"] and claims["upn"] == agent["agent_user_upn"]
    assert claims["appid"] == agent["agent_identity_id"] and "13" in claims["xms_sub_fct"].split()
    # ARM next: both exchange tokens are reused; only the user_fic grant for ARM is new.
    assert decode_claims(credential.get_token(ARM).token)["oid"] == agent["agent_user_object_id"]
    assert [e["grant_type"] for e in sandbox.requests(kind="token", since=since)][3:] == ["user_fic"]
    credential.close()


# -- the auth sidecar (the server holds no credential) -----------------------------------------------------


@pytest.mark.parametrize("by", ["AgentUsername", "AgentUserId", None])
def test_sidecar_devops_token(sandbox, by):
    env = sandbox.environment()
    agent = ids(sandbox)
    user = {"AgentUsername": agent["agent_user_upn"], "AgentUserId": agent["agent_user_object_id"]}.get(by or "")
    options = {"agent_user": user} if user else {}
    credential = build_credential("sidecar", env, new_session("devops-sidecar"), **options)
    since = sandbox.last_seq()
    tokens = calls(credential)
    asked = sandbox.requests(kind="sidecar", since=since)
    assert len(tokens) == 1 and len(asked) == 1, "one sidecar request per session for 100 calls"
    assert asked[0]["path"].endswith("/AuthorizationHeaderUnauthenticated/devops") and asked[0]["status"] == 200
    assert asked[0]["query"]["AgentIdentity"] == agent["agent_identity_id"]
    for name in ("AgentUsername", "AgentUserId"):
        assert (asked[0]["query"].get(name) == user) if name == by else name not in asked[0]["query"]
    claims = decode_claims(tokens.pop())
    assert claims["aud"] == DEVOPS_APP and claims["appid"] == agent["agent_identity_id"]
    if user:
        assert claims["oid"] == agent["agent_user_object_id"] and claims["idtyp"] == "user"
        assert "13" in claims["xms_sub_fct"].split()
    else:
        assert claims["oid"] == agent["agent_identity_id"] and claims["idtyp"] == "app"
    # ARM in the same session: its own sidecar request (API 'arm'), its own token.
    arm = credential.get_token(ARM).token
    assert decode_claims(arm)["aud"] == "https://management.azure.com/" and arm != credential.get_token(DEVOPS).token
    assert [e["api_name"] for e in sandbox.requests(kind="sidecar", since=since)] == ["devops", "arm"]
    credential.close()


def test_sidecar_agent_user_needs_the_agent_identity(sandbox):
    """Without AgentIdentity the sidecar ignores the agent user: refuse to start rather than act as the blueprint."""
    from azure_agent_mcp.environment import public_cloud
    from azure_agent_mcp.identity.sidecar import sidecar_provider

    public = public_cloud()
    with pytest.raises(CredentialUnavailableError, match="needs --agent-identity-id"):
        sidecar_provider(public, sidecar_url="http://localhost:5000", agent_user="agent@contoso.com")
    provider = sidecar_provider(public, sidecar_url="http://localhost:5000")
    assert provider.api_names[public.devops_scope] == "devops"


# -- workload identities (not tagged) -------------------------------------------------------------------


def test_service_principal_devops_token(sandbox):
    env = sandbox.environment()
    sp = sandbox.manifest["service_principals"][0]
    credential = build_credential("service-principal", env, new_session("devops-sp"), client_id=sp["client_id"],
                                  client_secret=sp["client_secret"])
    since = sandbox.last_seq()
    tokens = calls(credential)
    requests = sandbox.requests(kind="token", since=since)
    assert len(tokens) == 1 and [(e["grant_type"], e["scope"]) for e in requests] == [("client_credentials", DEVOPS)]
    claims = decode_claims(tokens.pop())
    assert claims["aud"] == DEVOPS_APP and claims["appid"] == sp["client_id"] and claims["idtyp"] == "app"
    assert not credential.tagged and "xms_cli_sid" not in claims


def test_no_devops_token_reaches_logs_output_descriptions_or_the_journal(sandbox, caplog, capsys):
    import logging

    caplog.set_level(logging.DEBUG)
    env = sandbox.environment()
    agent = ids(sandbox)
    since = sandbox.last_seq()
    kinds = [("sandbox", {}), ("agent-identity", {}), ("agent-identity", {"agent_user": agent["agent_user_upn"]}),
             ("sidecar", {}), ("sidecar", {"agent_user": agent["agent_user_object_id"]})]
    tokens, described = [], []
    for kind, options in kinds:
        credential = build_credential(kind, env, new_session("devops-secret"), **options)
        tokens.append(credential.get_token(DEVOPS).token)
        described.append(json.dumps(credential.describe()) + repr(credential.provider))
        credential.close()
    captured = capsys.readouterr()
    journal = json.dumps(sandbox.requests(since=since))
    for token in tokens:
        signature = token.rsplit(".", 1)[-1]
        for place, text in (("log", caplog.text), ("stdout", captured.out), ("stderr", captured.err),
                            ("journal", journal), ("describe", "".join(described))):
            assert token not in text and signature not in text, f"a DevOps token in the {place}"
