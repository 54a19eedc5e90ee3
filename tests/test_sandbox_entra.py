"""The sandbox's Entra token service, driven by msal, azure-identity and a plain HTTPS client."""

from __future__ import annotations

import json

import jwt
import msal
import pytest
from conftest import ARM_SCOPE, VAULT_SCOPE, decode_claims, httpx_client, requests_session


def _authority(manifest):
    return f"{manifest['authority_host']}/{manifest['tenant_id']}"


def _public_app(manifest):
    return msal.PublicClientApplication(
        manifest["public_client_id"], authority=_authority(manifest), http_client=requests_session(manifest),
        instance_discovery=False,
    )


def test_device_code_flow_signs_in_the_developer_and_msal_caches_the_account(sandbox):
    manifest = sandbox.manifest
    app = _public_app(manifest)
    flow = app.initiate_device_flow([ARM_SCOPE])
    assert "user_code" in flow and flow["verification_uri"].startswith(manifest["authority_host"])
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    claims = decode_claims(result["access_token"])
    developer = next(u for u in manifest["users"] if u["name"] == "developer")
    assert claims["oid"] == developer["object_id"]
    assert claims["upn"] == developer["upn"]
    assert claims["aud"] == "https://management.azure.com/"
    assert claims["idtyp"] == "user" and claims["scp"] == "user_impersonation"
    assert claims["tid"] == manifest["tenant_id"]
    assert claims["exp"] - claims["iat"] == manifest["token_lifetime"]
    assert "xms_cli_ses" not in claims
    accounts = app.get_accounts()
    assert [a["username"] for a in accounts] == [developer["upn"]]
    # The cached refresh token serves a vault token silently.
    silent = app.acquire_token_silent([VAULT_SCOPE], account=accounts[0], force_refresh=True)
    assert silent and decode_claims(silent["access_token"])["aud"] == "https://vault.azure.net"


def test_device_code_honours_login_hint_and_rejects_unknown_users(sandbox):
    app = _public_app(sandbox.manifest)
    reader = next(u for u in sandbox.manifest["users"] if u["name"] == "reader")
    flow = app.initiate_device_flow([ARM_SCOPE])
    result = app.acquire_token_by_device_flow(flow, data={"login_hint": reader["upn"]})
    assert decode_claims(result["access_token"])["oid"] == reader["object_id"]
    flow = app.initiate_device_flow([ARM_SCOPE])
    failed = app.acquire_token_by_device_flow(flow, data={"login_hint": "nobody@sandbox.onmicrosoft.com"})
    assert failed["error"] == "invalid_grant" and "AADSTS50034" in failed["error_description"]


def test_device_code_can_be_redeemed_once(sandbox):
    app = _public_app(sandbox.manifest)
    flow = app.initiate_device_flow([ARM_SCOPE])
    assert "access_token" in app.acquire_token_by_device_flow(dict(flow))
    again = app.acquire_token_by_device_flow(dict(flow), exit_condition=lambda f: True)
    assert again["error"] == "expired_token"


def test_refresh_tokens_rotate_and_the_old_one_stops_working(sandbox):
    manifest = sandbox.manifest
    app = _public_app(manifest)
    first = app.acquire_token_by_device_flow(app.initiate_device_flow([ARM_SCOPE]))
    old_rt = first["refresh_token"]
    second = app.acquire_token_by_refresh_token(old_rt, [ARM_SCOPE])
    assert "access_token" in second and second["refresh_token"] != old_rt
    replay = app.acquire_token_by_refresh_token(old_rt, [ARM_SCOPE])
    assert replay["error"] == "invalid_grant"
    assert replay["error_codes"] == [70008]
    assert replay["error_description"].startswith("AADSTS70008:")
    assert old_rt not in json.dumps(sandbox.requests(kind="token"))


def test_password_grant_for_seeded_users_only(sandbox):
    manifest = sandbox.manifest
    client = httpx_client(manifest)
    url = f"{_authority(manifest)}/oauth2/v2.0/token"
    reader = next(u for u in manifest["users"] if u["name"] == "reader")
    ok = client.post(url, data={"grant_type": "password", "client_id": manifest["public_client_id"],
                                "username": reader["upn"], "password": reader["password"], "scope": ARM_SCOPE})
    assert ok.status_code == 200
    assert decode_claims(ok.json()["access_token"])["upn"] == reader["upn"]
    bad = client.post(url, data={"grant_type": "password", "client_id": manifest["public_client_id"],
                                 "username": reader["upn"], "password": "wrong", "scope": ARM_SCOPE})
    assert bad.status_code == 400
    body = bad.json()
    assert body["error"] == "invalid_grant" and body["error_codes"] == [50126]
    assert {"timestamp", "trace_id", "correlation_id"} <= set(body)
    assert "wrong" not in json.dumps(sandbox.requests(kind="token"))


def test_confidential_client_with_secret_gets_an_app_token(sandbox):
    manifest = sandbox.manifest
    sp = manifest["service_principals"][0]
    app = msal.ConfidentialClientApplication(
        sp["client_id"], client_credential=sp["client_secret"], authority=_authority(manifest),
        http_client=requests_session(manifest), instance_discovery=False,
    )
    result = app.acquire_token_for_client([ARM_SCOPE])
    claims = decode_claims(result["access_token"])
    assert claims["idtyp"] == "app" and claims["appid"] == sp["client_id"] and claims["oid"] == sp["object_id"]
    assert "upn" not in claims and claims["roles"] == []
    wrong = msal.ConfidentialClientApplication(
        sp["client_id"], client_credential="not-the-secret", authority=_authority(manifest),
        http_client=requests_session(manifest), instance_discovery=False,
    ).acquire_token_for_client([ARM_SCOPE])
    assert wrong["error"] == "invalid_client" and wrong["error_codes"] == [7000215]
    unknown = msal.ConfidentialClientApplication(
        "00000000-0000-0000-0000-000000000000", client_credential="x", authority=_authority(manifest),
        http_client=requests_session(manifest), instance_discovery=False,
    ).acquire_token_for_client([ARM_SCOPE])
    assert unknown["error"] == "unauthorized_client" and "AADSTS700016" in unknown["error_description"]
    entries = json.dumps(sandbox.requests(kind="token"))
    assert sp["client_secret"] not in entries and "not-the-secret" not in entries


def test_client_secret_credential_from_azure_identity(sandbox):
    from azure.identity import ClientSecretCredential

    manifest = sandbox.manifest
    sp = manifest["service_principals"][0]
    credential = ClientSecretCredential(
        manifest["tenant_id"], sp["client_id"], sp["client_secret"], authority=manifest["authority_host"],
        disable_instance_discovery=True, connection_verify=manifest["ca_bundle"],
    )
    token = credential.get_token(VAULT_SCOPE)
    claims = decode_claims(token.token)
    assert claims["aud"] == "https://vault.azure.net" and claims["appid"] == sp["client_id"]
    assert token.expires_on > claims["iat"]


def test_certificate_client_assertion(sandbox, tmp_path):
    import datetime

    from azure.identity import CertificateCredential
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    manifest = sandbox.manifest
    sp = manifest["service_principals"][0]

    def make_cert():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "automation")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
                .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return key_pem + cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.PEM)

    registered_pem, registered_cert = make_cert()
    stranger_pem, _ = make_cert()
    thumbprint = sandbox.add_client_certificate(sp["client_id"], registered_cert)
    assert len(thumbprint) == 40
    path = tmp_path / "registered.pem"
    path.write_bytes(registered_pem)
    credential = CertificateCredential(
        manifest["tenant_id"], sp["client_id"], str(path), authority=manifest["authority_host"],
        disable_instance_discovery=True, connection_verify=manifest["ca_bundle"],
    )
    claims = decode_claims(credential.get_token(ARM_SCOPE).token)
    assert claims["appid"] == sp["client_id"] and claims["appidacr"] == "2"

    # A certificate the service principal never registered is refused.
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(stranger_pem)
    from azure.core.exceptions import ClientAuthenticationError

    with pytest.raises(ClientAuthenticationError) as refused:
        CertificateCredential(
            manifest["tenant_id"], sp["client_id"], str(stranger), authority=manifest["authority_host"],
            disable_instance_discovery=True, connection_verify=manifest["ca_bundle"],
        ).get_token(ARM_SCOPE)
    assert "AADSTS700027" in str(refused.value)


def test_client_session_is_recorded_from_body_and_query_separately(sandbox):
    manifest = sandbox.manifest
    since = sandbox.last_seq()
    app = _public_app(manifest)
    result = app.acquire_token_by_device_flow(app.initiate_device_flow([ARM_SCOPE]),
                                              data={"client_session": "body-session-1"})
    assert decode_claims(result["access_token"])["xms_cli_ses"] == "body-session-1"
    # The query-string variant, as a raw POST to the token endpoint.
    client = httpx_client(manifest)
    developer = next(u for u in manifest["users"] if u["name"] == "developer")
    response = client.post(
        f"{_authority(manifest)}/oauth2/v2.0/token", params={"client_session": "query-session-2"},
        data={"grant_type": "refresh_token", "client_id": manifest["public_client_id"],
              "refresh_token": result["refresh_token"], "scope": ARM_SCOPE},
    )
    assert response.status_code == 200
    assert decode_claims(response.json()["access_token"])["xms_cli_ses"] == "query-session-2"
    token_entries = [e for e in sandbox.requests(kind="token", since=since) if e["status"] == 200]
    assert [(e["client_session_body"], e["client_session_query"]) for e in token_entries] == [
        ("body-session-1", None), (None, "query-session-2")]
    assert token_entries[0]["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"
    assert token_entries[1]["subject_oid"] == developer["object_id"]
    assert all(e["issued_uti"] for e in token_entries)
    stats = sandbox.stats()
    assert stats["token_requests_by_session"]["body-session-1"] >= 1
    assert stats["token_requests_by_session"]["query-session-2"] >= 1
    assert stats["token_requests_by_grant"]["refresh_token"] >= 1


def test_claims_requests_become_claims(sandbox, sandbox_tokens):
    since = sandbox.last_seq()
    claims_request = {"access_token": {"xms_cli_sid": {"values": ["sid-42"]},
                                       "xms_agent_session": {"value": "agent-7"},
                                       "acrs": {"essential": True, "value": "c1"}}}
    token = sandbox_tokens.user_token(claims=claims_request)
    claims = decode_claims(token)
    assert claims["xms_cli_sid"] == "sid-42"
    assert claims["xms_agent_session"] == "agent-7"
    assert claims["acrs"] == ["c1"]
    entry = sandbox.requests(kind="token", since=since)[-1]
    assert json.loads(entry["claims"]) == claims_request
    bad = sandbox_tokens.client.post(sandbox_tokens.token_url, data={
        "grant_type": "client_credentials", "client_id": sandbox.manifest["service_principals"][0]["client_id"],
        "client_secret": sandbox.manifest["service_principals"][0]["client_secret"], "scope": ARM_SCOPE,
        "claims": "{not json"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


def test_scope_errors_are_aad_shaped(sandbox, sandbox_tokens):
    sp = sandbox.manifest["service_principals"][0]
    base = {"grant_type": "client_credentials", "client_id": sp["client_id"], "client_secret": sp["client_secret"]}
    unknown = sandbox_tokens.client.post(sandbox_tokens.token_url, data={**base, "scope": "https://example.com/.default"})
    assert unknown.status_code == 400 and unknown.json()["error_codes"] == [500011]
    two = sandbox_tokens.client.post(sandbox_tokens.token_url, data={**base, "scope": f"{ARM_SCOPE} {VAULT_SCOPE}"})
    assert two.status_code == 400 and two.json()["error_codes"] == [28000]
    grant = sandbox_tokens.client.post(sandbox_tokens.token_url, data={**base, "grant_type": "magic", "scope": ARM_SCOPE})
    assert grant.json()["error"] == "unsupported_grant_type"


def test_tokens_verify_against_the_published_jwks(sandbox, sandbox_tokens):
    manifest = sandbox.manifest
    client = httpx_client(manifest)
    config = client.get(f"{_authority(manifest)}/v2.0/.well-known/openid-configuration").json()
    assert config["token_endpoint"] == f"{_authority(manifest)}/oauth2/v2.0/token"
    assert config["device_authorization_endpoint"].endswith("/oauth2/v2.0/devicecode")
    jwks = client.get(config["jwks_uri"]).json()
    token = sandbox_tokens.app_token()
    key = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="https://management.azure.com/",
                        issuer=config["issuer"])
    assert claims["tid"] == manifest["tenant_id"]
    instance = client.get(f"{manifest['authority_host']}/common/discovery/instance",
                          params={"api-version": "1.1", "authorization_endpoint": config["authorization_endpoint"]})
    assert instance.json()["tenant_discovery_endpoint"].endswith("/v2.0/.well-known/openid-configuration")
    # every issued token has its own uti
    assert decode_claims(sandbox_tokens.app_token())["uti"] != claims["uti"]
