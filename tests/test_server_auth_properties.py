"""Adversarial properties of the resource server's parts, in process: the verifier and the session binding.

The verifier talks to the sandbox's real JWKS over HTTPS; tokens are signed by the sandbox's Entra
key with any subset of their claims made wrong, and must pass exactly when none is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auth_helpers import mint, server_app, user
from azure_agent_mcp.server.auth_config import AuthConfig, ServerAppCredential
from azure_agent_mcp.server.bearer import EntraTokenVerifier, TokenRejected
from azure_agent_mcp.server.callers import Caller


def _config(sandbox) -> AuthConfig:
    app = server_app(sandbox)
    manifest = sandbox.manifest
    return AuthConfig(
        authority_host=manifest["authority_host"], tenant_id=manifest["tenant_id"], client_id=app["client_id"],
        app_id_uri=app["app_id_uri"], scope_name="user_impersonation", issuer=sandbox.state.issuer,
        jwks_uri=f"{manifest['authority_host']}/{manifest['tenant_id']}/discovery/v2.0/keys",
        credential=ServerAppCredential(secret="x"), ca_bundle=manifest["ca_bundle"],
    )


@pytest.fixture(scope="module")
def verifier(sandbox):
    return EntraTokenVerifier(_config(sandbox))


FAULTS = {
    "aud": lambda sb: {"aud": "api://" + str(uuid.uuid4())},
    "iss": lambda sb: {"iss": sb.state.issuer.replace("/v2.0", "/v1.0")},
    "tid": lambda sb: {"tid": str(uuid.uuid4())},
    "exp": lambda sb: {"exp": int(time.time()) - 3600},
    "nbf": lambda sb: {"nbf": int(time.time()) + 3600},
    "scp": lambda sb: {"scp": "User.Read openid"},
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(faults=st.sets(st.sampled_from(sorted(FAULTS))), audience=st.sampled_from(["client_id", "app_id_uri"]),
       who=st.sampled_from(["developer", "reader", "newcomer"]))
def test_a_token_passes_exactly_when_no_claim_is_wrong(sandbox, verifier, faults, audience, who):
    claims = {"aud": server_app(sandbox)[audience]}
    for fault in faults:
        claims.update(FAULTS[fault](sandbox))
    token = mint(sandbox, who, **claims)
    if not faults:
        verified = verifier.verify(token)
        assert verified.claims["oid"] == user(sandbox, who)["object_id"]
        return
    with pytest.raises(TokenRejected) as caught:
        verifier.verify(token)
    assert token not in str(caught.value) and caught.value.reason
    assert verifier.cached(token) is None, "a refused token is never remembered as good"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.fixed_dictionaries({"alg": st.sampled_from(["none", "HS256", "HS512", "RS512", "PS256", "ES256", "", "rs256"])},
                                    optional={"kid": st.text(max_size=40)}))
def test_only_rs256_with_the_tenants_key_is_accepted(sandbox, verifier, header):
    import base64

    def part(value) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    good = mint(sandbox)
    _, payload, signature = good.split(".")
    forged = f"{part(header)}.{payload}.{signature}"  # the real payload and signature under another header
    with pytest.raises(TokenRejected) as caught:
        verifier.verify(forged)
    assert caught.value.reason in ("unsupported_algorithm", "unknown_key", "bad_signature", "malformed")


def test_a_remembered_token_stops_passing_once_it_expires(sandbox):
    now = [time.time()]
    verifier = EntraTokenVerifier(_config(sandbox), clock=lambda: now[0])
    token = mint(sandbox, exp=int(now[0]) + 120)
    verifier.verify(token)
    assert verifier.cached(token) is not None
    now[0] += 120 + 61  # past exp and the 60 s leeway
    assert verifier.cached(token) is None


# -- sessions bound to their caller ----------------------------------------------------------------


def _runtime(sandbox, tmp_path):
    from server_helpers import make_runtime

    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl", transport="http")
    runtime._caller_credential_factory = lambda session, assertion: object()
    return runtime


CALLERS = [Caller("t", f"oid-{n}", upn=f"user{n}@x", assertion=f"token-{n}") for n in range(3)]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["s-a", "s-b", "s-c", None]),
                                st.sampled_from(["m-1", "m-2", None])), min_size=1, max_size=30))
def test_no_session_is_ever_handed_to_two_callers(sandbox, tmp_path_factory, steps):
    from azure_agent_mcp.server.runtime import SessionOwnershipError

    runtime = _runtime(sandbox, tmp_path_factory.mktemp("rt"))
    first_owner: dict[str, int] = {}
    served: dict[str, set[int]] = {}
    for who, named, connection in steps:
        headers = {}
        if named is not None:
            headers["X-Agent-Session-Id"] = named
        if connection is not None:
            headers["Mcp-Session-Id"] = connection
        try:
            session = runtime.session_for(headers, CALLERS[who])
        except SessionOwnershipError:
            assert named is not None and first_owner[named] != who
            continue
        if named is not None:
            first_owner.setdefault(named, who)
            assert first_owner[named] == who
        served.setdefault(session.id, set()).add(who)
        assert session.id != runtime.default_session.id, "a caller never gets the server's own session"
    assert all(len(owners) == 1 for owners in served.values()), served


def test_the_servers_own_session_cannot_be_named_by_a_caller(sandbox, tmp_path):
    from azure_agent_mcp.server.runtime import SessionOwnershipError

    runtime = _runtime(sandbox, tmp_path)
    with pytest.raises(SessionOwnershipError):
        runtime.session_for({"X-Agent-Session-Id": runtime.default_session.id}, CALLERS[0])


def test_a_newer_token_replaces_the_callers_assertion(sandbox, tmp_path):
    runtime = _runtime(sandbox, tmp_path)
    old = Caller("t", "oid-0", issued_at=100, expires_at=200, assertion="old-token")
    new = Caller("t", "oid-0", issued_at=150, expires_at=250, assertion="new-token")
    runtime.note_caller(old)
    current = runtime._assertion_of(old.key)
    assert current() == "old-token"
    runtime.note_caller(new)
    assert current() == "new-token", "the next exchange of every session of the caller uses the new token"
    runtime.note_caller(old)  # a late request with the older token does not roll it back
    assert current() == "new-token"
    assert "new-token" not in repr(new) and "new-token" not in json.dumps(new.describe())


def test_serving_http_with_auth_imports_no_heavy_module_at_start_up():
    code = (
        "import sys, json\n"
        "from azure_agent_mcp.server import serve, auth_config, resource_server, bearer, callers, runtime\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('msal', 'jwt', 'cryptography'))\n"
        "print(json.dumps(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
