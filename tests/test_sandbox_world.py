"""The seed world as a client sees it through ARM: fixed ids, enough resources, the people and roles."""

from __future__ import annotations

from collections import Counter

from conftest import ARM_SCOPE, httpx_client

TENANT = "5a1db0c5-0000-4000-a000-000000000001"
SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
SUB_B = "5a1db0c5-b000-4000-a000-00000000000b"


def _get(sandbox, token, path, **params):
    params.setdefault("api-version", "2022-09-01")
    response = httpx_client(sandbox.manifest).get(sandbox.manifest["arm_endpoint"] + path, params=params,
                                                  headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_fixed_identifiers_are_published_in_the_manifest(sandbox):
    manifest = sandbox.manifest
    assert manifest["tenant_id"] == TENANT
    assert manifest["subscriptions"] == [{"id": SUB_A, "name": "Sandbox Production"},
                                         {"id": SUB_B, "name": "Sandbox Development"}]
    users = {u["name"]: u for u in manifest["users"]}
    assert users["developer"]["object_id"] == "5a1db0c5-de00-4000-a000-000000000d01"
    assert users["reader"]["object_id"] == "5a1db0c5-4ead-4000-a000-000000000d02"
    assert all(u["password"] and u["roles"] for u in users.values())
    assert manifest["service_principals"][0]["client_id"] == "5a1db0c5-a990-4000-a000-000000000a01"
    assert [v["name"] for v in manifest["vaults"]] == ["kv-sandbox-prod", "kv-sandbox-dev"]
    assert manifest["keyvault_endpoint"].format(vault="kv-sandbox-prod") == manifest["vaults"][0]["url"]
    env = sandbox.environment()
    assert env.arm_scope == ARM_SCOPE and env.default_subscription == SUB_A and env.ca_bundle


def test_at_least_forty_resources_across_types_and_three_groups(sandbox, sandbox_tokens):
    token = sandbox_tokens.user_token()  # Owner on A, Reader on B
    resources = []
    groups = []
    for sub in (SUB_A, SUB_B):
        resources += _get(sandbox, token, f"/subscriptions/{sub}/resources")["value"]
        groups += _get(sandbox, token, f"/subscriptions/{sub}/resourcegroups")["value"]
    assert len(resources) >= 40 and len(groups) >= 3
    types = Counter(r["type"] for r in resources)
    for needed in ("Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults", "Microsoft.Web/sites",
                   "Microsoft.Compute/virtualMachines", "Microsoft.Network/networkInterfaces",
                   "Microsoft.Compute/disks", "Microsoft.Network/virtualNetworks",
                   "Microsoft.Network/publicIPAddresses"):
        assert types[needed] >= 1, needed
    assert types["Microsoft.KeyVault/vaults"] == 2
    assert len({r["id"].lower() for r in resources}) == len(resources)


def test_role_assignments_behind_the_people(sandbox, sandbox_tokens):
    token = sandbox_tokens.user_token()
    assignments = _get(sandbox, token, f"/subscriptions/{SUB_A}/providers/Microsoft.Authorization/roleAssignments",
                       **{"api-version": "2022-04-01"})["value"]
    roles = {(a["properties"]["principalId"], a["properties"]["roleDefinitionId"].rsplit("/", 1)[1],
              a["properties"]["scope"].rsplit("/", 1)[1]) for a in assignments}
    sp = sandbox.manifest["service_principals"][0]["object_id"]
    assert ("5a1db0c5-de00-4000-a000-000000000d01", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", SUB_A) in roles
    assert ("5a1db0c5-de00-4000-a000-000000000d01", "b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "kv-sandbox-prod") in roles
    assert ("5a1db0c5-4ead-4000-a000-000000000d02", "acdd72a7-3385-48ef-bd42-f606fba81ae7", SUB_A) in roles
    assert (sp, "b24988ac-6180-42a0-ab88-20f7382dd24c", "rg-prod-app") in roles
