"""The MCP server's app registration in the sandbox's Entra, its user tokens, and the on-behalf-of grant.

Driven by real msal (``ConfidentialClientApplication.acquire_token_on_behalf_of``) and plain HTTPS,
against the session sandbox; outcomes are checked in the issued tokens, ARM's answers and the
sandbox's request log.
"""

from __future__ import annotations

import base64
import datetime
import ast
import json
import re
import time
from pathlib import Path

import jwt
import msal
import pytest
from conftest import ARM_SCOPE, VAULT_SCOPE, decode_claims, httpx_client, requests_session
from hypothesis import assume, given, settings
from hypothesis import strategies as st

ARM_API = "2022-12-01"


def _authority(manifest):
    return f"{manifest['authority_host']}/{manifest['tenant_id']}"


def _user(manifest, name):
    return next(u for u in manifest["users"] if u["name"] == name)


def _server_app(manifest, credential=None, **kwargs):
    app = manifest["mcp_server_app"]
    return msal.ConfidentialClientApplication(
        app["client_id"], client_credential=credential if credential is not None else app["client_secret"],
        authority=_authority(manifest), http_client=requests_session(manifest), instance_discovery=False, **kwargs)


def _server_token(manifest, user="developer", client_id=None, scope=None):
    """A user token for the MCP server app, as an MCP client gets it (password grant: quick and real)."""
    record = _user(manifest, user)
    response = httpx_client(manifest).post(f"{_authority(manifest)}/oauth2/v2.0/token", data={
        "grant_type": "password", "client_id": client_id or manifest["mcp_public_client"]["client_id"],
        "username": record["upn"], "password": record["password"],
        "scope": f"{scope or manifest['mcp_server_app']['scope']} openid profile offline_access"})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _arm_get(manifest, token, path="/subscriptions"):
    return httpx_client(manifest).get(f"{manifest['arm_endpoint']}{path}", params={"api-version": ARM_API},
                                      headers={"authorization": f"Bearer {token}"})


def _b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = _rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode(), cert.fingerprint(hashes.SHA1()).hex()


# -- the registration and the manifest ----------------------------------------------------------------


def test_manifest_names_the_server_app_the_public_client_and_the_consents(sandbox):
    manifest = sandbox.manifest
    app = manifest["mcp_server_app"]
    assert app["client_id"] == "5a1db0c5-3c90-4000-a000-000000000e01"
    assert app["app_id_uri"] == f"api://{app['client_id']}"
    assert app["scope"] == f"api://{app['client_id']}/user_impersonation"
    assert app["client_secret"].startswith("mcp~") and len(app["client_secret"]) > 20
    assert app["consented_users"] == ["developer@sandbox.onmicrosoft.com", "reader@sandbox.onmicrosoft.com"]
    public = manifest["mcp_public_client"]
    assert public["client_id"] == "5a1db0c5-c11e-4000-a000-000000000c02" != manifest["public_client_id"]
    assert public["redirect_uri"] == "http://127.0.0.1"
    assert manifest["issuer"] == f"{_authority(manifest)}/v2.0"
    jwks = httpx_client(manifest).get(manifest["jwks_uri"]).json()
    assert jwks["keys"][0]["kty"] == "RSA"
    assert {(c["user"], c["resource"]) for c in manifest["consents"]} == {
        (u, r) for u in app["consented_users"] for r in ("https://management.azure.com", "https://vault.azure.net",
                                                   "https://api.loganalytics.io",
                                                   "499b84ac-1321-427f-aa17-267ca6975798")}
    # The unconsented user exists and can sign in; the server app is not an ordinary service principal.
    assert _user(manifest, "newcomer")["upn"] not in app["consented_users"]
    assert app["client_id"] not in {sp["client_id"] for sp in manifest["service_principals"]}
    # The fields that were there before stay.
    for key in ("authority_host", "tenant_id", "public_client_id", "users", "service_principals", "agent_identity"):
        assert key in manifest


def test_a_user_token_for_the_server_app_is_a_v2_token_naming_the_public_client(sandbox):
    manifest = sandbox.manifest
    token = _server_token(manifest, "reader")
    jwks = httpx_client(manifest).get(manifest["jwks_uri"]).json()
    app, reader = manifest["mcp_server_app"], _user(manifest, "reader")
    claims = jwt.decode(token, jwt.PyJWK(jwks["keys"][0]).key, algorithms=["RS256"], audience=app["client_id"],
                        issuer=manifest["issuer"])
    assert claims["ver"] == "2.0" and claims["scp"] == "user_impersonation"
    assert claims["azp"] == manifest["mcp_public_client"]["client_id"] and "appid" not in claims
    assert claims["oid"] == reader["object_id"] and claims["tid"] == manifest["tenant_id"]
    assert claims["preferred_username"] == claims["upn"] == reader["upn"] and claims["name"] == "Sandbox Reader"
    assert claims["idtyp"] == "user" and claims["nbf"] <= claims["iat"] < claims["exp"]
    # The app id URI with .default names the same scope; an unknown scope of the API is refused.
    default = decode_claims(_server_token(manifest, "reader", scope=f"{app['app_id_uri']}/.default"))
    assert default["aud"] == app["client_id"] and default["scp"] == "user_impersonation"
    unknown = httpx_client(manifest).post(f"{_authority(manifest)}/oauth2/v2.0/token", data={
        "grant_type": "password", "client_id": manifest["mcp_public_client"]["client_id"],
        "username": reader["upn"], "password": reader["password"], "scope": f"{app['app_id_uri']}/Files.ReadAll"})
    assert unknown.status_code == 400 and unknown.json()["error_codes"] == [650053]
    assert "Files.ReadAll" in unknown.json()["error_description"]


def test_server_app_tokens_carry_the_agent_markers_as_other_user_tokens_do(sandbox):
    manifest = sandbox.manifest
    record = _user(manifest, "developer")
    response = httpx_client(manifest).post(
        f"{_authority(manifest)}/oauth2/v2.0/token", params={"client_session": "q-sess"},
        data={"grant_type": "password", "client_id": manifest["mcp_public_client"]["client_id"],
              "username": record["upn"], "password": record["password"], "scope": manifest["mcp_server_app"]["scope"],
              "client_session": "b-sess", "claims": json.dumps({"access_token": {"xms_cli_sid": {"values": ["s-1"]}}})})
    claims = decode_claims(response.json()["access_token"])
    assert claims["xms_cli_ses"] == "q-sess" and claims["xms_cli_sid"] == "s-1"


# -- on-behalf-of: what works --------------------------------------------------------------------------


def test_obo_with_the_secret_gets_an_arm_token_for_the_user_that_arm_accepts(sandbox):
    manifest = sandbox.manifest
    developer, app = _user(manifest, "developer"), manifest["mcp_server_app"]
    assertion = _server_token(manifest, "developer")
    since = sandbox.last_seq()
    result = _server_app(manifest).acquire_token_on_behalf_of(assertion, [ARM_SCOPE])
    assert "access_token" in result, result
    claims = decode_claims(result["access_token"])
    assert claims["aud"] == "https://management.azure.com/" and claims["oid"] == developer["object_id"]
    assert claims["appid"] == claims["azp"] == app["client_id"] and claims["appidacr"] == "1"
    assert claims["scp"] == "user_impersonation" and claims["idtyp"] == "user" and claims["upn"] == developer["upn"]
    assert "xms_cli_ses" not in claims and result.get("refresh_token")
    answer = _arm_get(manifest, result["access_token"])
    assert answer.status_code == 200 and {s["displayName"] for s in answer.json()["value"]} == {
        "Sandbox Production", "Sandbox Development"}
    arm = [e for e in sandbox.requests("arm", since=since) if e["path"] == "/subscriptions"]
    assert arm[-1]["token_claims"]["oid"] == developer["object_id"]
    assert arm[-1]["token_claims"]["appid"] == app["client_id"]
    token_entry = sandbox.requests("token", since=since)[0]
    assert token_entry["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert token_entry["subject_oid"] == token_entry["on_behalf_of"] == developer["object_id"]


def test_obo_tokens_carry_the_agent_markers_sent_as_the_product_sends_them(sandbox):
    """client_session in body and query, and the claims request, as identity/msal_provider sends them."""
    manifest = sandbox.manifest
    reader = _user(manifest, "reader")
    assertion = _server_token(manifest, "reader")
    session = "agent-session-obo-1"
    claims_request = json.dumps({"access_token": {"xms_cli_sid": {"values": [session]},
                                                  "xms_agent_session": {"value": session}}})
    since = sandbox.last_seq()
    result = _server_app(manifest).acquire_token_on_behalf_of(
        assertion, [VAULT_SCOPE], claims_challenge=claims_request, data={"client_session": session},
        params={"client_session": session})
    claims = decode_claims(result["access_token"])
    assert claims["aud"] == "https://vault.azure.net" and claims["oid"] == reader["object_id"]
    assert claims["xms_cli_ses"] == claims["xms_cli_sid"] == claims["xms_agent_session"] == session
    entry = sandbox.requests("token", since=since)[-1]
    assert (entry["client_session_body"], entry["client_session_query"]) == (session, session)
    assert entry["issued_claims"]["xms_cli_ses"] == session

    # ARM sees the user and the session on the OBO token; the reader is a Reader on Sandbox Production only.
    arm_token = _server_app(manifest).acquire_token_on_behalf_of(
        assertion, [ARM_SCOPE], claims_challenge=claims_request, data={"client_session": session})["access_token"]
    answer = _arm_get(manifest, arm_token)
    assert [s["displayName"] for s in answer.json()["value"]] == ["Sandbox Production"]
    served = sandbox.requests("arm", since=since)[-1]
    assert served["token_session"] == session and served["token_claims"]["oid"] == reader["object_id"]


def test_obo_with_a_certificate_assertion_and_with_a_federated_credential(sandbox, tmp_path):
    manifest = sandbox.manifest
    app = manifest["mcp_server_app"]
    key_pem, cert_pem, thumbprint = _certificate()
    sandbox.add_client_certificate(app["client_id"], cert_pem)
    assertion = _server_token(manifest, "developer")
    by_cert = _server_app(manifest, {"private_key": key_pem, "thumbprint": thumbprint}).acquire_token_on_behalf_of(
        assertion, [ARM_SCOPE])
    claims = decode_claims(by_cert["access_token"])
    assert claims["appidacr"] == "2" and claims["oid"] == _user(manifest, "developer")["object_id"]

    # The federated credential: the automation principal's exchange token as the client assertion.
    automation = manifest["service_principals"][0]
    exchange = httpx_client(manifest).post(f"{_authority(manifest)}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": automation["client_id"],
        "client_secret": automation["client_secret"], "scope": "api://AzureADTokenExchange/.default"}).json()
    federated_app = _server_app(manifest, {"client_assertion": lambda: exchange["access_token"]})
    federated = federated_app.acquire_token_on_behalf_of(assertion, [ARM_SCOPE])
    assert decode_claims(federated["access_token"])["appidacr"] == "2"


def test_obo_refresh_tokens_need_the_client_credential(sandbox):
    manifest = sandbox.manifest
    app = manifest["mcp_server_app"]
    result = _server_app(manifest).acquire_token_on_behalf_of(_server_token(manifest, "reader"), [ARM_SCOPE])
    client = httpx_client(manifest)
    url = f"{_authority(manifest)}/oauth2/v2.0/token"
    without = client.post(url, data={"grant_type": "refresh_token", "client_id": app["client_id"],
                                     "refresh_token": result["refresh_token"], "scope": VAULT_SCOPE})
    assert without.status_code == 401 and without.json()["error_codes"] == [7000218]
    refreshed = client.post(url, data={"grant_type": "refresh_token", "client_id": app["client_id"],
                                       "client_secret": app["client_secret"],
                                       "refresh_token": result["refresh_token"], "scope": VAULT_SCOPE})
    assert refreshed.status_code == 200
    claims = decode_claims(refreshed.json()["access_token"])
    assert claims["aud"] == "https://vault.azure.net" and claims["oid"] == _user(manifest, "reader")["object_id"]
    assert claims["appid"] == app["client_id"]


# -- on-behalf-of: what is refused ---------------------------------------------------------------------


def _obo_error(manifest, assertion, credential=None, scopes=(ARM_SCOPE,)):
    result = _server_app(manifest, credential).acquire_token_on_behalf_of(assertion, list(scopes))
    assert "access_token" not in result, result
    return result


def test_an_assertion_for_another_audience_is_refused(sandbox, sandbox_tokens):
    manifest = sandbox.manifest
    arm_token = sandbox_tokens.user_token("developer")  # a user token, but for ARM, not for the server app
    result = _obo_error(manifest, arm_token)
    assert result["error"] == "invalid_grant" and result["error_codes"] == [500131]
    assert "https://management.azure.com/" in result["error_description"]
    # Another confidential client presenting the server app's token: the audience is not *its* own.
    automation = manifest["service_principals"][0]
    other = msal.ConfidentialClientApplication(
        automation["client_id"], client_credential=automation["client_secret"], authority=_authority(manifest),
        http_client=requests_session(manifest), instance_discovery=False,
    ).acquire_token_on_behalf_of(_server_token(manifest), [ARM_SCOPE])
    assert other["error_codes"] == [500131]


def test_an_expired_assertion_is_refused(sandbox):
    manifest = sandbox.manifest
    live = decode_claims(_server_token(manifest, "developer"))
    now = int(time.time())
    # The sandbox's own key signs a token that expired a minute ago (what a stale cached token looks like).
    expired = sandbox.state.tokens.sign({**live, "iat": now - 3700, "nbf": now - 3700, "exp": now - 60})
    result = _obo_error(manifest, expired)
    assert result["error"] == "invalid_grant" and result["error_codes"] == [500133]
    assert "not within its valid time range" in result["error_description"]


def test_an_app_only_assertion_is_refused(sandbox):
    manifest = sandbox.manifest
    automation, app = manifest["service_principals"][0], manifest["mcp_server_app"]
    app_token = httpx_client(manifest).post(f"{_authority(manifest)}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": automation["client_id"],
        "client_secret": automation["client_secret"], "scope": f"{app['app_id_uri']}/.default"}).json()["access_token"]
    assert decode_claims(app_token)["aud"] == app["client_id"]
    result = _obo_error(manifest, app_token)
    assert result["error_codes"] == [50013] and "app-only" in result["error_description"]


@pytest.mark.parametrize("forgery", ["own_key", "own_key_sandbox_kid", "alg_none", "payload_swap", "garbage"])
def test_forged_assertions_are_refused(sandbox, forgery):
    manifest = sandbox.manifest
    real = _server_token(manifest, "reader")
    claims = {**decode_claims(real), "oid": _user(manifest, "developer")["object_id"]}  # pose as the developer
    sandbox_kid = jwt.get_unverified_header(real)["kid"]
    if forgery == "own_key":
        forged = jwt.encode(claims, _rsa_key(), algorithm="RS256", headers={"kid": "attacker-key"})
    elif forgery == "own_key_sandbox_kid":
        forged = jwt.encode(claims, _rsa_key(), algorithm="RS256", headers={"kid": sandbox_kid, "x5t": sandbox_kid})
    elif forgery == "alg_none":
        forged = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': sandbox_kid})}.{_b64(claims)}."
    elif forgery == "payload_swap":
        header, _, signature = real.split(".")
        forged = f"{header}.{_b64(claims)}.{signature}"
    else:
        forged = "not.a.jwt"
    result = _obo_error(manifest, forged)
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == ([50027] if forgery == "garbage" else [50013])
    assert forged not in json.dumps(sandbox.requests("token"))


def test_an_unconsented_user_gets_consent_required_naming_the_consent(fresh_sandbox_state):
    sandbox = fresh_sandbox_state
    manifest = sandbox.manifest
    app = manifest["mcp_server_app"]
    assertion = _server_token(manifest, "newcomer")  # signing in to the server's API needs no consent
    result = _obo_error(manifest, assertion)
    assert result["error"] == "invalid_grant" and result["suberror"] == "consent_required"
    assert result["error_codes"] == [65001]
    description = result["error_description"]
    assert f"has not consented to use the application with ID '{app['client_id']}'" in description
    assert "newcomer@sandbox.onmicrosoft.com" in description and "https://management.azure.com" in description
    assert "prompt=consent" in description
    # Consent is per resource: granting ARM lets ARM through and still refuses Key Vault.
    sandbox.grant_consent("newcomer@sandbox.onmicrosoft.com", "https://management.azure.com/")
    granted = _server_app(manifest).acquire_token_on_behalf_of(assertion, [ARM_SCOPE])
    assert decode_claims(granted["access_token"])["oid"] == _user(manifest, "newcomer")["object_id"]
    assert _obo_error(manifest, assertion, scopes=[VAULT_SCOPE])["error_codes"] == [65001]
    # Revoking it refuses again; a reset restores the seed consents (none for the newcomer).
    sandbox.revoke_consent("newcomer@sandbox.onmicrosoft.com", "https://management.azure.com")
    assert _obo_error(manifest, assertion)["suberror"] == "consent_required"
    sandbox.grant_consent("newcomer@sandbox.onmicrosoft.com", "https://management.azure.com")
    sandbox.reset()
    assert not [c for c in sandbox.consents() if c["user"] == "newcomer@sandbox.onmicrosoft.com"]


def test_the_consent_url_in_the_error_grants_the_consent(fresh_sandbox_state):
    sandbox = fresh_sandbox_state
    manifest = sandbox.manifest
    assertion = _server_token(manifest, "newcomer")
    description = _obo_error(manifest, assertion, scopes=[VAULT_SCOPE])["error_description"]
    url = re.search(r"consent at (\S+),", description).group(1)
    assert url.startswith(f"{_authority(manifest)}/oauth2/v2.0/authorize?") and "vault.azure.net" in url
    page = httpx_client(manifest).get(url)
    assert page.status_code == 200 and "consented" in page.text
    assert {"user": "newcomer@sandbox.onmicrosoft.com", "object_id": _user(manifest, "newcomer")["object_id"],
            "client_id": manifest["mcp_server_app"]["client_id"], "resource": "https://vault.azure.net"} in \
        sandbox.consents()
    vault = _server_app(manifest).acquire_token_on_behalf_of(assertion, [VAULT_SCOPE])
    assert decode_claims(vault["access_token"])["aud"] == "https://vault.azure.net"
    # Only the app's API permissions can be consented to; ARM stays unconsented.
    graph = httpx_client(manifest).get(url.replace("https://vault.azure.net", "https://graph.microsoft.com"))
    assert graph.status_code == 400 and "AADSTS650057" in graph.text
    assert _obo_error(manifest, assertion)["error_codes"] == [65001]


_ASSERTIONS: dict[str, str] = {}


@settings(max_examples=25, deadline=None)
@given(position=st.integers(min_value=0, max_value=10_000), replacement=st.sampled_from("AQgw_-09z"))
def test_any_tampered_assertion_is_refused(sandbox, position, replacement):
    """One changed character anywhere in a real assertion (not the last of a segment, whose spare bits may not
    change the decoded bytes): the grant is refused, never answered with a token."""
    manifest = sandbox.manifest
    real = _ASSERTIONS.setdefault("developer", _server_token(manifest, "developer"))
    candidates = [i for i, c in enumerate(real) if c != "." and i + 1 < len(real) and real[i + 1] != "."]
    index = candidates[position % len(candidates)]
    assume(real[index] != replacement)
    tampered = real[:index] + replacement + real[index + 1:]
    app = manifest["mcp_server_app"]
    answer = httpx_client(manifest).post(f"{_authority(manifest)}/oauth2/v2.0/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "requested_token_use": "on_behalf_of",
        "client_id": app["client_id"], "client_secret": app["client_secret"], "assertion": tampered,
        "scope": ARM_SCOPE})
    assert answer.status_code == 400 and "access_token" not in answer.json()
    assert answer.json()["error"] == "invalid_grant"


def test_a_public_client_cannot_use_the_grant(sandbox):
    manifest = sandbox.manifest
    answer = httpx_client(manifest).post(f"{_authority(manifest)}/oauth2/v2.0/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "requested_token_use": "on_behalf_of",
        "client_id": manifest["mcp_public_client"]["client_id"], "assertion": _server_token(manifest),
        "scope": ARM_SCOPE})
    assert answer.status_code == 401 and answer.json()["error_codes"] == [700025]


def test_a_bad_secret_is_refused(sandbox):
    manifest = sandbox.manifest
    result = _obo_error(manifest, _server_token(manifest), credential="mcp~not-the-secret")
    assert result["error"] == "invalid_client" and result["error_codes"] == [7000215]


def test_the_token_log_never_holds_an_assertion_secret_or_token(sandbox):
    manifest = sandbox.manifest
    app = manifest["mcp_server_app"]
    since = sandbox.last_seq()
    assertion = _server_token(manifest, "developer")
    good = _server_app(manifest).acquire_token_on_behalf_of(assertion, [ARM_SCOPE], data={"client_session": "s-9"})
    bad = _server_app(manifest, "mcp~wrong-secret-value").acquire_token_on_behalf_of(assertion, [ARM_SCOPE])
    assert "access_token" in good and bad["error_codes"] == [7000215]
    logged = json.dumps(sandbox.requests("token", since=since))
    for value in (assertion, good["access_token"], good["refresh_token"], app["client_secret"],
                  "mcp~wrong-secret-value", assertion.split(".")[2], good["access_token"].split(".")[2]):
        assert value not in logged
    assert logged.count("jwt-bearer") >= 2  # the entries are there, without the values


def test_the_grant_modules_do_not_import_the_router_back():
    """entra.py imports the grant modules; none of them (nor the shared errors) imports entra.py."""
    import azure_agent_mcp.sandbox as package

    root = Path(package.__file__).parent
    for name in ("agent_grants", "entra_authorize", "entra_obo", "entra_errors", "mcp_world", "sidecar"):
        tree = ast.parse((root / f"{name}.py").read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "azure_agent_mcp.sandbox.entra" not in imported, name
