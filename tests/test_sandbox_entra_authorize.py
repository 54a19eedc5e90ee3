"""The sandbox's authorization endpoint and authorization-code grant with PKCE, for the MCP public client.

msal's ``initiate_auth_code_flow`` builds the request; httpx follows the 302 to a loopback listener
(no browser), which hands the query to ``acquire_token_by_auth_code_flow``: exactly what an MCP
client's sign-in does, minus the page.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import ssl
import threading
import warnings
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import msal
import pytest
from conftest import ARM_SCOPE, decode_claims, requests_session
from hypothesis import given
from hypothesis import strategies as st

from azure_agent_mcp.sandbox.entra_authorize import redirect_allowed, s256
from azure_agent_mcp.sandbox.mcp_world import LOOPBACK_REDIRECTS

VERIFIER = "v" * 43 + "-verifier-of-the-test"


def _authority(manifest):
    return f"{manifest['authority_host']}/{manifest['tenant_id']}"


def _user(manifest, name):
    return next(u for u in manifest["users"] if u["name"] == name)


def _browser(manifest):
    """What stands in for the browser: follows redirects, trusts exactly the sandbox CA, ignores proxies."""
    return httpx.Client(verify=ssl.create_default_context(cafile=manifest["ca_bundle"]), trust_env=False, timeout=30)


class Loopback:
    """The MCP client's redirect listener on 127.0.0.1:<ephemeral>: records the query it was sent to."""

    def __init__(self, path="/"):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                received.append(dict(parse_qsl(urlsplit(self.path).query)))
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(b"signed in; you can close this window")

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_port}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _mcp_client(manifest):
    return msal.PublicClientApplication(
        manifest["mcp_public_client"]["client_id"], authority=_authority(manifest),
        http_client=requests_session(manifest), instance_discovery=False)


def _sign_in(manifest, user, scopes=None):
    """The whole browserless sign-in: (msal app, the flow, the redirect's query, the token result)."""
    app = _mcp_client(manifest)
    with Loopback("/callback") as listener, warnings.catch_warnings():
        # msal recommends response_mode=form_post; a loopback listener reading the query is what MCP clients do.
        warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended")
        flow = app.initiate_auth_code_flow(scopes or [manifest["mcp_server_app"]["scope"]],
                                           redirect_uri=listener.uri, login_hint=_user(manifest, user)["upn"])
        page = _browser(manifest).get(flow["auth_uri"], follow_redirects=True)
    assert page.status_code == 200 and page.text.startswith("signed in"), page.text
    assert len(listener.received) == 1
    response = listener.received[0]
    return app, flow, response, app.acquire_token_by_auth_code_flow(flow, response)


def _authorize(manifest, **params):
    base = {"client_id": manifest["mcp_public_client"]["client_id"], "response_type": "code",
            "redirect_uri": "http://localhost:51234", "scope": manifest["mcp_server_app"]["scope"] + " openid",
            "state": "st-1", "code_challenge": s256(VERIFIER), "code_challenge_method": "S256",
            "login_hint": "developer@sandbox.onmicrosoft.com"}
    base.update(params)
    query = {k: v for k, v in base.items() if v is not None}
    return _browser(manifest).get(f"{_authority(manifest)}/oauth2/v2.0/authorize?{urlencode(query)}")


def _redeem(manifest, code, **params):
    data = {"grant_type": "authorization_code", "client_id": manifest["mcp_public_client"]["client_id"],
            "code": code, "redirect_uri": "http://localhost:51234", "code_verifier": VERIFIER,
            "scope": manifest["mcp_server_app"]["scope"]}
    data.update(params)
    return _browser(manifest).post(f"{_authority(manifest)}/oauth2/v2.0/token",
                                   data={k: v for k, v in data.items() if v is not None})


def _code(manifest, **params):
    answer = _authorize(manifest, **params)
    assert answer.status_code == 302, answer.text
    return dict(parse_qsl(urlsplit(answer.headers["location"]).query))["code"]


# -- what works ------------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["developer", "reader"])
def test_msal_auth_code_flow_with_pkce_signs_in_the_hinted_user(sandbox, user):
    manifest = sandbox.manifest
    record, app_reg = _user(manifest, user), manifest["mcp_server_app"]
    app, flow, response, result = _sign_in(manifest, user)
    assert "access_token" in result, result
    assert response["state"] == flow["state"] and "code_challenge" in flow["auth_uri"]
    assert "code_challenge_method=S256" in flow["auth_uri"]
    claims = decode_claims(result["access_token"])
    assert claims["aud"] == app_reg["client_id"] and claims["scp"] == "user_impersonation"
    assert claims["azp"] == manifest["mcp_public_client"]["client_id"] and claims["ver"] == "2.0"
    assert claims["oid"] == record["object_id"] and claims["preferred_username"] == record["upn"]
    # msal sent the nonce's SHA-256 and checked the id token's against it; the account is cached, and
    # the refresh token works.
    assert result["id_token_claims"]["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()
    assert [a["username"] for a in app.get_accounts()] == [record["upn"]]
    silent = app.acquire_token_silent([app_reg["scope"]], account=app.get_accounts()[0], force_refresh=True)
    assert decode_claims(silent["access_token"])["oid"] == record["object_id"]


def test_two_users_sign_in_side_by_side_and_each_token_is_theirs(sandbox):
    manifest = sandbox.manifest
    tokens = {user: _sign_in(manifest, user)[3]["access_token"] for user in ("developer", "reader")}
    assert {decode_claims(t)["oid"] for t in tokens.values()} == {
        _user(manifest, "developer")["object_id"], _user(manifest, "reader")["object_id"]}


def test_agent_markers_on_the_auth_code_redemption(sandbox):
    manifest = sandbox.manifest
    code = _code(manifest)
    answer = _redeem(manifest, code, client_session="auth-code-session",
                     claims=json.dumps({"access_token": {"xms_cli_sid": {"values": ["auth-code-session"]}}}))
    claims = decode_claims(answer.json()["access_token"])
    assert claims["xms_cli_ses"] == claims["xms_cli_sid"] == "auth-code-session"


def test_loopback_redirects_match_on_any_port_but_redemption_needs_the_same_uri(sandbox):
    manifest = sandbox.manifest
    for uri in ("http://localhost:1", "http://127.0.0.1:65535/", "http://localhost:40000/callback",
                "http://127.0.0.1"):
        assert _authorize(manifest, redirect_uri=uri).status_code == 302, uri
    code = _code(manifest, redirect_uri="http://localhost:40001")
    other_port = _redeem(manifest, code, redirect_uri="http://localhost:40002")
    assert other_port.json()["error"] == "invalid_grant" and other_port.json()["error_codes"] == [500112]


def test_device_code_for_the_mcp_client(sandbox):
    manifest = sandbox.manifest
    app = _mcp_client(manifest)
    flow = app.initiate_device_flow([manifest["mcp_server_app"]["scope"]])
    result = app.acquire_token_by_device_flow(flow, data={"login_hint": _user(manifest, "reader")["upn"]})
    claims = decode_claims(result["access_token"])
    assert claims["aud"] == manifest["mcp_server_app"]["client_id"]
    assert claims["azp"] == manifest["mcp_public_client"]["client_id"]
    assert claims["oid"] == _user(manifest, "reader")["object_id"]


# -- what the token endpoint refuses ----------------------------------------------------------------


def test_a_code_is_spent_by_its_first_redemption(sandbox):
    manifest = sandbox.manifest
    code = _code(manifest)
    assert _redeem(manifest, code).status_code == 200
    replay = _redeem(manifest, code)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert replay.json()["error_codes"] == [54005] and "already redeemed" in replay.json()["error_description"]
    # A failed attempt spends it too: no retrying verifiers against one code.
    code = _code(manifest)
    assert _redeem(manifest, code, code_verifier="w" * 43).json()["error_codes"] == [501481]
    assert _redeem(manifest, code).json()["error_codes"] == [54005]
    assert _redeem(manifest, "ac.never-issued").json()["error_codes"] == [9002313]


@pytest.mark.parametrize(("change", "code"), [
    ({"code_verifier": "x" * 43}, 501481),
    ({"code_verifier": None}, 50148),
    ({"redirect_uri": "http://localhost:51235"}, 500112),
    ({"redirect_uri": None}, 500112),
    ({"client_id": "5a1db0c5-c11e-4000-a000-000000000c01"}, 70000),
])
def test_redemption_checks_verifier_redirect_and_client(sandbox, change, code):
    manifest = sandbox.manifest
    answer = _redeem(manifest, _code(manifest), **change)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    assert answer.json()["error_codes"] == [code]
    assert answer.json()["error_description"].startswith(f"AADSTS{code}:")


def test_a_public_client_presenting_a_secret_is_refused(sandbox):
    manifest = sandbox.manifest
    answer = _redeem(manifest, _code(manifest), client_secret="anything")
    assert answer.status_code == 401 and answer.json()["error_codes"] == [700025]


# -- what the authorization endpoint refuses ----------------------------------------------------------


def test_without_login_hint_the_sandbox_answers_a_page_saying_to_pass_one(sandbox):
    answer = _authorize(sandbox.manifest, login_hint=None)
    assert answer.status_code == 400 and "location" not in answer.headers
    assert "login_hint" in answer.text and "AADSTS50058" in answer.text
    unknown = _authorize(sandbox.manifest, login_hint="nobody@sandbox.onmicrosoft.com")
    assert unknown.status_code == 400 and "AADSTS50034" in unknown.text


@pytest.mark.parametrize("uri", ["https://evil.example/callback", "http://localhost.evil.example:8080",
                                 "http://10.0.0.1:8080", "https://localhost:8080", "http://localhost:8080/other",
                                 "http://user@localhost:8080", "http://localhost:8080/callback?x=1", ""])
def test_an_unregistered_redirect_uri_gets_a_page_never_a_redirect(sandbox, uri):
    answer = _authorize(sandbox.manifest, redirect_uri=uri)
    assert answer.status_code == 400 and "location" not in answer.headers
    assert "AADSTS50011" in answer.text


def test_an_unknown_client_gets_a_page(sandbox):
    answer = _authorize(sandbox.manifest, client_id="00000000-0000-0000-0000-000000000000")
    assert answer.status_code == 400 and "location" not in answer.headers and "AADSTS700016" in answer.text


@pytest.mark.parametrize(("change", "error", "code"), [
    ({"code_challenge_method": "plain", "code_challenge": "p" * 43}, "invalid_request", 82010),
    ({"code_challenge_method": None, "code_challenge": "p" * 43}, "invalid_request", 82010),
    ({"code_challenge": None}, "invalid_request", 50147),
    ({"code_challenge": "short"}, "invalid_request", 501491),
    ({"response_type": "token"}, "unsupported_response_type", 70005),
    ({"scope": "https://example.com/.default"}, "invalid_resource", 500011),
])
def test_request_errors_go_back_on_the_redirect(sandbox, change, error, code):
    answer = _authorize(sandbox.manifest, **change)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == "http://localhost:51234"
    query = dict(parse_qsl(location.query))
    assert query["error"] == error and query["error_description"].startswith(f"AADSTS{code}:")
    assert query["state"] == "st-1" and "code" not in query


def test_the_log_never_holds_a_code_or_verifier(sandbox):
    manifest = sandbox.manifest
    since = sandbox.last_seq()
    code = _code(manifest)
    tokens = _redeem(manifest, code).json()
    logged = json.dumps(sandbox.requests(since=since))
    for value in (code, VERIFIER, tokens["access_token"], tokens["refresh_token"], tokens["id_token"]):
        assert value not in logged
    kinds = [e["kind"] for e in sandbox.requests(since=since)]
    assert kinds == ["entra", "token"]


# -- the loopback rule, adversarially --------------------------------------------------------------------


@given(port=st.integers(min_value=1, max_value=65535), host=st.sampled_from(["localhost", "127.0.0.1"]),
       path=st.sampled_from(["", "/", "/callback", "/callback/"]))
def test_registered_loopback_uris_match_on_any_port(port, host, path):
    assert redirect_allowed(f"http://{host}:{port}{path}", LOOPBACK_REDIRECTS)


@given(host=st.from_regex(r"[a-z0-9.\-]{1,30}", fullmatch=True).filter(lambda h: h not in ("localhost", "127.0.0.1")),
       port=st.integers(min_value=1, max_value=65535), scheme=st.sampled_from(["http", "https"]))
def test_no_other_host_matches(host, port, scheme):
    assert not redirect_allowed(f"{scheme}://{host}:{port}/callback", LOOPBACK_REDIRECTS)
    assert not redirect_allowed(f"https://localhost:{port}/callback", LOOPBACK_REDIRECTS)
