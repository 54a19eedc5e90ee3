"""Tagged credentials against the sandbox, with real SDK clients over HTTPS; facts read from its request log."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
from azure.mgmt.resource.resources import ResourceManagementClient

from azure_agent_mcp import USER_AGENT, __version__
from azure_agent_mcp.callcontext import call_scope
from azure_agent_mcp.identity import CorrelationPolicy, SessionExpiredError, build_credential, resolve_session, whoami
from azure_agent_mcp.identity.claims import unverified_jwt_claims
from azure_agent_mcp.identity.msal_provider import sandbox_apps

ARM = "https://management.azure.com/.default"
VAULT = "https://vault.azure.net/.default"


def new_session(prefix: str, ttl: str = "8h"):
    return resolve_session(session_id=f"{prefix}-{uuid.uuid4().hex[:8]}", ttl=ttl, environ={})


def arm_client(credential: Any, env: Any) -> ResourceManagementClient:
    return ResourceManagementClient(
        credential,
        env.default_subscription,
        base_url=env.arm_endpoint,
        credential_scopes=[env.arm_scope],
        connection_verify=env.ca_bundle,
        user_agent=USER_AGENT,
        per_call_policies=[CorrelationPolicy()],
    )


def token_requests(sandbox: Any, since: int, session_id: str | None = None) -> list[dict[str, Any]]:
    entries = sandbox.requests(kind="token", since=since)
    if session_id is None:
        return entries
    return [e for e in entries if session_id in (e.get("client_session_body"), e.get("client_session_query"))]


def test_hundred_arm_calls_make_one_token_request_with_correlation_and_user_agent(sandbox):
    env = sandbox.environment()
    session = new_session("arm100")
    credential = build_credential("sandbox", env, session)
    since = sandbox.last_seq()
    correlation_ids = []
    for i in range(100):
        # A new client every 10 calls: the credential's cache, not only azure-core's, is exercised.
        if i % 10 == 0:
            client = arm_client(credential, env)
        with call_scope(session_id=session.id, tool="group_list") as call:
            correlation_ids.append(call.correlation_id)
            assert list(client.resource_groups.list())
    vault_token = credential.get_token(VAULT)  # another resource: its own (single) request

    tokens = token_requests(sandbox, since, session.id)
    assert len(tokens) == 2, [t.get("scope") for t in tokens]
    assert all(t["client_session_query"] == t["client_session_body"] == session.id for t in tokens)
    assert all(json.loads(t["claims"])["access_token"]["xms_cli_sid"] == {"values": [session.id]} for t in tokens)
    assert unverified_jwt_claims(vault_token.token)["aud"] == "https://vault.azure.net"

    arm = sandbox.requests(kind="arm", since=since)
    assert len(arm) == 100
    assert [e["correlation_id"] for e in arm] == correlation_ids
    assert len(set(correlation_ids)) == 100
    assert all(f"azure-agent-mcp/{__version__}" in e["user_agent"] for e in arm)
    assert {e["token_session"] for e in arm} == {session.id}
    assert {e["token_claims"]["xms_cli_sid"] for e in arm} == {session.id}


def test_correlation_id_outside_a_call_is_still_set(sandbox):
    env = sandbox.environment()
    credential = build_credential("sandbox", env, new_session("nocall"))
    since = sandbox.last_seq()
    client = arm_client(credential, env)
    list(client.resource_groups.list())
    list(client.resource_groups.list())
    ids = [e["correlation_id"] for e in sandbox.requests(kind="arm", since=since)]
    assert len(ids) == 2 and all(ids) and ids[0] != ids[1]


def test_two_sessions_two_tokens_each_carrying_its_own_session(sandbox):
    env = sandbox.environment()
    a, b = new_session("sess-a"), new_session("sess-b")
    cred_a, cred_b = build_credential("sandbox", env, a), build_credential("sandbox", env, b)
    since = sandbox.last_seq()
    for _ in range(50):
        token_a = cred_a.get_token(ARM).token
        token_b = cred_b.get_token(ARM).token
    claims_a, claims_b = unverified_jwt_claims(token_a), unverified_jwt_claims(token_b)
    assert claims_a["uti"] != claims_b["uti"]
    assert (claims_a["xms_cli_ses"], claims_a["xms_cli_sid"]) == (a.id, a.id)
    assert (claims_b["xms_cli_ses"], claims_b["xms_cli_sid"]) == (b.id, b.id)
    assert len(token_requests(sandbox, since, a.id)) == 1
    assert len(token_requests(sandbox, since, b.id)) == 1
    assert len(token_requests(sandbox, since)) == 2


def test_session_b_never_receives_session_a_token_from_msal(sandbox):
    """Two credentials sharing one MSAL cache: B's first lookup must miss A's cached token."""
    env = sandbox.environment()
    a = new_session("part-a")
    token_a = build_credential("sandbox", env, a).get_token(ARM).token
    b = new_session("part-b")
    token_b = build_credential("sandbox", env, b).get_token(ARM).token
    assert token_a != token_b
    assert unverified_jwt_claims(token_b)["xms_cli_ses"] == b.id


def test_earlier_claims_profile(sandbox):
    env = sandbox.environment()
    session = new_session("earlier")
    since = sandbox.last_seq()
    token = build_credential("sandbox", env, session, claims_profile="xms_agent_session").get_token(ARM).token
    claims = unverified_jwt_claims(token)
    assert claims["xms_agent_session"] == session.id and "xms_cli_sid" not in claims
    (request,) = token_requests(sandbox, since, session.id)
    assert json.loads(request["claims"]) == {"access_token": {"xms_agent_session": {"essential": True, "value": session.id}}}


def _msal_app_and_account(env: Any) -> tuple[Any, dict[str, Any]]:
    app = sandbox_apps(env).app_for(None)
    upn = next(u["upn"] for u in env.manifest["users"] if u["name"] == "developer")
    (account,) = app.get_accounts(username=upn)
    return app, account


def test_plain_msal_lookup_after_tagged_gets_an_untagged_token(sandbox):
    env = sandbox.environment()
    session = new_session("tag-first")
    tagged = build_credential("sandbox", env, session).get_token(ARM).token
    app, account = _msal_app_and_account(env)
    since = sandbox.last_seq()
    plain = app.acquire_token_silent([ARM], account)
    assert plain and plain["access_token"] != tagged
    plain_claims = unverified_jwt_claims(plain["access_token"])
    assert not {"xms_cli_ses", "xms_cli_sid", "xms_agent_session"} & set(plain_claims)
    (request,) = token_requests(sandbox, since)
    assert request["client_session_body"] is None and request["client_session_query"] is None
    assert not request["claims"] or "xms_cli_sid" not in request["claims"]
    # and the plain token is now cached: a second plain lookup is served without a request
    since = sandbox.last_seq()
    assert app.acquire_token_silent([ARM], account)["access_token"] == plain["access_token"]
    assert token_requests(sandbox, since) == []


def test_tagged_lookup_after_plain_gets_a_tagged_token(sandbox):
    env = sandbox.environment()
    build_credential("sandbox", env, new_session("warm")).get_token(ARM)  # an account in the cache
    app, account = _msal_app_and_account(env)
    plain = app.acquire_token_silent([ARM], account, force_refresh=True)["access_token"]
    assert "xms_cli_ses" not in unverified_jwt_claims(plain)
    session = new_session("plain-first")
    since = sandbox.last_seq()
    tagged = build_credential("sandbox", env, session).get_token(ARM).token
    assert tagged != plain
    claims = unverified_jwt_claims(tagged)
    assert claims["xms_cli_ses"] == session.id and claims["xms_cli_sid"] == session.id
    assert len(token_requests(sandbox, since, session.id)) == 1


def test_tagged_tokens_are_in_their_own_msal_partition(sandbox):
    env = sandbox.environment()
    session = new_session("ext-key")
    build_credential("sandbox", env, session).get_token(ARM)
    cache = sandbox_apps(env).token_cache
    entries = _cached_access_tokens(cache)
    secrets = {e["secret"]: e for e in entries}
    ours = [e for s, e in secrets.items() if unverified_jwt_claims(s).get("xms_cli_ses") == session.id]
    plain = [e for s, e in secrets.items() if "xms_cli_ses" not in unverified_jwt_claims(s)]
    assert len(ours) == 1 and ours[0].get("ext_cache_key")
    assert all(not e.get("ext_cache_key") for e in plain)


def test_fifty_concurrent_calls_make_one_token_request(sandbox):
    env = sandbox.environment()
    session = new_session("burst")
    credential = build_credential("sandbox", env, session)
    barrier = threading.Barrier(50)
    tokens: list[str] = []
    errors: list[BaseException] = []
    since = sandbox.last_seq()

    def call() -> None:
        try:
            barrier.wait(10)
            tokens.append(credential.get_token(ARM).token)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(tokens) == 50 and len(set(tokens)) == 1
    assert len(token_requests(sandbox, since, session.id)) == 1


def test_claims_challenge_is_answered_once(sandbox):
    env = sandbox.environment()
    session = new_session("challenge")
    credential = build_credential("sandbox", env, session)
    path = f"/subscriptions/{env.default_subscription}/resourcegroups$"
    credential.get_token(ARM)  # a cached token without the claim the resource will ask for
    since = sandbox.last_seq()
    sandbox.add_claims_challenge(path, {"access_token": {"acrs": {"essential": True, "value": "c1"}}})
    try:
        groups = list(arm_client(credential, env).resource_groups.list())
        assert groups
        arm = [e for e in sandbox.requests(kind="arm", since=since) if e["path"].endswith("/resourcegroups")]
        assert [e["status"] for e in arm] == [401, 200], "one challenge, one retry"
        tokens = token_requests(sandbox, since, session.id)
        assert len(tokens) == 1, "one extra token request"
        wire = json.loads(tokens[0]["claims"])["access_token"]
        assert wire["acrs"] == {"essential": True, "value": "c1"}
        assert wire["xms_cli_sid"] == {"values": [session.id]}, "the challenge is merged with the agent claims"
        assert arm[1]["token_claims"]["xms_cli_sid"] == session.id
        assert arm[0]["correlation_id"] == arm[1]["correlation_id"]

        # Another client (its own azure-core policy) gets the challenge's answer from our cache.
        since = sandbox.last_seq()
        assert list(arm_client(credential, env).resource_groups.list())
        assert [e["status"] for e in sandbox.requests(kind="arm", since=since)] == [200]
        assert token_requests(sandbox, since, session.id) == []
    finally:
        sandbox.clear_claims_challenges()


def test_unsatisfiable_challenge_is_retried_exactly_once(sandbox):
    from azure.core.exceptions import HttpResponseError

    env = sandbox.environment()
    session = new_session("never")
    credential = build_credential("sandbox", env, session)
    path = f"/subscriptions/{env.default_subscription}/resourcegroups$"
    credential.get_token(ARM)
    since = sandbox.last_seq()
    sandbox.add_claims_challenge(path, {"access_token": {"xms_never_issued": {"essential": True, "value": "x"}}})
    try:
        with pytest.raises(HttpResponseError) as caught:
            list(arm_client(credential, env).resource_groups.list())
        assert caught.value.status_code == 401
        arm = sandbox.requests(kind="arm", since=since)
        assert [e["status"] for e in arm] == [401, 401], "the policy retries once, then gives up"
        assert len(token_requests(sandbox, since, session.id)) == 1
    finally:
        sandbox.clear_claims_challenges()


def test_expired_session_refuses_explains_and_never_uses_its_token(sandbox):
    env = sandbox.environment()
    session = new_session("short", ttl="2s")
    credential = build_credential("sandbox", env, session)
    client = arm_client(credential, env)
    assert list(client.resource_groups.list())
    info = credential.get_token_info(ARM)
    assert info.expires_on <= session.expires_at < time.time() + 3
    time.sleep(max(0.0, session.expires_at - time.time()) + 0.2)
    since = sandbox.last_seq()
    with pytest.raises(SessionExpiredError) as caught:
        list(client.resource_groups.list())
    assert "expired at" in str(caught.value) and "--session-ttl" in str(caught.value)
    with pytest.raises(SessionExpiredError):
        credential.get_token(ARM)
    assert sandbox.requests(since=since) == [], "nothing is sent: no ARM call with the old token, no new token"
    # the session's tokens are gone from the shared MSAL cache too
    cache = sandbox_apps(env).token_cache
    left = [e for e in _cached_access_tokens(cache)
            if unverified_jwt_claims(e["secret"]).get("xms_cli_ses") == session.id]
    assert left == []


def test_whoami_describes_without_the_token(sandbox):
    env = sandbox.environment()
    session = new_session("who")
    credential = build_credential("sandbox", env, session)
    info = whoami(credential, env, session)
    text = json.dumps(info)
    assert credential.get_token(ARM).token not in text and "eyJ" not in text
    assert info["session"]["id"] == session.id and info["session"]["origin"] == "flag"
    assert info["credential"]["kind"] == "sandbox" and info["tagged"] is True
    assert info["principal"]["upn"].startswith("developer@") and info["principal"]["idtyp"] == "user"
    assert info["agent_markers"] == {"xms_cli_ses": session.id, "xms_cli_sid": session.id}
    assert info["session_in_token"] is True and "note" not in info


def test_service_principal_is_untagged_and_whoami_says_so(sandbox):
    env = sandbox.environment()
    sp = env.manifest["service_principals"][0]
    session = new_session("sp")
    credential = build_credential(
        "service-principal", env, session, client_id=sp["client_id"], client_secret=sp["client_secret"]
    )
    since = sandbox.last_seq()
    assert list(arm_client(credential, env).resource_groups.list()) is not None
    info = whoami(credential, env, session)
    assert credential.tagged is False and info["tagged"] is False
    assert info["agent_markers"] == {} and info["note"] == "workload identity: tokens carry no agent-session tag"
    assert info["principal"]["appid"] == sp["client_id"] and info["principal"]["idtyp"] == "app"
    tokens = token_requests(sandbox, since)
    assert tokens and all(t["grant_type"] == "client_credentials" and not t["client_session_body"] for t in tokens)


def _cached_access_tokens(cache: Any) -> list[dict[str, Any]]:
    """Every access token entry in the cache, read through MSAL's public serialize()."""
    list(cache.search(cache.CredentialType.ACCOUNT))  # a persisted cache loads its file on a search
    return list(json.loads(cache.serialize()).get("AccessToken", {}).values())


def _sessions_of(entries: list[dict[str, Any]]) -> list[str | None]:
    return sorted((unverified_jwt_claims(e["secret"]).get("xms_cli_ses") or "") for e in entries)


def test_forgetting_a_session_removes_only_that_sessions_tokens(sandbox):
    env = sandbox.environment()
    a, b = new_session("forget-a"), new_session("forget-b")
    cred_a, cred_b = build_credential("sandbox", env, a), build_credential("sandbox", env, b)
    for credential in (cred_a, cred_b):
        credential.get_token(ARM)
        credential.get_token(VAULT)
    app, account = _msal_app_and_account(env)
    plain = app.acquire_token_silent([ARM], account)["access_token"]
    cache = sandbox_apps(env).token_cache
    before = _cached_access_tokens(cache)
    assert _sessions_of(before).count(a.id) == 2 and _sessions_of(before).count(b.id) == 2

    cred_a.provider.forget_session()

    after = _cached_access_tokens(cache)
    assert a.id not in _sessions_of(after), "session A's partition is empty"
    assert _sessions_of(after).count(b.id) == 2, "session B keeps both its tokens"
    assert plain in {e["secret"] for e in after}, "the untagged token stays"
    assert json.loads(cache.serialize()).get("RefreshToken"), "the shared refresh token stays"
    assert len(after) == len(before) - 2
    cred_a.clear(), cred_b.clear()
    since = sandbox.last_seq()
    cred_b.get_token(ARM)
    assert token_requests(sandbox, since) == [], "B is still served from MSAL's cache"
    assert unverified_jwt_claims(cred_a.get_token(ARM).token)["xms_cli_ses"] == a.id
    (request,) = token_requests(sandbox, since)
    assert request["grant_type"] == "refresh_token" and request["client_session_body"] == a.id


def test_a_session_reused_from_a_persisted_cache_is_forgotten_by_the_next_process(sandbox, tmp_path, monkeypatch):
    """The process that forgets need not be the one that stored: a lookup teaches it the partition."""
    from azure_agent_mcp.identity.msal_provider import (
        MsalApps, MsalUserProvider, device_code_login, open_persisted_cache,
    )

    monkeypatch.setenv("AZURE_AGENT_MCP_PLAINTEXT_CACHE", "1")
    env = sandbox.environment()
    location = tmp_path / "msal_cache.bin"
    client_id = env.manifest.get("public_client_id")

    def process() -> MsalApps:  # a fresh MsalApps over the file, as a new process would build
        return MsalApps(client_id, env.authority_host, verify=env.connection_verify,
                        token_cache=open_persisted_cache(location)[0], cache_location=location,
                        default_tenant=env.tenant_id)

    first = process()
    device_code_login(first, new_session("login"), (ARM,), tenant=env.tenant_id, show=lambda _m: None, timeout=30)
    session, other = new_session("persisted"), new_session("persisted-other")
    stored = MsalUserProvider("msal", first, session).acquire((ARM,), tenant_id=None, claims=None).token
    MsalUserProvider("msal", first, other).acquire((ARM,), tenant_id=None, claims=None)

    second = process()
    since = sandbox.last_seq()
    provider = MsalUserProvider("msal", second, session)
    assert provider.acquire((ARM,), tenant_id=None, claims=None).token == stored
    assert token_requests(sandbox, since) == [], "served from the file"
    provider.forget_session()
    left = _sessions_of(_cached_access_tokens(open_persisted_cache(location)[0]))
    assert session.id not in left and other.id in left
