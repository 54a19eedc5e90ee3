"""The sandbox's deployment history and role definitions, driven by the real SDK and by plain HTTPS."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from conftest import ARM_SCOPE, UserCredential, httpx_client

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
SUB_B = "5a1db0c5-b000-4000-a000-00000000000b"
APP = f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app"
VERSION = "2026-06-01"


def _client(sandbox, credential, subscription=SUB_A):
    from azure.mgmt.resource.deployments import DeploymentsMgmtClient

    return DeploymentsMgmtClient(credential, subscription, base_url=sandbox.manifest["arm_endpoint"],
                                 credential_scopes=[ARM_SCOPE], connection_verify=sandbox.manifest["ca_bundle"])


def _get(sandbox, token, path, **params):
    client = httpx_client(sandbox.manifest)
    return client.get(sandbox.manifest["arm_endpoint"] + path, params={"api-version": VERSION, **params},
                      headers={"Authorization": f"Bearer {token}"})


class _Principal:
    """An azure-core credential for the seeded service principal (Contributor on rg-prod-app only)."""

    def __init__(self, tokens):
        self.tokens = tokens

    def get_token(self, *scopes, **kwargs):
        import time

        from azure.core.credentials import AccessToken

        return AccessToken(self.tokens.app_token(scopes[0]), int(time.time()) + 3000)


def test_group_and_subscription_deployments_in_azure_shapes(sandbox, developer_credential):
    client = _client(sandbox, developer_credential)
    group = {d.name: d for d in client.deployments.list_by_resource_group("rg-prod-app")}
    assert set(group) == {"deploy-orders-storage", "deploy-orders-web"}
    web = group["deploy-orders-web"]
    assert web.id == f"{APP}/providers/Microsoft.Resources/deployments/deploy-orders-web"
    assert web.type == "Microsoft.Resources/deployments" and web.location is None
    assert web.properties.provisioning_state == "Failed" and web.properties.error.code == "DeploymentFailed"
    assert web.properties.error.details[0].code == "Conflict" and web.properties.outputs is None
    at_sub = list(client.deployments.list_at_subscription_scope())
    assert [d.name for d in at_sub] == ["deploy-platform-baseline"] and at_sub[0].location == "eastus"
    baseline = client.deployments.get_at_subscription_scope("deploy-platform-baseline")
    assert baseline.properties.outputs["networkGroupId"]["value"].endswith("/resourceGroups/rg-prod-network")
    assert list(_client(sandbox, developer_credential, SUB_B).deployments.list_at_subscription_scope()) == []


def test_operations_on_both_routes_one_failed_with_its_status_message(sandbox, developer_credential):
    client = _client(sandbox, developer_credential)
    before = sandbox.last_seq()
    operations = list(client.deployment_operations.list("rg-prod-app", "deploy-orders-web"))
    states = sorted(op.properties.provisioning_state for op in operations)
    assert states == ["Failed", "Succeeded"]
    failed = next(op for op in operations if op.properties.provisioning_state == "Failed")
    assert failed.properties.status_code == "Conflict"
    assert failed.properties.status_message.error.code == "WebsiteAlreadyExists"
    assert failed.properties.target_resource.resource_type == "Microsoft.Web/sites"
    assert failed.id == (f"{APP}/providers/Microsoft.Resources/deployments/deploy-orders-web/operations/"
                         f"{failed.operation_id}")
    one = client.deployment_operations.get("rg-prod-app", "deploy-orders-web", failed.operation_id)
    assert one.properties.status_message.error.message.startswith("Website with given name")
    at_sub = list(client.deployment_operations.list_at_subscription_scope("deploy-platform-baseline"))
    assert [op.properties.target_resource.resource_type for op in at_sub] == ["Microsoft.Resources/resourceGroups"]
    # the RBAC operation each route was checked as, as the sandbox logged it
    logged = {(r["path"].lower(), r["operation"]) for r in sandbox.requests(kind="arm", since=before)}
    deployment = f"{APP}/providers/Microsoft.Resources/deployments/deploy-orders-web".lower()
    assert (f"{APP}/deployments/deploy-orders-web/operations".lower(),
            "Microsoft.Resources/subscriptions/resourceGroups/deployments/operations/read") in logged
    assert (f"{deployment}/operations/{failed.operation_id}".lower().replace("/providers/microsoft.resources", ""),
            "Microsoft.Resources/subscriptions/resourceGroups/deployments/operations/read") in logged
    assert (f"/subscriptions/{SUB_A}/providers/Microsoft.Resources/deployments/deploy-platform-baseline/operations"
            .lower(), "Microsoft.Resources/deployments/operations/read") in logged


def test_secure_parameters_and_outputs_are_never_served(sandbox, sandbox_tokens):
    """ARM keeps no value of a secureString: the sandbox knows them (the template evaluated them) but never sends them."""
    token = sandbox_tokens.user_token("developer")
    world = sandbox.state.world
    storage = world.deployments[f"{APP}/providers/Microsoft.Resources/deployments/deploy-orders-storage".lower()]
    web = world.deployments[f"{APP}/providers/Microsoft.Resources/deployments/deploy-orders-web".lower()]
    secure_values = [storage.outputs["storageConnection"].value, web.parameters["sqlAdminPassword"].value]
    bodies = [
        _get(sandbox, token, f"{APP}/providers/Microsoft.Resources/deployments/deploy-orders-storage").text,
        _get(sandbox, token, f"{APP}/providers/Microsoft.Resources/deployments/deploy-orders-web").text,
        _get(sandbox, token, f"{APP}/providers/Microsoft.Resources/deployments").text,
    ]
    for body in bodies:
        for value in secure_values:
            assert value not in body
    got = _get(sandbox, token, f"{APP}/providers/Microsoft.Resources/deployments/deploy-orders-storage").json()
    assert got["properties"]["outputs"]["storageConnection"] == {"type": "SecureString"}
    # a plain String output is served with its value, whatever it holds: the leak the product withholds
    assert got["properties"]["outputs"]["storageKey"]["value"] == storage.outputs["storageKey"].value
    web_body = _get(sandbox, token, f"{APP}/providers/Microsoft.Resources/deployments/deploy-orders-web").json()
    assert web_body["properties"]["parameters"]["sqlAdminPassword"] == {"type": "SecureString"}


def test_filter_top_and_paging(sandbox, sandbox_tokens, developer_credential):
    token = sandbox_tokens.user_token("developer")
    path = f"{APP}/providers/Microsoft.Resources/deployments"
    failed = _get(sandbox, token, path, **{"$filter": "provisioningState eq 'Failed'"}).json()
    assert [d["name"] for d in failed["value"]] == ["deploy-orders-web"]
    first = _get(sandbox, token, path, **{"$top": "1"}).json()
    assert [d["name"] for d in first["value"]] == ["deploy-orders-web"] and "skiptoken" in first["nextLink"]
    # the SDK follows nextLink to the end
    listed = [d.name for d in _client(sandbox, developer_credential).deployments.list_by_resource_group("rg-prod-app",
                                                                                                        top=1)]
    assert listed == ["deploy-orders-web", "deploy-orders-storage"]
    bad = _get(sandbox, token, path, **{"$filter": "name eq 'x'"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidFilterInQueryString"
    assert "provisioningState eq" in bad.json()["error"]["message"]


def test_errors_in_arm_shapes(sandbox, sandbox_tokens, developer_credential):
    client = _client(sandbox, developer_credential)
    with pytest.raises(ResourceNotFoundError) as missing:
        client.deployments.get("rg-prod-app", "deploy-nothing")
    assert missing.value.error.code == "DeploymentNotFound" and "deploy-nothing" in missing.value.error.message
    with pytest.raises(ResourceNotFoundError) as no_group:
        list(client.deployments.list_by_resource_group("rg-missing"))
    assert no_group.value.error.code == "ResourceGroupNotFound"
    token = sandbox_tokens.user_token("developer")
    old = _get(sandbox, token, f"{APP}/providers/Microsoft.Resources/deployments")
    assert old.status_code == 200
    client_http = httpx_client(sandbox.manifest)
    wrong = client_http.get(sandbox.manifest["arm_endpoint"] + f"{APP}/providers/Microsoft.Resources/deployments",
                            params={"api-version": "2019-01-01"}, headers={"Authorization": f"Bearer {token}"})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "NoRegisteredProviderFound"
    put = client_http.put(sandbox.manifest["arm_endpoint"] + f"{APP}/providers/Microsoft.Resources/deployments/d1",
                          params={"api-version": VERSION}, headers={"Authorization": f"Bearer {token}"},
                          json={"properties": {"mode": "Incremental", "template": {}}})
    assert put.status_code == 405 and "does not run" in put.json()["error"]["message"]


def test_rbac_before_existence(sandbox, sandbox_tokens):
    reader = _client(sandbox, UserCredential(sandbox_tokens, "reader"), SUB_B)
    with pytest.raises(HttpResponseError) as refused:
        list(reader.deployments.list_at_subscription_scope())
    assert refused.value.status_code == 403 and refused.value.error.code == "AuthorizationFailed"
    assert "Microsoft.Resources/deployments/read" in refused.value.error.message
    # Contributor on rg-prod-app only: that group's history, not the subscription's
    automation = _client(sandbox, _Principal(sandbox_tokens))
    assert {d.name for d in automation.deployments.list_by_resource_group("rg-prod-app")} >= {"deploy-orders-web"}
    with pytest.raises(HttpResponseError) as sub_level:
        automation.deployments.get_at_subscription_scope("deploy-platform-baseline")
    assert sub_level.value.status_code == 403
    with pytest.raises(HttpResponseError) as unknown_elsewhere:  # 403, not 404: existence is not disclosed
        automation.deployments.get_at_subscription_scope("no-such-deployment")
    assert unknown_elsewhere.value.status_code == 403


def test_role_definitions_list_filter_and_get(sandbox, sandbox_tokens):
    token = sandbox_tokens.user_token("reader")
    base = "/providers/Microsoft.Authorization/roleDefinitions"
    reader = "acdd72a7-3385-48ef-bd42-f606fba81ae7"

    def get(path, **params):
        return httpx_client(sandbox.manifest).get(
            sandbox.manifest["arm_endpoint"] + path, params={"api-version": "2022-04-01", **params},
            headers={"Authorization": f"Bearer {token}"})

    named = get(f"/subscriptions/{SUB_A}{base}", **{"$filter": "roleName eq 'Reader'"}).json()["value"]
    assert [r["properties"]["roleName"] for r in named] == ["Reader"]
    props = named[0]["properties"]
    assert props["permissions"] == [{"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}]
    assert props["type"] == "BuiltInRole" and props["assignableScopes"] == ["/"]
    # read at a group: named by the subscription's id, as ARM does
    at_group = get(f"{APP}{base}/{reader}").json()
    assert at_group["id"] == f"/subscriptions/{SUB_A}{base}/{reader}"
    assert get(f"/subscriptions/{SUB_A}{base}", **{"$filter": "type eq 'CustomRole'"}).json()["value"] == []
    missing = get(f"/subscriptions/{SUB_A}{base}/00000000-0000-0000-0000-000000000001")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "RoleDefinitionDoesNotExist"
