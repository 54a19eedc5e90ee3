"""Entra Agent ID in the sandbox: blueprint exchange (fmi_path), agent identity, user_fic, the sidecar.

The happy paths go through real MSAL confidential clients; the refusals through a plain HTTPS
client so each AAD error shape is asserted exactly.
"""

from __future__ import annotations

import json
import time

import msal
import pytest
from conftest import ARM_SCOPE, VAULT_SCOPE, decode_claims, httpx_client, requests_session

EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"


def _authority(manifest):
    return f"{manifest['authority_host']}/{manifest['tenant_id']}"


def _token_url(manifest):
    return _authority(manifest) + "/oauth2/v2.0/token"


def _blueprint_app(manifest, credential=None):
    ai = manifest["agent_identity"]
    return msal.ConfidentialClientApplication(
        ai["blueprint_client_id"], client_credential=credential or ai["blueprint_client_secret"],
        authority=_authority(manifest), http_client=requests_session(manifest), instance_discovery=False)


def _agent_app(manifest, blueprint):
    ai = manifest["agent_identity"]

    def exchange_token():
        result = blueprint.acquire_token_for_client([EXCHANGE_SCOPE], fmi_path=ai["agent_identity_id"])
        assert "access_token" in result, result
        return result["access_token"]

    return msal.ConfidentialClientApplication(
        ai["agent_identity_id"], client_credential={"client_assertion": exchange_token},
        authority=_authority(manifest), http_client=requests_session(manifest), instance_discovery=False)


def _post(manifest, data):
    return httpx_client(manifest).post(_token_url(manifest), data=data)


def _t1(manifest):
    ai = manifest["agent_identity"]
    response = _post(manifest, {"grant_type": "client_credentials", "client_id": ai["blueprint_client_id"],
                                "client_secret": ai["blueprint_client_secret"], "scope": EXCHANGE_SCOPE,
                                "fmi_path": ai["agent_identity_id"]})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _as_agent(manifest, assertion, **extra):
    return {"client_id": manifest["agent_identity"]["agent_identity_id"], "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion, **extra}


def _arm_get(sandbox, token, path, **params):
    params.setdefault("api-version", "2022-09-01")
    return httpx_client(sandbox.manifest).get(sandbox.manifest["arm_endpoint"] + path, params=params,
                                              headers={"Authorization": f"Bearer {token}"})


def _aad(response, status, error, code):
    body = response.json()
    assert response.status_code == status, body
    assert body["error"] == error and body["error_codes"] == [code], body
    assert body["error_description"].startswith(f"AADSTS{code}:")
    return body["error_description"]


def test_manifest_publishes_the_agent_principals_and_the_sidecar(sandbox):
    manifest = sandbox.manifest
    ai = manifest["agent_identity"]
    assert ai["blueprint_client_id"] == "5a1db0c5-b1e0-4000-a000-000000000b01" and ai["blueprint_client_secret"]
    assert ai["agent_identity_id"] == ai["agent_identity_object_id"] == "5a1db0c5-a9e0-4000-a000-000000000a11"
    assert ai["agent_user_upn"] == "agent-orders@sandbox.onmicrosoft.com"
    assert ai["project_identity_client_id"] != ai["agent_identity_id"]
    assert manifest["sidecar"] == manifest["arm_endpoint"] + "/_sidecar"
    # The agent identity holds no credential and the agent user cannot sign in: neither is listed as such.
    assert ai["agent_identity_id"] not in {sp["client_id"] for sp in manifest["service_principals"]}
    assert ai["agent_user_upn"] not in {u["upn"] for u in manifest["users"]}


def test_autonomous_agent_flow_with_msal(sandbox):
    manifest = sandbox.manifest
    ai = manifest["agent_identity"]
    since = sandbox.last_seq()
    agent = _agent_app(manifest, _blueprint_app(manifest))
    result = agent.acquire_token_for_client([ARM_SCOPE])
    assert "access_token" in result, result
    claims = decode_claims(result["access_token"])
    assert claims["idtyp"] == "app" and claims["appid"] == claims["azp"] == ai["agent_identity_id"]
    assert claims["oid"] == ai["agent_identity_object_id"] and "upn" not in claims
    assert "11" in claims["xms_act_fct"].split() and "11" in claims["xms_sub_fct"].split()
    assert claims["xms_par_app_azp"] == ai["blueprint_client_id"]
    # A second resource reuses MSAL's cached exchange token: one more request, by the agent identity.
    assert "access_token" in agent.acquire_token_for_client([VAULT_SCOPE])

    tokens = sandbox.requests(kind="token", since=since)
    assert [(e["client_id"], e["scope"], e["fmi_path"]) for e in tokens] == [
        (ai["blueprint_client_id"], EXCHANGE_SCOPE, ai["agent_identity_id"]),
        (ai["agent_identity_id"], ARM_SCOPE, None),
        (ai["agent_identity_id"], VAULT_SCOPE, None),
    ]
    exchange = tokens[0]["issued_claims"]
    assert exchange["aud"] == "api://AzureADTokenExchange" and exchange["appid"] == ai["blueprint_client_id"]
    assert exchange["sub"].startswith("/eid1/c/pub/t/") and exchange["sub"].endswith("/" + ai["agent_identity_id"])
    assert tokens[1]["issued_claims"]["xms_par_app_azp"] == ai["blueprint_client_id"]
    assert {e["agent_identity"] for e in tokens} == {ai["agent_identity_id"]}

    response = _arm_get(sandbox, result["access_token"], f"/subscriptions/{SUB_A}/resourcegroups")
    assert response.status_code == 200, response.text  # Reader on subscription A
    arm = sandbox.requests(kind="arm", since=since)[-1]["token_claims"]
    assert arm["appid"] == ai["agent_identity_id"] and arm["idtyp"] == "app"
    assert arm["xms_par_app_azp"] == ai["blueprint_client_id"] and "11" in arm["xms_sub_fct"]
    log = json.dumps(sandbox.requests(since=since))
    assert ai["blueprint_client_secret"] not in log and result["access_token"] not in log


@pytest.mark.parametrize("by", ["username", "user_object_id"])
def test_agent_user_flow_user_fic_with_msal(sandbox, by):
    manifest = sandbox.manifest
    ai = manifest["agent_identity"]
    since = sandbox.last_seq()
    agent = _agent_app(manifest, _blueprint_app(manifest))
    t2 = agent.acquire_token_for_client([EXCHANGE_SCOPE])["access_token"]
    t2_claims = decode_claims(t2)
    assert t2_claims["aud"] == "api://AzureADTokenExchange" and t2_claims["oid"] == ai["agent_identity_id"]
    who = {"username": ai["agent_user_upn"]} if by == "username" else {"user_object_id": ai["agent_user_object_id"]}
    result = agent.acquire_token_by_user_federated_identity_credential([ARM_SCOPE], t2, **who)
    assert "access_token" in result, result
    claims = decode_claims(result["access_token"])
    assert claims["idtyp"] == "user" and claims["upn"] == ai["agent_user_upn"]
    assert claims["oid"] == ai["agent_user_object_id"] and claims["appid"] == ai["agent_identity_id"]
    assert "13" in claims["xms_sub_fct"].split() and "11" in claims["xms_act_fct"].split()
    assert claims["xms_par_app_azp"] == ai["blueprint_client_id"] and claims["scp"] == "user_impersonation"
    assert "refresh_token" not in result
    user_fic = [e for e in sandbox.requests(kind="token", since=since) if e["grant_type"] == "user_fic"]
    assert len(user_fic) == 1 and user_fic[0]["agent_user"] == (ai["agent_user_upn"] if by == "username"
                                                                  else ai["agent_user_object_id"])
    assert user_fic[0]["issued_claims"]["upn"] == ai["agent_user_upn"]
    assert _arm_get(sandbox, result["access_token"], f"/subscriptions/{SUB_A}/resourcegroups").status_code == 200
    assert t2 not in json.dumps(sandbox.requests(since=since))


def test_blueprint_exchange_is_validated(sandbox):
    manifest = sandbox.manifest
    ai = manifest["agent_identity"]
    automation = manifest["service_principals"][0]
    base = {"grant_type": "client_credentials", "scope": EXCHANGE_SCOPE, "fmi_path": ai["agent_identity_id"]}
    _aad(_post(manifest, {**base, "client_id": "5a1db0c5-0000-4000-a000-00000000dead", "client_secret": "x"}),
         400, "unauthorized_client", 700016)
    _aad(_post(manifest, {**base, "client_id": ai["blueprint_client_id"], "client_secret": "wrong"}),
         401, "invalid_client", 7000215)
    message = _aad(_post(manifest, {**base, "client_id": ai["blueprint_client_id"],
                                    "client_secret": ai["blueprint_client_secret"],
                                    "fmi_path": ai["project_identity_client_id"]}), 400, "unauthorized_client", 82001)
    assert ai["project_identity_client_id"] in message and "its own agent identities" in message
    _aad(_post(manifest, {**base, "client_id": automation["client_id"], "client_secret": automation["client_secret"]}),
         400, "unauthorized_client", 82002)
    _aad(_post(manifest, {**base, "client_id": ai["blueprint_client_id"],
                          "client_secret": ai["blueprint_client_secret"], "scope": ARM_SCOPE}),
         400, "invalid_scope", 82007)
    failures = sandbox.requests(kind="token")[-5:]
    assert [e["status"] for e in failures] == [400, 401, 400, 400, 400]
    assert ai["blueprint_client_secret"] not in json.dumps(failures)


def test_agent_identity_needs_a_valid_exchange_token_from_its_blueprint(sandbox):
    manifest = sandbox.manifest
    ai = manifest["agent_identity"]
    resource = {"grant_type": "client_credentials", "scope": ARM_SCOPE}
    no_credential = {"grant_type": "client_credentials", "scope": ARM_SCOPE, "client_id": ai["agent_identity_id"]}
    _aad(_post(manifest, {**no_credential, "client_secret": ""}), 401, "invalid_client", 82003)
    _aad(_post(manifest, {**no_credential, "client_secret": "anything"}), 401, "invalid_client", 82003)

    t1 = _t1(manifest)
    header, payload, signature = t1.split(".")
    forged = ".".join([header, payload, signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")])
    _aad(_post(manifest, {**resource, **_as_agent(manifest, forged)}), 401, "invalid_client", 700027)

    claims = decode_claims(t1)
    signer = sandbox.state.tokens  # the sandbox's own key: mint exchange tokens valid in every way but one
    expired = signer.sign({**claims, "iat": claims["iat"] - 7200, "nbf": claims["nbf"] - 7200,
                           "exp": int(time.time()) - 60})
    _aad(_post(manifest, {**resource, **_as_agent(manifest, expired)}), 401, "invalid_client", 700024)
    other_sub = claims["sub"].rsplit("/", 1)[0] + "/" + ai["project_identity_client_id"]
    other_agent = signer.sign({**claims, "sub": other_sub})
    _aad(_post(manifest, {**resource, **_as_agent(manifest, other_agent)}), 401, "invalid_client", 700021)

    automation = manifest["service_principals"][0]
    plain = _post(manifest, {"grant_type": "client_credentials", "client_id": automation["client_id"],
                             "client_secret": automation["client_secret"], "scope": ARM_SCOPE}).json()["access_token"]
    _aad(_post(manifest, {**resource, **_as_agent(manifest, plain)}), 401, "invalid_client", 700212)
    good = _post(manifest, {**resource, **_as_agent(manifest, t1)})
    assert good.status_code == 200 and decode_claims(good.json()["access_token"])["appid"] == ai["agent_identity_id"]


def test_user_fic_is_validated(sandbox):
    manifest = sandbox.manifest
    ai = manifest["agent_identity"]
    t1 = _t1(manifest)
    t2 = _post(manifest, {"grant_type": "client_credentials", "scope": EXCHANGE_SCOPE,
                          **_as_agent(manifest, t1)}).json()["access_token"]
    base = {"grant_type": "user_fic", "scope": ARM_SCOPE + " openid profile", **_as_agent(manifest, t1)}
    _aad(_post(manifest, {**base, "username": ai["agent_user_upn"]}), 400, "invalid_request", 900144)
    _aad(_post(manifest, {**base, "user_federated_identity_credential": t1, "username": ai["agent_user_upn"]}),
         400, "invalid_grant", 82004)
    _aad(_post(manifest, {**base, "user_federated_identity_credential": t2}), 400, "invalid_request", 900144)
    _aad(_post(manifest, {**base, "user_federated_identity_credential": t2,
                          "username": "developer@sandbox.onmicrosoft.com"}), 400, "invalid_grant", 82005)
    _aad(_post(manifest, {**base, "user_federated_identity_credential": t2,
                          "username": "nobody@sandbox.onmicrosoft.com"}), 400, "invalid_grant", 50034)
    automation = manifest["service_principals"][0]
    _aad(_post(manifest, {**base, "client_id": automation["client_id"], "user_federated_identity_credential": t2,
                          "username": ai["agent_user_upn"]}), 400, "unauthorized_client", 82006)
    ok = _post(manifest, {**base, "user_federated_identity_credential": t2, "username": ai["agent_user_upn"]})
    assert ok.status_code == 200 and decode_claims(ok.json()["access_token"])["upn"] == ai["agent_user_upn"]
    # The agent user cannot sign in by itself.
    _aad(_post(manifest, {"grant_type": "password", "client_id": manifest["public_client_id"],
                          "username": ai["agent_user_upn"], "password": "", "scope": ARM_SCOPE}),
         400, "invalid_grant", 50126)
    log = json.dumps(sandbox.requests(kind="token"))
    assert t1 not in log and t2 not in log


def test_blueprint_authenticates_with_a_federated_credential(sandbox):
    """A managed identity's exchange token as the blueprint's credential (workload identity federation)."""
    manifest = sandbox.manifest
    ai = manifest["agent_identity"]
    automation, project = manifest["service_principals"][0], manifest["service_principals"][1]
    assert ai["blueprint_federated_subjects"] == [automation["object_id"]]

    def exchange_token_of(app):
        response = _post(manifest, {"grant_type": "client_credentials", "client_id": app["client_id"],
                                    "client_secret": app["client_secret"], "scope": EXCHANGE_SCOPE})
        return response.json()["access_token"]

    base = {"grant_type": "client_credentials", "client_id": ai["blueprint_client_id"], "scope": EXCHANGE_SCOPE,
            "fmi_path": ai["agent_identity_id"], "client_assertion_type": JWT_BEARER}
    ok = _post(manifest, {**base, "client_assertion": exchange_token_of(automation)})
    assert ok.status_code == 200, ok.text
    assert decode_claims(ok.json()["access_token"])["appid"] == ai["blueprint_client_id"]
    _aad(_post(manifest, {**base, "client_assertion": exchange_token_of(project)}), 401, "invalid_client", 700213)


def test_wrong_identity_switch_answers_with_the_project_identity(fresh_sandbox_state):
    sandbox = fresh_sandbox_state
    manifest = sandbox.manifest
    ai = manifest["agent_identity"]
    sandbox.set_wrong_identity(True)
    since = sandbox.last_seq()
    t1 = _t1(manifest)
    assert decode_claims(t1)["appid"] == ai["blueprint_client_id"]  # the blueprint's exchange is unaffected
    resource = _post(manifest, {"grant_type": "client_credentials", "scope": ARM_SCOPE, **_as_agent(manifest, t1)})
    claims = decode_claims(resource.json()["access_token"])
    assert claims["appid"] == ai["project_identity_client_id"] and claims["oid"] == ai["project_identity_object_id"]
    assert "xms_act_fct" not in claims and "xms_par_app_azp" not in claims
    t2 = _post(manifest, {"grant_type": "client_credentials", "scope": EXCHANGE_SCOPE,
                          **_as_agent(manifest, t1)}).json()["access_token"]
    assert decode_claims(t2)["appid"] == ai["agent_identity_id"]
    user = _post(manifest, {"grant_type": "user_fic", "scope": ARM_SCOPE, "user_federated_identity_credential": t2,
                            "username": ai["agent_user_upn"], **_as_agent(manifest, t1)})
    assert decode_claims(user.json()["access_token"])["appid"] == ai["project_identity_client_id"]
    flagged = [e for e in sandbox.requests(kind="token", since=since) if e.get("wrong_identity")]
    assert [e["grant_type"] for e in flagged] == ["client_credentials", "user_fic"]
    # The resource cannot tell: the project identity is a Reader too.
    listed = _arm_get(sandbox, resource.json()["access_token"], f"/subscriptions/{SUB_A}/resourcegroups")
    assert listed.status_code == 200

    sandbox.reset()
    again = _post(manifest, {"grant_type": "client_credentials", "scope": ARM_SCOPE,
                             **_as_agent(manifest, _t1(manifest))})
    assert decode_claims(again.json()["access_token"])["appid"] == ai["agent_identity_id"]
    admin = httpx_client(manifest).get(manifest["admin"] + "/wrong-identity").json()
    assert admin == {"enabled": False}


def _sidecar(manifest, api="arm", method="GET", **params):
    return httpx_client(manifest).request(method, f"{manifest['sidecar']}/AuthorizationHeaderUnauthenticated/{api}",
                                          params=params)


def _bearer(response):
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    header = response.json()["authorizationHeader"]
    assert header.startswith("Bearer ")
    return decode_claims(header[len("Bearer "):])


def test_sidecar_contract(fresh_sandbox_state):
    sandbox = fresh_sandbox_state
    manifest = sandbox.manifest
    ai = manifest["agent_identity"]
    since = sandbox.last_seq()
    autonomous = _bearer(_sidecar(manifest, AgentIdentity=ai["agent_identity_id"]))
    assert autonomous["appid"] == ai["agent_identity_id"] and autonomous["idtyp"] == "app"
    assert autonomous["aud"] == "https://management.azure.com/"
    internal = sandbox.requests(kind="token", since=since)
    assert [(e["via"], e["client_id"], e["fmi_path"]) for e in internal] == [
        ("sidecar", ai["blueprint_client_id"], ai["agent_identity_id"]),
        ("sidecar", ai["agent_identity_id"], None)]

    # Cached like the real sidecar: no new token request for the same identity and API.
    seq = sandbox.last_seq()
    assert _bearer(_sidecar(manifest, AgentIdentity=ai["agent_identity_id"]))["uti"] == autonomous["uti"]
    assert sandbox.requests(kind="token", since=seq) == []
    assert sandbox.requests(kind="sidecar", since=seq)[0]["cache_hit"] is True

    vault = _bearer(_sidecar(manifest, "vault", AgentIdentity=ai["agent_identity_id"]))
    assert vault["aud"] == "https://vault.azure.net"
    by_upn = _bearer(_sidecar(manifest, AgentIdentity=ai["agent_identity_id"], AgentUsername=ai["agent_user_upn"]))
    assert by_upn["upn"] == ai["agent_user_upn"] and "13" in by_upn["xms_sub_fct"].split()
    by_oid = _bearer(_sidecar(manifest, AgentIdentity=ai["agent_identity_id"], AgentUserId=ai["agent_user_object_id"]))
    assert by_oid["oid"] == ai["agent_user_object_id"]
    upn_wins = _bearer(_sidecar(manifest, AgentIdentity=ai["agent_identity_id"], AgentUsername=ai["agent_user_upn"],
                                AgentUserId="00000000-0000-0000-0000-000000000000"))
    assert upn_wins["upn"] == ai["agent_user_upn"]
    own = _bearer(_sidecar(manifest, AgentUsername=ai["agent_user_upn"]))  # no AgentIdentity: the blueprint itself
    assert own["appid"] == ai["blueprint_client_id"] and "upn" not in own
    scoped = _bearer(_sidecar(manifest, "anything", AgentIdentity=ai["agent_identity_id"],
                              **{"optionsOverride.Scopes": VAULT_SCOPE}))
    assert scoped["aud"] == "https://vault.azure.net"
    challenge = json.dumps({"access_token": {"acrs": {"essential": True, "value": "c1"}}})
    stepped_up = _bearer(_sidecar(manifest, AgentIdentity=ai["agent_identity_id"],
                                  **{"optionsOverride.AcquireTokenOptions.Claims": challenge}))
    assert stepped_up["acrs"] == ["c1"] and stepped_up["uti"] != autonomous["uti"]  # a challenge skips the cache

    entries = sandbox.requests(since=since)
    sidecar_log = [e for e in entries if e["kind"] == "sidecar"]
    assert all(e["api_name"] and e["status"] == 200 for e in sidecar_log)
    assert {e["agent_user"] for e in sidecar_log} >= {ai["agent_user_upn"], ai["agent_user_object_id"]}
    assert ai["blueprint_client_secret"] not in json.dumps(entries)
    assert sandbox.stats()["sidecar_requests"] == len(sidecar_log)


def test_sidecar_errors_are_problem_details(fresh_sandbox_state):
    sandbox = fresh_sandbox_state
    manifest = sandbox.manifest
    ai = manifest["agent_identity"]

    def problem(response, status):
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["status"] == status and body["title"] and body["type"].startswith("https://")
        return body["detail"]

    assert problem(_sidecar(manifest, "graphish", AgentIdentity=ai["agent_identity_id"]), 400) == \
        "Not able to resolve 'graphish'."
    assert problem(_sidecar(manifest, AgentIdentity=ai["agent_identity_id"], AgentUserId="not-a-guid"), 400) == \
        "AgentUserId must be a non-empty GUID."
    detail = problem(_sidecar(manifest, AgentIdentity=ai["project_identity_client_id"]), 401)
    assert detail.startswith("AADSTS82001:")
    detail = problem(_sidecar(manifest, AgentIdentity=ai["agent_identity_id"],
                              AgentUsername="developer@sandbox.onmicrosoft.com"), 401)
    assert detail.startswith("AADSTS82005:")
    problem(_sidecar(manifest, method="POST", AgentIdentity=ai["agent_identity_id"]), 405)
    health = httpx_client(manifest).get(manifest["sidecar"] + "/healthz")
    assert health.status_code == 200 and health.text == "Healthy"
    failed = [e for e in sandbox.requests(kind="token") if e.get("via") == "sidecar" and e["status"] != 200]
    assert {e["aadsts"] for e in failed} == {82001, 82005}


def test_sidecar_follows_the_wrong_identity_switch(fresh_sandbox_state):
    sandbox = fresh_sandbox_state
    manifest = sandbox.manifest
    ai = manifest["agent_identity"]
    assert _bearer(_sidecar(manifest, AgentIdentity=ai["agent_identity_id"]))["appid"] == ai["agent_identity_id"]
    sandbox.set_wrong_identity(True)  # drops the sidecar's cache, so the switch bites at once
    assert _bearer(_sidecar(manifest, AgentIdentity=ai["agent_identity_id"]))["appid"] == \
        ai["project_identity_client_id"]
