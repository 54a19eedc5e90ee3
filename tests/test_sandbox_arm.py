"""ARM in the sandbox, driven by azure-mgmt-resource and plain HTTPS requests."""

from __future__ import annotations

import json
import time

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from conftest import ARM_SCOPE, UserCredential, httpx_client

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
SUB_B = "5a1db0c5-b000-4000-a000-00000000000b"
STORAGE_A = (f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app/providers/Microsoft.Storage/storageAccounts/"
             "stprodapp01")


def _clients(sandbox, credential, subscription=SUB_A):
    from azure.mgmt.resource.resources import ResourceManagementClient
    from azure.mgmt.resource.subscriptions import SubscriptionClient

    common = {"base_url": sandbox.manifest["arm_endpoint"], "credential_scopes": [ARM_SCOPE],
              "connection_verify": sandbox.manifest["ca_bundle"]}
    return ResourceManagementClient(credential, subscription, **common), SubscriptionClient(credential, **common)


def _arm(sandbox, method, path, token=None, api_version="2022-09-01", **kwargs):
    client = httpx_client(sandbox.manifest)
    params = dict(kwargs.pop("params", {}) or {})
    if api_version:
        params["api-version"] = api_version
    headers = dict(kwargs.pop("headers", {}) or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.request(method, sandbox.manifest["arm_endpoint"] + path, params=params, headers=headers, **kwargs)


def test_subscriptions_are_listed_and_read(sandbox, developer_credential):
    _, subs = _clients(sandbox, developer_credential)
    listed = {s.subscription_id: s.display_name for s in subs.subscriptions.list()}
    assert listed == {SUB_A: "Sandbox Production", SUB_B: "Sandbox Development"}
    assert [m["id"] for m in sandbox.manifest["subscriptions"]] == [SUB_A, SUB_B]
    one = subs.subscriptions.get(SUB_B)
    assert one.display_name == "Sandbox Development" and one.state == "Enabled"
    tenants = list(subs.tenants.list())
    assert [t.tenant_id for t in tenants] == [sandbox.manifest["tenant_id"]]
    assert {loc.name for loc in subs.subscriptions.list_locations(SUB_A)} >= {"eastus", "westeurope"}


def test_reader_sees_only_subscription_a(sandbox, sandbox_tokens):
    _, subs = _clients(sandbox, UserCredential(sandbox_tokens, "reader"))
    assert [s.subscription_id for s in subs.subscriptions.list()] == [SUB_A]


def test_resource_group_create_get_delete_with_lro(fresh_sandbox_state, developer_credential):
    sandbox = fresh_sandbox_state
    resources, _ = _clients(sandbox, developer_credential)
    created = resources.resource_groups.create_or_update("rg-made-by-test", {"location": "westus2",
                                                                              "tags": {"purpose": "test"}})
    assert created.id == f"/subscriptions/{SUB_A}/resourceGroups/rg-made-by-test"
    assert created.properties.provisioning_state == "Succeeded"
    assert resources.resource_groups.get("RG-MADE-BY-TEST").tags == {"purpose": "test"}  # case-insensitive
    assert resources.resource_groups.check_existence("rg-made-by-test") is True
    since = sandbox.last_seq()
    poller = resources.resource_groups.begin_delete("rg-made-by-test")
    poller.result()
    assert poller.status().lower() == "succeeded"
    log = [(e["method"], e["status"], e["operation"]) for e in sandbox.requests(kind="arm", since=since)]
    assert log[0] == ("DELETE", 202, "Microsoft.Resources/subscriptions/resourceGroups/delete")
    assert ("GET", 200, "Microsoft.Resources/subscriptions/operationresults/read") in log
    with pytest.raises(ResourceNotFoundError) as missing:
        resources.resource_groups.get("rg-made-by-test")
    assert missing.value.error.code == "ResourceGroupNotFound"
    assert resources.resource_groups.check_existence("rg-made-by-test") is False
    names = {g.name for g in resources.resource_groups.list()}
    assert names == {"rg-prod-app", "rg-prod-network", "rg-prod-data"}


def test_resources_page_with_top_across_three_pages(sandbox, developer_credential):
    resources, _ = _clients(sandbox, developer_credential)
    since = sandbox.last_seq()
    items = list(resources.resources.list(top=10))
    assert len(items) == 29 and len({i.id for i in items}) == 29
    pages = [e for e in sandbox.requests(kind="arm", since=since) if e["path"].endswith("/resources")]
    assert len(pages) == 3
    assert all(e["status"] == 200 for e in pages)
    assert "$skiptoken" in pages[1]["query"] and "$skiptoken" not in pages[0]["query"]
    group_items = list(resources.resources.list_by_resource_group("rg-prod-network", top=4))
    assert len(group_items) == 11


def test_resources_filter_by_type(sandbox, developer_credential):
    resources, _ = _clients(sandbox, developer_credential)
    storage = list(resources.resources.list(filter="resourceType eq 'Microsoft.Storage/storageAccounts'"))
    assert sorted(s.name for s in storage) == ["stprodapp01", "stprodbackup01", "stproddata01", "stprodlogs01"]
    assert all(s.type == "Microsoft.Storage/storageAccounts" and s.sku.name == "Standard_LRS" for s in storage)
    vms = list(resources.resources.list_by_resource_group(
        "rg-prod-network", filter="resourceType eq 'microsoft.compute/virtualmachines'"))
    assert sorted(v.name for v in vms) == ["vm-jump-prod", "vm-worker-01"]
    with pytest.raises(HttpResponseError) as bad:
        list(resources.resources.list(filter="properties/foo gt 3"))
    assert bad.value.status_code == 400


def test_generic_get_put_delete_and_provider_metadata(fresh_sandbox_state, developer_credential):
    sandbox = fresh_sandbox_state
    resources, _ = _clients(sandbox, developer_credential)
    provider = resources.providers.get("Microsoft.Compute")
    vm_type = next(t for t in provider.resource_types if t.resource_type == "virtualMachines")
    version = vm_type.api_versions[0]
    vm_id = (f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-network/providers/Microsoft.Compute/virtualMachines/"
             "vm-jump-prod")
    vm = resources.resources.get_by_id(vm_id, api_version=version)
    nic_id = vm.properties["networkProfile"]["networkInterfaces"][0]["id"]
    nic = resources.resources.get_by_id(nic_id, api_version="2024-01-01")
    assert nic.properties["ipConfigurations"][0]["properties"]["publicIPAddress"]["id"].endswith("pip-vm-jump-prod")
    disk = resources.resources.get_by_id(vm.properties["storageProfile"]["osDisk"]["managedDisk"]["id"],
                                         api_version="2023-10-02")
    assert disk.properties["diskState"] == "Attached"
    vnet = resources.resources.get_by_id(vm_id.replace("Microsoft.Compute/virtualMachines/vm-jump-prod",
                                                       "Microsoft.Network/virtualNetworks/vnet-prod/subnets/default"),
                                         api_version="2024-01-01")
    assert vnet.name == "default"

    new_id = vm_id.replace("Microsoft.Compute/virtualMachines/vm-jump-prod", "Microsoft.Network/publicIPAddresses/pip-x")
    created = resources.resources.begin_create_or_update_by_id(
        new_id, {"location": "eastus", "properties": {"publicIPAllocationMethod": "Static"}},
        api_version="2024-01-01").result()
    assert created.id == new_id and created.properties["provisioningState"] == "Succeeded"
    resources.resources.begin_delete_by_id(new_id, api_version="2024-01-01").result()
    with pytest.raises(ResourceNotFoundError) as gone:
        resources.resources.get_by_id(new_id, api_version="2024-01-01")
    assert gone.value.error.code == "ResourceNotFound"
    with pytest.raises(HttpResponseError) as wrong_version:
        resources.resources.get_by_id(vm_id, api_version="1999-01-01")
    assert wrong_version.value.error.code == "NoRegisteredProviderFound"


def test_storage_keys_and_web_app_settings(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    token = sandbox_tokens.user_token()
    keys = _arm(sandbox, "POST", STORAGE_A + "/listKeys", token, "2023-05-01").json()["keys"]
    assert [k["keyName"] for k in keys] == ["key1", "key2"] and len(keys[0]["value"]) == 88
    regenerated = _arm(sandbox, "POST", STORAGE_A + "/regenerateKey", token, "2023-05-01",
                       json={"keyName": "key1"}).json()["keys"]
    assert regenerated[0]["value"] != keys[0]["value"] and regenerated[1]["value"] == keys[1]["value"]
    bad = _arm(sandbox, "POST", STORAGE_A + "/regenerateKey", token, "2023-05-01", json={"keyName": "key9"})
    assert bad.status_code == 400
    site = f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app/providers/Microsoft.Web/sites/app-orders-prod"
    settings = _arm(sandbox, "POST", site + "/config/appsettings/list", token, "2023-12-01").json()
    assert "Password=" in settings["properties"]["DB_CONNECTION_STRING"]
    strings = _arm(sandbox, "POST", site + "/config/connectionstrings/list", token, "2023-12-01").json()
    assert strings["properties"]["OrdersDb"]["type"] == "SQLAzure"
    vault = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app/providers/Microsoft.KeyVault/"
                 "vaults/kv-sandbox-prod", token, "2023-07-01").json()
    assert vault["properties"]["vaultUri"].rstrip("/") == sandbox.manifest["vaults"][0]["url"]


def test_role_assignments_and_definitions(sandbox, sandbox_tokens):
    token = sandbox_tokens.user_token()
    developer = next(u for u in sandbox.manifest["users"] if u["name"] == "developer")
    group = f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app"
    all_here = _arm(sandbox, "GET", group + "/providers/Microsoft.Authorization/roleAssignments", token,
                    "2022-04-01").json()["value"]
    scopes = {a["properties"]["scope"] for a in all_here}
    assert f"/subscriptions/{SUB_A}" in scopes  # inherited from above
    assert group in scopes  # at
    assert any(s.endswith("/vaults/kv-sandbox-prod") for s in scopes)  # below
    at_scope = _arm(sandbox, "GET", group + "/providers/Microsoft.Authorization/roleAssignments", token,
                    "2022-04-01", params={"$filter": "atScope()"}).json()["value"]
    assert not any(a["properties"]["scope"].endswith("kv-sandbox-prod") for a in at_scope)
    mine = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}/providers/Microsoft.Authorization/roleAssignments", token,
                "2022-04-01", params={"$filter": f"principalId eq '{developer['object_id']}'"}).json()["value"]
    assert {a["properties"]["roleDefinitionId"].rsplit("/", 1)[1] for a in mine} == {
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"}
    roles = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}/providers/Microsoft.Authorization/roleDefinitions", token,
                 "2022-04-01").json()["value"]
    by_name = {r["properties"]["roleName"]: r for r in roles}
    assert set(by_name) == {"Owner", "Contributor", "Reader", "Key Vault Secrets User", "Key Vault Secrets Officer",
                            "Website Contributor", "User Access Administrator"}
    assert by_name["Reader"]["properties"]["permissions"][0]["actions"] == ["*/read"]
    assert "Microsoft.Authorization/*/Write" in by_name["Contributor"]["properties"]["permissions"][0]["notActions"]
    one = _arm(sandbox, "GET", by_name["Owner"]["id"], token, "2022-04-01").json()
    assert one["properties"]["roleName"] == "Owner"


def test_missing_api_version_and_unknown_routes(sandbox, sandbox_tokens):
    token = sandbox_tokens.user_token()
    missing = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}/resourceGroups", token, api_version=None)
    assert missing.status_code == 400
    assert missing.json() == {"error": {"code": "MissingApiVersionParameter", "message":
                              "The api-version query parameter (?api-version=) is required for all requests."}}
    unknown = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}/nonsense/path", token)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NotFound"
    bad_type = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app/providers/Microsoft.Foo/"
                    "bars/x", token)
    assert bad_type.status_code == 404 and bad_type.json()["error"]["code"] == "InvalidResourceNamespace"
    no_sub = _arm(sandbox, "GET", "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups", token)
    assert no_sub.status_code == 404 and no_sub.json()["error"]["code"] == "SubscriptionNotFound"


def test_401_bodies_and_challenge_headers(sandbox, sandbox_tokens):
    path = f"/subscriptions/{SUB_A}/resourceGroups"
    missing = _arm(sandbox, "GET", path)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "AuthenticationFailed"
    challenge = missing.headers["www-authenticate"]
    authority = f"{sandbox.manifest['authority_host']}/{sandbox.manifest['tenant_id']}"
    assert challenge.startswith(f'Bearer authorization_uri="{authority}", error="invalid_token"')
    assert 'error_description="' in challenge

    token = sandbox_tokens.user_token()
    header, payload, signature = token.split(".")
    tampered = ".".join([header, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")])
    bad_sig = _arm(sandbox, "GET", path, tampered)
    assert bad_sig.status_code == 401 and bad_sig.json()["error"]["code"] == "InvalidAuthenticationToken"
    garbage = _arm(sandbox, "GET", path, "not-a-jwt")
    assert garbage.status_code == 401 and "invalid_token" in garbage.headers["www-authenticate"]

    vault_token = sandbox_tokens.user_token(scope="https://vault.azure.net/.default")
    audience = _arm(sandbox, "GET", path, vault_token)
    assert audience.status_code == 401
    assert audience.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    assert "'https://vault.azure.net'" in audience.json()["error"]["message"]


def test_expired_tokens_get_expired_authentication_token(tmp_path):
    from azure_agent_mcp.sandbox import Sandbox
    from conftest import SandboxTokens

    with Sandbox(state_dir=tmp_path / "short", token_lifetime=1) as short:
        token = SandboxTokens(short.manifest).user_token()
        time.sleep(2.1)
        expired = _arm(short, "GET", f"/subscriptions/{SUB_A}/resourceGroups", token)
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "ExpiredAuthenticationToken"
    assert "earlier than current UTC time" in expired.json()["error"]["message"]


def test_403_authorization_failed_message(sandbox, sandbox_tokens):
    reader = next(u for u in sandbox.manifest["users"] if u["name"] == "reader")
    token = sandbox_tokens.user_token("reader")
    denied = _arm(sandbox, "PUT", f"/subscriptions/{SUB_A}/resourceGroups/rg-new", token, json={"location": "eastus"})
    assert denied.status_code == 403
    error = denied.json()["error"]
    assert error["code"] == "AuthorizationFailed"
    assert error["message"] == (
        f"The client '{reader['upn']}' with object id '{reader['object_id']}' does not have authorization to "
        "perform action 'Microsoft.Resources/subscriptions/resourceGroups/write' over scope "
        f"'/subscriptions/{SUB_A}/resourceGroups/rg-new' or the scope is invalid. If access was recently granted, "
        "please refresh your credentials.")
    # Reader may read but not list keys.
    assert _arm(sandbox, "GET", STORAGE_A, token, "2023-05-01").status_code == 200
    keys = _arm(sandbox, "POST", STORAGE_A + "/listKeys", token, "2023-05-01")
    assert keys.status_code == 403 and "Microsoft.Storage/storageAccounts/listKeys/action" in keys.text
    # Reader has nothing on subscription B.
    other = _arm(sandbox, "GET", f"/subscriptions/{SUB_B}/resourceGroups", token)
    assert other.status_code == 403


def test_service_principal_is_contributor_on_one_group_only(sandbox, sandbox_tokens):
    sp = sandbox.manifest["service_principals"][0]
    token = sandbox_tokens.app_token()
    groups = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}/resourcegroups", token).json()["value"]
    assert [g["name"] for g in groups] == ["rg-prod-app"]
    listed = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}/resources", token).json()["value"]
    assert listed and all("/resourceGroups/rg-prod-app/" in r["id"] for r in listed)
    assert _arm(sandbox, "POST", STORAGE_A + "/listKeys", token, "2023-05-01").status_code == 200
    other = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-data", token)
    assert other.status_code == 403 and f"The client '{sp['client_id']}'" in other.json()["error"]["message"]
    # Contributor cannot write role assignments (NotActions).
    assignment = _arm(
        sandbox, "PUT", f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app/providers/Microsoft.Authorization/"
        "roleAssignments/11111111-2222-4333-8444-555555555555", token, "2022-04-01",
        json={"properties": {"roleDefinitionId": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
                             "principalId": sp["object_id"]}})
    assert assignment.status_code == 403


def test_role_assignment_grants_take_effect(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    reader = next(u for u in sandbox.manifest["users"] if u["name"] == "reader")
    reader_token = sandbox_tokens.user_token("reader")
    path = f"/subscriptions/{SUB_B}/resourceGroups"
    assert _arm(sandbox, "GET", path, reader_token).status_code == 403
    granted = _arm(sandbox, "PUT", f"/subscriptions/{SUB_B}/providers/Microsoft.Authorization/roleAssignments/"
                   "5a1db0c5-1234-4000-a000-000000000001", sandbox_tokens.user_token(), "2022-04-01",
                   json={"properties": {"roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/"
                                        "acdd72a7-3385-48ef-bd42-f606fba81ae7", "principalId": reader["object_id"]}})
    assert granted.status_code == 403  # the developer is only Reader on B
    granted = _arm(sandbox, "PUT", f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-data/providers/"
                   "Microsoft.Authorization/roleAssignments/5a1db0c5-1234-4000-a000-000000000002",
                   sandbox_tokens.user_token(), "2022-04-01",
                   json={"properties": {"roleDefinitionId": "b24988ac-6180-42a0-ab88-20f7382dd24c",
                                        "principalId": reader["object_id"]}})
    assert granted.status_code == 201
    created = _arm(sandbox, "PUT", f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-data/providers/Microsoft.Cache/"
                   "redis/redis-new", reader_token, "2024-03-01", json={"location": "westeurope"})
    assert created.status_code == 201


def test_correlation_id_and_user_agent_are_logged(sandbox, developer_credential):
    resources, _ = _clients(sandbox, developer_credential)
    since = sandbox.last_seq()
    resources.resource_groups.get("rg-prod-app", headers={"x-ms-correlation-request-id": "corr-123"})
    entry = sandbox.requests(kind="arm", since=since)[-1]
    assert entry["correlation_id"] == "corr-123"
    assert "azsdk-python-mgmt-resource" in entry["user_agent"]
    assert entry["operation"] == "Microsoft.Resources/subscriptions/resourceGroups/read"
    assert entry["token_claims"]["upn"] == "developer@sandbox.onmicrosoft.com"
    assert "access_token" not in json.dumps(entry) and "Bearer" not in json.dumps(entry)


def test_cloud_metadata_is_served_without_a_token(sandbox):
    """As in Azure, so `az cloud register --endpoint-resource-manager` can discover the sandbox."""
    with httpx_client(sandbox.manifest) as http:
        response = http.get(sandbox.manifest["arm_endpoint"] + "/metadata/endpoints", params={"api-version": "2022-09-01"})
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["resourceManager"].rstrip("/") == sandbox.manifest["arm_endpoint"]
    assert metadata["authentication"]["loginEndpoint"].rstrip("/") == sandbox.manifest["authority_host"]
    assert "https://management.core.windows.net/" in metadata["authentication"]["audiences"]


@pytest.mark.parametrize("body", [b'{"location": ' + b"9" * 5000 + b"}", b"[" * 100_000 + b"]" * 100_000],
                         ids=["an int over Python's digit limit", "nesting deeper than the recursion limit"])
def test_a_body_json_cannot_read_is_a_400_on_arm_and_key_vault_never_a_500(sandbox, sandbox_tokens, body):
    token = sandbox_tokens.user_token()
    put = _arm(sandbox, "PUT", f"/subscriptions/{SUB_A}/resourceGroups/rg-odd-body", token, content=body,
               headers={"content-type": "application/json"})
    assert put.status_code == 400, put.text
    assert put.json()["error"]["code"] and put.json()["error"]["message"]
    vault_token = sandbox_tokens.user_token(scope="https://vault.azure.net/.default")
    vault = sandbox.manifest["vaults"][0]["url"] if isinstance(sandbox.manifest["vaults"][0], dict) else None
    if vault:
        answer = httpx_client(sandbox.manifest).put(vault + "/secrets/odd-body", params={"api-version": "7.4"},
                                                    headers={"Authorization": f"Bearer {vault_token}",
                                                             "content-type": "application/json"}, content=body)
        assert answer.status_code == 400, answer.text
    assert _arm(sandbox, "GET", f"/subscriptions/{SUB_A}/resourceGroups/rg-odd-body", token).status_code == 404
