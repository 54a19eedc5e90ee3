"""The resource providers' agent rule: agent-tagged tokens may not read secrets."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from conftest import UserCredential, httpx_client

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
STORAGE = (f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app/providers/Microsoft.Storage/storageAccounts/"
           "stprodapp01")
SITE = f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app/providers/Microsoft.Web/sites/app-orders-prod"


def _post(sandbox, path, token, api_version):
    return httpx_client(sandbox.manifest).post(sandbox.manifest["arm_endpoint"] + path,
                                               params={"api-version": api_version},
                                               headers={"Authorization": f"Bearer {token}"})


def _secret_client(sandbox, credential):
    from azure.keyvault.secrets import SecretClient

    return SecretClient(sandbox.manifest["vaults"][0]["url"], credential, verify_challenge_resource=False,
                        connection_verify=sandbox.manifest["ca_bundle"])


@pytest.mark.parametrize("marker", ["session", "xms_cli_sid", "xms_agent_session"])
def test_agent_tagged_tokens_are_refused_list_keys(sandbox, sandbox_tokens, marker):
    if marker == "session":
        token = sandbox_tokens.user_token(session="agent-session-1")
    else:
        token = sandbox_tokens.user_token(claims={"access_token": {marker: {"values": ["agent-session-1"]}}})
    since = sandbox.last_seq()
    refused = _post(sandbox, STORAGE + "/listKeys", token, "2023-05-01")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "AgentSessionSecretAccessDenied"
    assert "agent-session token may not read secrets" in error["message"]
    assert "keys" not in refused.json()
    entry = sandbox.requests(kind="arm", since=since)[-1]
    assert entry["token_claims"][marker if marker != "session" else "xms_cli_ses"] == "agent-session-1"
    if marker == "session":
        assert entry["token_session"] == "agent-session-1"
    settings = _post(sandbox, SITE + "/config/appsettings/list", token, "2023-12-01")
    assert settings.status_code == 403 and settings.json()["error"]["code"] == "AgentSessionSecretAccessDenied"
    # Reads that return no secret stay allowed for agents.
    plain = httpx_client(sandbox.manifest).get(sandbox.manifest["arm_endpoint"] + STORAGE,
                                               params={"api-version": "2023-05-01"},
                                               headers={"Authorization": f"Bearer {token}"})
    assert plain.status_code == 200


def test_untagged_token_of_the_same_user_is_allowed(sandbox, sandbox_tokens):
    token = sandbox_tokens.user_token()
    allowed = _post(sandbox, STORAGE + "/listKeys", token, "2023-05-01")
    assert allowed.status_code == 200 and len(allowed.json()["keys"]) == 2


def test_agent_tagged_get_secret_is_refused_but_metadata_is_not(sandbox, sandbox_tokens):
    tagged = _secret_client(sandbox, UserCredential(sandbox_tokens, "developer", session="agent-session-2"))
    with pytest.raises(HttpResponseError) as refused:
        tagged.get_secret("db-password")
    assert refused.value.status_code == 403
    assert refused.value.error.code == "AgentSessionSecretAccessDenied"
    assert "db-password" in [p.name for p in tagged.list_properties_of_secrets()]
    untagged = _secret_client(sandbox, UserCredential(sandbox_tokens, "developer"))
    assert untagged.get_secret("db-password").value


def test_rbac_is_checked_before_the_agent_rule(sandbox, sandbox_tokens):
    token = sandbox_tokens.user_token("reader", session="agent-session-3")
    refused = _post(sandbox, STORAGE + "/listKeys", token, "2023-05-01")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "AuthorizationFailed"


def test_the_rule_can_be_switched_off_and_reset_turns_it_back_on(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    token = sandbox_tokens.user_token(session="agent-session-4")
    assert _post(sandbox, STORAGE + "/listKeys", token, "2023-05-01").status_code == 403
    sandbox.set_agent_rule(False)
    assert _post(sandbox, STORAGE + "/listKeys", token, "2023-05-01").status_code == 200
    tagged = _secret_client(sandbox, UserCredential(sandbox_tokens, "developer", session="agent-session-4"))
    assert tagged.get_secret("db-password").value
    sandbox.reset()
    assert _post(sandbox, STORAGE + "/listKeys", token, "2023-05-01").status_code == 403
