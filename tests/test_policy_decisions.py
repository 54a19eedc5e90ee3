"""decide(): a table of decisions over the three profiles, --read-only, and custom policy files in both shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azure_agent_mcp.policy import Effect, Policy, decide, load_policy, narrow_read_only

A = Effect.ALLOW
D = Effect.DENY
C = Effect.CONFIRM

SUB = "/subscriptions/aaaa"
RG = f"{SUB}/resourceGroups/rg-app"
ACCOUNT = f"{RG}/providers/Microsoft.Storage/storageAccounts/stapp"
SITE = f"{RG}/providers/Microsoft.Web/sites/web-app"
VAULT = "/providers/Microsoft.KeyVault/vaults/kv-ops"
SECRET = f"{VAULT}/secrets/db-password"

CREATE_SHAPE = {
    "Name": "Storage operator",
    "IsCustom": True,
    "Description": "Storage management in subscription aaaa, no key listing, confirm account writes.",
    "Actions": ["Microsoft.Storage/*", "Microsoft.Resources/subscriptions/resourceGroups/read", "*/read"],
    "NotActions": ["Microsoft.Storage/*/delete"],
    "DataActions": ["Microsoft.KeyVault/vaults/secrets/readMetadata/action"],
    "NotDataActions": [],
    "AssignableScopes": [SUB, VAULT],
    "Deny": ["Microsoft.Storage/storageAccounts/listKeys/action"],
    "Confirm": ["Microsoft.Storage/storageAccounts/write"],
}

LIST_SHAPE = [
    {
        "assignableScopes": ["/subscriptions/bbbb/resourceGroups/rg1"],
        "createdBy": None,
        "createdOn": "2025-01-01T00:00:00Z",
        "description": "Compute in rg1; VM deletes granted by a second permission block.",
        "id": "/subscriptions/bbbb/providers/Microsoft.Authorization/roleDefinitions/0f0e0d0c-0000-4000-a000-000000000001",
        "name": "0f0e0d0c-0000-4000-a000-000000000001",
        "permissions": [
            {
                "actions": ["Microsoft.Compute/*"],
                "notActions": ["Microsoft.Compute/virtualMachines/delete"],
                "dataActions": [],
                "notDataActions": [],
                "condition": None,
                "conditionVersion": None,
            },
            {"actions": ["Microsoft.Compute/virtualMachines/delete"], "notActions": [], "dataActions": [], "notDataActions": []},
        ],
        "roleName": "Compute operator",
        "roleType": "CustomRole",
        "type": "Microsoft.Authorization/roleDefinitions",
        "updatedBy": None,
        "updatedOn": "2025-01-01T00:00:00Z",
        "Deny": ["*/runCommand/action"],
    }
]

RG1 = "/subscriptions/bbbb/resourceGroups/rg1"
VM = f"{RG1}/providers/Microsoft.Compute/virtualMachines/vm1"


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Policy]:
    root: Path = tmp_path_factory.mktemp("policies")
    create = root / "storage-operator.json"
    create.write_text(json.dumps(CREATE_SHAPE))
    listed = root / "compute-operator.json"
    listed.write_text(json.dumps(LIST_SHAPE, indent=2))
    return {
        "RO": load_policy("read-only"),
        "NS": load_policy("no-secrets"),
        "UN": load_policy("unrestricted"),
        "RO(UN)": narrow_read_only(load_policy("unrestricted")),
        "RO(NS)": narrow_read_only(load_policy("no-secrets")),
        "CC": load_policy(str(create)),
        "CL": load_policy(str(listed)),
    }


CATALOG = " (secret-bearing catalog)"

# (policy, operation, scope, data_action, effect, rule)
TABLE = [
    # read-only profile
    ("RO", "Microsoft.Resources/subscriptions/read", "/", False, A, "Actions: */read"),
    ("RO", "Microsoft.Storage/storageAccounts/read", ACCOUNT, False, A, "Actions: */read"),
    ("RO", "MICROSOFT.STORAGE/STORAGEACCOUNTS/READ", ACCOUNT, False, A, "Actions: */read"),
    ("RO", "Microsoft.Storage/storageAccounts/write", ACCOUNT, False, D, "no Actions pattern matches"),
    ("RO", "Microsoft.Storage/storageAccounts/delete", ACCOUNT, False, D, "no Actions pattern matches"),
    ("RO", "Microsoft.Storage/storageAccounts/listKeys/action", ACCOUNT, False, D, "Deny: */listKeys/action" + CATALOG),
    ("RO", "microsoft.storage/storageaccounts/listkeys/action", ACCOUNT, False, D, "Deny: */listKeys/action" + CATALOG),
    ("RO", "Microsoft.Web/sites/config/list/action", SITE + "/config/appsettings", False, D,
     "Deny: Microsoft.Web/sites/config/list/action" + CATALOG),
    ("RO", "Microsoft.Web/sites/restart/action", SITE, False, D, "no Actions pattern matches"),
    ("RO", "Microsoft.KeyVault/vaults/secrets/getSecret/action", SECRET, True, D,
     "Deny: Microsoft.KeyVault/vaults/secrets/getSecret/action" + CATALOG),
    ("RO", "Microsoft.KeyVault/vaults/secrets/readMetadata/action", VAULT, True, A,
     "DataActions: Microsoft.KeyVault/vaults/secrets/readMetadata/action"),
    ("RO", "Microsoft.KeyVault/vaults/secrets/setSecret/action", SECRET, True, D, "no DataActions pattern matches"),
    ("RO", "Microsoft.KeyVault/vaults/keys/read", VAULT + "/keys/k1", True, A, "DataActions: Microsoft.KeyVault/vaults/keys/read"),
    ("RO", "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read", ACCOUNT, True, D,
     "no DataActions pattern matches"),
    ("RO", "Microsoft.Storage/storageAccounts/read", ACCOUNT, True, D, "no DataActions pattern matches"),
    ("RO", "Microsoft.Resources/deployments/write", RG, False, D, "Deny: Microsoft.Resources/deployments/write" + CATALOG),
    ("RO", "Microsoft.Resources/deployments/read", RG + "/providers/Microsoft.Resources/deployments/d1", False, A, "Actions: */read"),
    ("RO", "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action", RG, False, D,
     "Deny: Microsoft.ContainerService/managedClusters/listCluster*Credential/action" + CATALOG),
    ("RO", "Microsoft.Authorization/roleAssignments/read", SUB, False, A, "Actions: */read"),
    ("RO", "Microsoft.KeyVault/vaults/read", RG + "/providers/Microsoft.KeyVault/vaults/kv-ops", False, A, "Actions: */read"),
    ("RO", "Microsoft.Compute/virtualMachines/runCommand/action", VM, False, D,
     "Deny: Microsoft.Compute/virtualMachines/runCommand/action" + CATALOG),
    ("RO", "Microsoft.Resources/subscriptions/resourceGroups/write", RG, False, D, "no Actions pattern matches"),
    ("RO", "Microsoft.DocumentDB/databaseAccounts/readonlykeys/action", RG, False, D, "Deny: */readonlykeys/action" + CATALOG),
    ("RO", "Microsoft.Cache/redis/listKeys/action", RG, False, D, "Deny: */listKeys/action" + CATALOG),
    ("RO", "Microsoft.Devices/IotHubs/listkeys/Action", RG, False, D, "Deny: */listKeys/action" + CATALOG),
    ("RO", "Microsoft.Search/searchServices/listAdminKeys/action", RG, False, D, "Deny: */listAdminKeys/action" + CATALOG),
    # no-secrets profile
    ("NS", "Microsoft.Storage/storageAccounts/read", ACCOUNT, False, A, "Actions: *"),
    ("NS", "Microsoft.Storage/storageAccounts/write", ACCOUNT, False, A, "Actions: *"),
    ("NS", "Microsoft.Storage/storageAccounts/delete", ACCOUNT, False, C, "Confirm: */delete"),
    ("NS", "Microsoft.Storage/storageAccounts/listKeys/action", ACCOUNT, False, D, "Deny: */listKeys/action" + CATALOG),
    ("NS", "Microsoft.Web/sites/publishxml/action", SITE, False, D, "Deny: Microsoft.Web/sites/publishxml/action" + CATALOG),
    ("NS", "Microsoft.Resources/deployments/write", RG, False, D, "Deny: Microsoft.Resources/deployments/write" + CATALOG),
    ("NS", "Microsoft.Resources/deployments/read", RG, False, A, "Actions: *"),
    ("NS", "Microsoft.Resources/deployments/delete", RG, False, C, "Confirm: */delete"),
    ("NS", "Microsoft.Web/sites/restart/action", SITE, False, A, "Actions: *"),
    ("NS", "Microsoft.KeyVault/vaults/secrets/getSecret/action", SECRET, True, D,
     "Deny: Microsoft.KeyVault/vaults/secrets/getSecret/action" + CATALOG),
    ("NS", "Microsoft.KeyVault/vaults/secrets/setSecret/action", SECRET, True, A, "DataActions: *"),
    ("NS", "Microsoft.KeyVault/vaults/secrets/delete", SECRET, True, C, "Confirm: */delete"),
    ("NS", "Microsoft.KeyVault/vaults/keys/unwrap/action", VAULT + "/keys/k1", True, D,
     "Deny: Microsoft.KeyVault/vaults/keys/unwrap/action" + CATALOG),
    ("NS", "Microsoft.Resources/subscriptions/resourceGroups/delete", RG, False, C, "Confirm: */delete"),
    ("NS", "Microsoft.Storage/storageAccounts/listAccountSas/action", ACCOUNT, False, D, "Deny: */listAccountSas/action" + CATALOG),
    ("NS", "Microsoft.Storage/storageAccounts/regenerateKey/action", ACCOUNT, False, D, "Deny: */regenerateKey/action" + CATALOG),
    ("NS", "Microsoft.ContainerRegistry/registries/listCredentials/action", RG, False, D, "Deny: */listCredentials/action" + CATALOG),
    ("NS", "Microsoft.Logic/workflows/triggers/listCallbackUrl/action", RG, False, D, "Deny: */listCallbackUrl/action" + CATALOG),
    ("NS", "Microsoft.Compute/disks/beginGetAccess/action", RG, False, D, "Deny: */beginGetAccess/action" + CATALOG),
    ("NS", "Microsoft.OperationalInsights/workspaces/sharedKeys/action", RG, False, D,
     "Deny: Microsoft.OperationalInsights/workspaces/sharedKeys/action" + CATALOG),
    ("NS", "Microsoft.Compute/virtualMachines/start/action", VM, False, A, "Actions: *"),
    ("NS", "Microsoft.Resources/subscriptions/resourceGroups/exportTemplate/action", RG, False, D,
     "Deny: Microsoft.Resources/subscriptions/resourceGroups/exportTemplate/action" + CATALOG),
    ("NS", "Microsoft.Web/sites/functions/listsecrets/action", SITE, False, D, "Deny: */listSecrets/action" + CATALOG),
    # unrestricted profile
    ("UN", "Microsoft.Storage/storageAccounts/read", ACCOUNT, False, A, "Actions: *"),
    ("UN", "Microsoft.Storage/storageAccounts/write", ACCOUNT, False, A, "Actions: *"),
    ("UN", "Microsoft.Storage/storageAccounts/listKeys/action", ACCOUNT, False, C, "Confirm: */listKeys/action" + CATALOG),
    ("UN", "Microsoft.Storage/storageAccounts/delete", ACCOUNT, False, C, "Confirm: */delete"),
    ("UN", "Microsoft.KeyVault/vaults/secrets/getSecret/action", SECRET, True, C,
     "Confirm: Microsoft.KeyVault/vaults/secrets/getSecret/action" + CATALOG),
    ("UN", "Microsoft.KeyVault/vaults/secrets/setSecret/action", SECRET, True, A, "DataActions: *"),
    ("UN", "Microsoft.Resources/deployments/write", RG, False, C, "Confirm: Microsoft.Resources/deployments/write" + CATALOG),
    ("UN", "Microsoft.Web/sites/restart/action", SITE, False, A, "Actions: *"),
    ("UN", "Microsoft.KeyVault/vaults/secrets/delete", SECRET, True, C, "Confirm: */delete"),
    ("UN", "Microsoft.Compute/virtualMachines/runCommand/action", VM, False, C,
     "Confirm: Microsoft.Compute/virtualMachines/runCommand/action" + CATALOG),
    ("UN", "Microsoft.Web/sites/config/list/action", SITE, False, C, "Confirm: Microsoft.Web/sites/config/list/action" + CATALOG),
    ("UN", "Contoso.Widgets/gizmos/frob/action", "/", False, A, "Actions: *"),
    # --read-only narrowing
    ("RO(UN)", "Microsoft.Storage/storageAccounts/read", ACCOUNT, False, A, "Actions: *"),
    ("RO(UN)", "Microsoft.Storage/storageAccounts/write", ACCOUNT, False, D, "read-only narrowing (--read-only)"),
    ("RO(UN)", "Microsoft.Storage/storageAccounts/listKeys/action", ACCOUNT, False, D, "Deny: */listKeys/action" + CATALOG),
    ("RO(UN)", "Microsoft.Storage/storageAccounts/delete", ACCOUNT, False, D, "read-only narrowing (--read-only)"),
    ("RO(UN)", "Microsoft.KeyVault/vaults/secrets/readMetadata/action", VAULT, True, A, "DataActions: *"),
    ("RO(UN)", "Microsoft.KeyVault/vaults/secrets/setSecret/action", SECRET, True, D, "read-only narrowing (--read-only)"),
    ("RO(NS)", "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read", ACCOUNT, True, D,
     "read-only narrowing (--read-only)"),
    ("RO(NS)", "Microsoft.KeyVault/vaults/secrets/getSecret/action", SECRET, True, D,
     "Deny: Microsoft.KeyVault/vaults/secrets/getSecret/action" + CATALOG),
    # custom file, 'az role definition create' shape
    ("CC", "Microsoft.Storage/storageAccounts/read", ACCOUNT, False, A, "Actions: Microsoft.Storage/*"),
    ("CC", "Microsoft.Storage/storageAccounts/write", ACCOUNT, False, C, "Confirm: Microsoft.Storage/storageAccounts/write"),
    ("CC", "Microsoft.Storage/storageAccounts/delete", ACCOUNT, False, D, "NotActions: Microsoft.Storage/*/delete"),
    ("CC", "Microsoft.Storage/storageAccounts/blobServices/containers/delete", ACCOUNT, False, D,
     "NotActions: Microsoft.Storage/*/delete"),
    ("CC", "Microsoft.Storage/storageAccounts/listKeys/action", ACCOUNT, False, D,
     "Deny: Microsoft.Storage/storageAccounts/listKeys/action"),
    ("CC", "Microsoft.Storage/storageAccounts/regenerateKey/action", ACCOUNT, False, A, "Actions: Microsoft.Storage/*"),
    ("CC", "Microsoft.Storage/storageAccounts/read", "/subscriptions/aaaab/resourceGroups/x", False, D,
     f"outside AssignableScopes [{SUB}, {VAULT}]"),
    ("CC", "Microsoft.Storage/storageAccounts/read", "/subscriptions/AAAA/resourceGroups/X", False, A, "Actions: Microsoft.Storage/*"),
    ("CC", "Microsoft.Storage/storageAccounts/read", SUB + "/", False, A, "Actions: Microsoft.Storage/*"),
    ("CC", "Microsoft.Resources/subscriptions/read", "/", False, D, f"outside AssignableScopes [{SUB}, {VAULT}]"),
    ("CC", "Microsoft.Compute/virtualMachines/read", SUB, False, A, "Actions: */read"),
    ("CC", "Microsoft.Compute/virtualMachines/write", SUB, False, D, "no Actions pattern matches"),
    ("CC", "microsoft.resources/subscriptions/resourcegroups/read", RG, False, A,
     "Actions: Microsoft.Resources/subscriptions/resourceGroups/read"),
    ("CC", "Microsoft.KeyVault/vaults/secrets/readMetadata/action", VAULT, True, A,
     "DataActions: Microsoft.KeyVault/vaults/secrets/readMetadata/action"),
    ("CC", "Microsoft.KeyVault/vaults/secrets/readMetadata/action", "/providers/Microsoft.KeyVault/vaults/kv-other", True, D,
     f"outside AssignableScopes [{SUB}, {VAULT}]"),
    ("CC", "Microsoft.KeyVault/vaults/secrets/getSecret/action", SECRET, True, D, "no DataActions pattern matches"),
    # custom file, 'az role definition list' shape (two permission blocks, unioned)
    ("CL", "Microsoft.Compute/virtualMachines/read", VM, False, A, "Actions: Microsoft.Compute/*"),
    ("CL", "Microsoft.Compute/virtualMachines/delete", VM, False, A, "Actions: Microsoft.Compute/virtualMachines/delete"),
    ("CL", "Microsoft.Compute/disks/delete", RG1 + "/providers/Microsoft.Compute/disks/d1", False, A, "Actions: Microsoft.Compute/*"),
    ("CL", "Microsoft.Compute/virtualMachines/runCommand/action", VM, False, D, "Deny: */runCommand/action"),
    ("CL", "Microsoft.Compute/virtualMachines/read", "/subscriptions/bbbb/resourceGroups/rg10", False, D,
     f"outside AssignableScopes [{RG1}]"),
    ("CL", "Microsoft.Compute/virtualMachines/read", "/subscriptions/bbbb", False, D, f"outside AssignableScopes [{RG1}]"),
    ("CL", "Microsoft.Storage/storageAccounts/read", RG1, False, D, "no Actions pattern matches"),
    ("CL", "Microsoft.Compute/virtualMachines/read", VM, True, D, "no DataActions pattern matches"),
]


def test_the_table_is_big_enough():
    assert len(TABLE) >= 80
    assert {row[0] for row in TABLE} >= {"RO", "NS", "UN", "CC", "CL"}


@pytest.mark.parametrize(("key", "operation", "scope", "data_action", "effect", "rule"), TABLE)
def test_decision(policies, key, operation, scope, data_action, effect, rule):
    policy = policies[key]
    decision = decide(policy, operation, scope, data_action=data_action)
    assert (decision.effect, decision.rule[: len(rule)]) == (effect, rule), decision
    assert decision.operation == operation and decision.scope == scope and decision.data_action is data_action
    assert decision.policy == policy.name
    assert decision.reason
    if effect is not A:
        assert decision.hint, "a refusal or confirmation says what would allow it"


def test_decisions_are_memoised_and_stable(policies):
    first = decide(policies["NS"], "Microsoft.Storage/storageAccounts/delete", ACCOUNT)
    second = decide(policies["NS"], "Microsoft.Storage/storageAccounts/delete", ACCOUNT)
    assert first is second
    assert decide(policies["NS"], "Microsoft.Storage/storageAccounts/delete", ACCOUNT, data_action=True).rule == "Confirm: */delete"


def test_file_policy_decisions_cite_the_file(policies):
    decision = decide(policies["CC"], "Microsoft.Compute/virtualMachines/write", SUB)
    assert decision.policy.endswith("storage-operator.json")
    assert "Add 'Microsoft.Compute/virtualMachines/write'" in decision.hint and "to Actions" in decision.hint
    assert "storage-operator.json" in decision.hint


def test_hints_point_to_what_would_allow(policies):
    write = decide(policies["RO"], "Microsoft.Storage/storageAccounts/write", ACCOUNT)
    assert "--policy no-secrets" in write.hint
    secret = decide(policies["NS"], "Microsoft.Storage/storageAccounts/listKeys/action", ACCOUNT)
    assert "--policy unrestricted" in secret.hint
    narrowed = decide(policies["RO(UN)"], "Microsoft.Storage/storageAccounts/write", ACCOUNT)
    assert "--read-only" in narrowed.hint
    outside = decide(policies["CC"], "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
                     "/providers/Microsoft.KeyVault/vaults/kv-other", data_action=True)
    assert "/providers/Microsoft.KeyVault/vaults/kv-other" in outside.hint


def test_secret_reasons_carry_the_catalog_note(policies):
    decision = decide(policies["RO"], "Microsoft.Web/sites/publishxml/action", SITE)
    assert "publish profile" in decision.reason


def test_decision_json_shape(policies):
    data = decide(policies["UN"], "Microsoft.Storage/storageAccounts/delete", ACCOUNT).as_json()
    assert data["effect"] == "confirm"
    assert set(data) == {"effect", "operation", "scope", "data_action", "rule", "policy", "reason", "hint"}
    json.dumps(data)
