"""The Key Vault data plane, driven by azure-keyvault-secrets' SecretClient (challenge flow)."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from conftest import UserCredential, httpx_client


def _client(sandbox, credential, vault="kv-sandbox-prod"):
    from azure.keyvault.secrets import SecretClient

    env = sandbox.environment()
    return SecretClient(env.vault_url(vault), credential, verify_challenge_resource=env.verify_challenge_resource,
                        connection_verify=sandbox.manifest["ca_bundle"])


def test_challenge_flow_then_get_and_list(sandbox, sandbox_tokens):
    from azure.keyvault.secrets._shared import HttpChallengeCache

    HttpChallengeCache.clear()  # challenges are cached per vault URL across clients; start from none
    credential = UserCredential(sandbox_tokens, "developer")
    client = _client(sandbox, credential)
    since = sandbox.last_seq()
    secret = client.get_secret("db-password")
    assert secret.value.startswith("Sql-") and secret.properties.version
    entries = sandbox.requests(kind="vault", since=since)
    assert [(e["status"], e.get("token_claims") is not None) for e in entries] == [(401, False), (200, True)]
    assert credential.calls[-1]["scopes"] == ("https://vault.azure.net/.default",)
    assert entries[1]["operation"] == "Microsoft.KeyVault/vaults/secrets/getSecret/action"

    by_version = client.get_secret("db-password", secret.properties.version)
    assert by_version.value == secret.value
    names = sorted(p.name for p in client.list_properties_of_secrets())
    assert names == ["api-key", "db-password", "signing-cert-password", "storage-connection"]
    listed = [e for e in sandbox.requests(kind="vault", since=since) if e["path"].endswith("/secrets")]
    assert listed[-1]["operation"] == "Microsoft.KeyVault/vaults/secrets/readMetadata/action"


def test_list_is_paged_with_names_and_attributes_only(sandbox, sandbox_tokens):
    client = httpx_client(sandbox.manifest)
    token = sandbox_tokens.user_token(scope="https://vault.azure.net/.default")
    url = sandbox.manifest["vaults"][0]["url"] + "/secrets"
    first = client.get(url, params={"api-version": "7.5", "maxresults": "3"},
                       headers={"Authorization": f"Bearer {token}"}).json()
    assert len(first["value"]) == 3 and first["nextLink"].startswith(sandbox.manifest["vaults"][0]["url"])
    assert all("value" not in item and "attributes" in item for item in first["value"])
    second = client.get(first["nextLink"], headers={"Authorization": f"Bearer {token}"}).json()
    assert len(second["value"]) == 1 and second["nextLink"] is None


def test_set_get_delete_with_soft_delete_poller(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    client = _client(sandbox, UserCredential(sandbox_tokens, "developer"))
    first = client.set_secret("new-secret", "value-1", content_type="text/plain", tags={"a": "b"})
    second = client.set_secret("new-secret", "value-2")
    assert first.properties.version != second.properties.version
    assert client.get_secret("new-secret").value == "value-2"
    assert client.get_secret("new-secret", first.properties.version).value == "value-1"
    versions = list(client.list_properties_of_secret_versions("new-secret"))
    assert len(versions) == 2
    deleted = client.begin_delete_secret("new-secret").result()
    assert deleted.name == "new-secret" and deleted.recovery_id.endswith("/deletedsecrets/new-secret")
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("new-secret")
    assert client.get_deleted_secret("new-secret").name == "new-secret"
    with pytest.raises(HttpResponseError) as conflict:
        client.set_secret("new-secret", "again")
    assert conflict.value.status_code == 409
    client.begin_recover_deleted_secret("new-secret").result()
    assert client.get_secret("new-secret").value == "value-2"
    assert "value-2" not in json.dumps(sandbox.requests(kind="vault"))


def test_data_actions_are_checked_against_role_assignments(sandbox, sandbox_tokens):
    # The reader has Reader on subscription A: management-plane reads only, no DataActions.
    reader_client = _client(sandbox, UserCredential(sandbox_tokens, "reader"))
    with pytest.raises(HttpResponseError) as denied:
        reader_client.get_secret("db-password")
    assert denied.value.status_code == 403
    assert denied.value.error.code == "Forbidden"
    assert "Microsoft.KeyVault/vaults/secrets/getSecret/action" in denied.value.message
    with pytest.raises(HttpResponseError):
        list(reader_client.list_properties_of_secrets())
    # The developer is Secrets Officer on kv-sandbox-prod only, not on kv-sandbox-dev.
    dev_client = _client(sandbox, UserCredential(sandbox_tokens, "developer"), vault="kv-sandbox-dev")
    with pytest.raises(HttpResponseError) as other_vault:
        dev_client.get_secret("db-password")
    assert other_vault.value.status_code == 403


def test_unauthenticated_challenge_and_wrong_audience(sandbox, sandbox_tokens):
    client = httpx_client(sandbox.manifest)
    url = sandbox.manifest["vaults"][0]["url"] + "/secrets/db-password"
    bare = client.get(url, params={"api-version": "7.5"})
    assert bare.status_code == 401
    authority = f"{sandbox.manifest['authority_host']}/{sandbox.manifest['tenant_id']}"
    assert bare.headers["www-authenticate"] == (
        f'Bearer authorization="{authority}", resource="https://vault.azure.net"')
    arm_token = sandbox_tokens.user_token()
    wrong = client.get(url, params={"api-version": "7.5"}, headers={"Authorization": f"Bearer {arm_token}"})
    assert wrong.status_code == 401 and "audience" in wrong.json()["error"]["message"]
    missing = client.get(sandbox.manifest["authority_host"] + "/vaults/no-such-vault/secrets",
                         params={"api-version": "7.5"})
    assert missing.status_code == 404
