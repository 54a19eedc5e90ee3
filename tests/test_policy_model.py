"""Loading policies: both role-definition shapes, every named load error, profiles, scopes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azure_agent_mcp.policy import (
    PROFILE_NAMES,
    PolicyLoadError,
    load_policy,
    narrow_read_only,
    scope_contains,
    secret_bearing,
    secret_operations,
)
from azure_agent_mcp.policy.patterns import PatternSet
from azure_agent_mcp.policy.scopes import ScopeSet


def _write(tmp_path: Path, data: object, name: str = "policy.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def test_create_shape_loads_with_case_insensitive_keys(tmp_path):
    path = _write(tmp_path, {
        "name": "Reader plus", "ACTIONS": ["*/read"], "notactions": ["Microsoft.Web/*"],
        "DataActions": ["Microsoft.KeyVault/vaults/secrets/readMetadata/action"],
        "assignableScopes": ["/subscriptions/abc"], "deny": ["*/listKeys/action"], "CONFIRM": ["*/delete"],
        "ExpectedPrincipal": "5A1DB0C5-5900-4000-A000-000000000A02", "Id": "x", "IsCustom": True,
        "Description": "test",
    })
    policy = load_policy(path)
    assert policy.name == path and policy.source == path and not policy.builtin
    assert policy.role_name == "Reader plus" and policy.description == "test"
    assert policy.blocks[0].actions == ("*/read",) and policy.blocks[0].not_actions == ("Microsoft.Web/*",)
    assert policy.deny == ("*/listKeys/action",) and policy.confirm == ("*/delete",)
    assert policy.assignable_scopes == ("/subscriptions/abc",)
    assert policy.expected_principal == "5a1db0c5-5900-4000-a000-000000000a02"


def test_list_shape_as_list_object_and_rest_shape(tmp_path):
    entry = {
        "roleName": "Ops", "name": "guid", "type": "Microsoft.Authorization/roleDefinitions", "roleType": "CustomRole",
        "permissions": [{"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []},
                        {"actions": ["Microsoft.Compute/*"], "notActions": ["Microsoft.Compute/*/delete"]}],
        "assignableScopes": ["/"], "createdOn": None, "updatedOn": None, "createdBy": None, "updatedBy": None,
        "description": "d", "id": "/providers/Microsoft.Authorization/roleDefinitions/guid",
    }
    as_list = load_policy(_write(tmp_path, [entry], "list.json"))
    as_object = load_policy(_write(tmp_path, entry, "object.json"))
    rest = load_policy(_write(tmp_path, {
        "id": entry["id"], "name": "guid", "type": entry["type"],
        "properties": {k: v for k, v in entry.items() if k not in ("id", "name", "type")},
        "Deny": ["*/write"],
    }, "rest.json"))
    for policy in (as_list, as_object, rest):
        assert policy.role_name == "Ops" and len(policy.blocks) == 2
        assert policy.blocks[1].not_actions == ("Microsoft.Compute/*/delete",)
    assert rest.deny == ("*/write",)


def test_missing_assignable_scopes_means_everywhere(tmp_path):
    assert load_policy(_write(tmp_path, {"Actions": ["*/read"]})).assignable_scopes == ("/",)


# (content, key named in the message, problem fragment)
LOAD_ERRORS = [
    ({"Name": "x", "Actions": ["*/read"], "Whatever": 1}, "Whatever", "unknown key"),
    ({"roleName": "x", "permissions": [], "Actions": ["*/read"]}, "Actions", "not allowed next to 'permissions'"),
    ({"roleName": "x", "permissions": [{"actions": ["*/read"], "bogus": []}]}, "permissions[0].bogus", "unknown key"),
    ({"roleName": "x", "permissions": [{"actions": ["*/read"], "condition": "@Resource[x] == 'y'"}]},
     "permissions[0].condition", "conditions (ABAC) cannot be evaluated"),
    ({"roleName": "x", "permissions": {"actions": ["*/read"]}}, "permissions", "expected a list of permission objects"),
    ({"roleName": "x", "permissions": ["*/read"]}, "permissions[0]", "expected an object"),
    ({"Name": "x", "Actions": "*/read"}, "Actions", "expected a list of operation patterns, got a string"),
    ({"Name": "x", "Actions": [""]}, "Actions[0]", "empty pattern"),
    ({"Name": "x", "Actions": ["*/read", "Microsoft.Storage/storage Accounts/read"]}, "Actions[1]", "outside ARM operation syntax"),
    ({"Name": "x", "Actions": ["Microsoft.Storage/(read|write)"]}, "Actions[0]", "outside ARM operation syntax"),
    ({"Name": "x", "Actions": ["/Microsoft.Storage/read"]}, "Actions[0]", "starts or ends with '/'"),
    ({"Name": "x", "Actions": ["Microsoft.Storage//read"]}, "Actions[0]", "empty segment"),
    ({"Name": "x", "Actions": [" */read"]}, "Actions[0]", "whitespace"),
    ({"Name": "x", "Actions": [42]}, "Actions[0]", "expected a string, got int"),
    ({"Name": "x", "Deny": ["*/listKeys/action "], "Actions": ["*"]}, "Deny[0]", "whitespace"),
    ({"Name": "x", "Actions": ["*"], "Confirm": "*/delete"}, "Confirm", "expected a list"),
    ({"Name": "x"}, None, "empty policy"),
    ({"Name": "x", "Actions": [], "NotActions": ["*"]}, None, "empty policy"),
    ({}, None, "empty policy"),
    ({"Name": 5, "Actions": ["*"]}, "Name", "expected a string, got a number"),
    ({"Name": "x", "Actions": ["*"], "AssignableScopes": []}, "AssignableScopes", "empty list"),
    ({"Name": "x", "Actions": ["*"], "AssignableScopes": "/"}, "AssignableScopes", "expected a list of scopes"),
    ({"Name": "x", "Actions": ["*"], "AssignableScopes": ["subscriptions/abc"]}, "AssignableScopes[0]", "does not start with '/'"),
    ({"Name": "x", "Actions": ["*"], "AssignableScopes": ["/subscriptions/*"]}, "AssignableScopes[0]", "wildcards"),
    ({"Name": "x", "Actions": ["*"], "AssignableScopes": ["/subscriptions//x"]}, "AssignableScopes[0]", "empty segment"),
    ({"Name": "x", "Actions": ["*"], "AssignableScopes": ["/subscriptions/../x"]}, "AssignableScopes[0]", "'..' segment"),
    ({"Name": "x", "Actions": ["*"], "ExpectedPrincipal": "someone@example.com"}, "ExpectedPrincipal", "not an app id or object id"),
    ([{"Name": "a", "Actions": ["*"]}, {"Name": "b", "Actions": ["*"]}], None, "list of 2 role definitions"),
    ("[1]", None, "top level must be a JSON object"),
    ('"read-only"', None, "top level must be a JSON object"),
    ('{"Name": "x",\n "Actions": ["*/read",]\n}', None, "invalid JSON at line 2 column"),
    ('{"Actions": ["*"], "actions": ["*/read"]}', "actions", "given twice"),
]


@pytest.mark.parametrize(("content", "key", "problem"), LOAD_ERRORS)
def test_load_errors_name_file_key_and_problem(tmp_path, content, key, problem):
    path = _write(tmp_path, content)
    with pytest.raises(PolicyLoadError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert path in message
    assert problem in message
    if key is not None:
        assert f"key '{key}'" in message
        assert caught.value.key is not None


def test_unknown_spec_and_unreadable_files(tmp_path):
    with pytest.raises(PolicyLoadError, match="neither a built-in profile"):
        load_policy(str(tmp_path / "missing.json"))
    with pytest.raises(PolicyLoadError, match="not a regular file"):
        load_policy(str(tmp_path))
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(PolicyLoadError, match="not UTF-8"):
        load_policy(str(binary))


def test_profiles_and_default():
    assert load_policy(None).name == "read-only" and load_policy("").name == "read-only"
    for name in PROFILE_NAMES:
        policy = load_policy(name.upper())
        assert policy.name == name and policy.builtin and policy.assignable_scopes == ("/",)
    assert load_policy("no-secrets").confirm == ("*/delete",)
    unrestricted = load_policy("unrestricted")
    assert unrestricted.deny == () and "*/delete" in unrestricted.confirm
    assert "Microsoft.KeyVault/vaults/secrets/getSecret/action" in unrestricted.confirm


def test_narrow_read_only_is_idempotent_and_keeps_the_original():
    base = load_policy("no-secrets")
    narrowed = narrow_read_only(base)
    assert narrowed.read_only and not base.read_only
    assert narrow_read_only(narrowed) is narrowed
    assert narrowed.blocks == base.blocks and narrowed.name == base.name


def test_catalog_has_at_least_25_explained_patterns():
    entries = secret_operations()
    assert len(entries) >= 25
    assert all(len(e.why) > 20 for e in entries)
    assert len({e.pattern.lower() for e in entries}) == len(entries)
    spec = ["*/listKeys/action", "*/listCredentials/action", "*/listSecrets/action", "*/listConnectionStrings/action",
            "*/readonlykeys/action", "*/listAdminKeys/action", "*/regenerateKey/action", "*/listAccountSas/action",
            "*/listServiceSas/action", "Microsoft.Web/sites/config/list/action", "Microsoft.Web/sites/publishxml/action",
            "Microsoft.ContainerService/managedClusters/listCluster*Credential/action",
            "Microsoft.Resources/deployments/exportTemplate/action", "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.Resources/deployments/write"]
    patterns = {e.pattern for e in entries}
    assert set(spec) <= patterns


@pytest.mark.parametrize(("operation", "expected"), [
    ("Microsoft.Storage/storageAccounts/listKeys/action", True),
    ("microsoft.signalrservice/signalr/listkeys/action", True),
    ("Microsoft.ContainerService/managedClusters/listClusterUserCredential/action", True),
    ("Microsoft.Storage/storageAccounts/read", False),
    ("Microsoft.Resources/deployments/read", False),
    ("Microsoft.KeyVault/vaults/secrets/readMetadata/action", False),
])
def test_secret_bearing(operation, expected):
    assert secret_bearing(operation) is expected


@pytest.mark.parametrize(("parent", "child", "covered"), [
    ("/subscriptions/abc", "/subscriptions/abc", True),
    ("/subscriptions/abc", "/subscriptions/abc/", True),
    ("/subscriptions/abc", "/subscriptions/ABC/resourceGroups/x", True),
    ("/subscriptions/abc", "/subscriptions/abcd", False),
    ("/subscriptions/abc", "/subscriptions/abcd/resourceGroups/x", False),
    ("/subscriptions/abc", "/subscriptions", False),
    ("/subscriptions/abc", "/", False),
    ("/subscriptions/abc/resourceGroups/rg", "/subscriptions/abc/resourceGroups/rg-2", False),
    ("/subscriptions/abc/resourceGroups/rg", "/subscriptions/abc/resourcegroups/RG/providers/x/y/z", True),
    ("/", "/subscriptions/anything", True),
    ("/", "/", True),
    ("/providers/Microsoft.KeyVault/vaults/kv", "/providers/Microsoft.KeyVault/vaults/kv/secrets/s", True),
    ("/providers/Microsoft.KeyVault/vaults/kv", "/providers/Microsoft.KeyVault/vaults/kv2/secrets/s", False),
])
def test_assignable_scopes_are_segment_aware(parent, child, covered):
    assert scope_contains(parent, child) is covered
    assert ScopeSet([parent]).covers(child) is covered


def test_scope_set_beneath():
    scopes = ScopeSet(["/subscriptions/abc/resourceGroups/rg", "/subscriptions/def"])
    assert scopes.beneath("/") == scopes.scopes
    assert scopes.beneath("/subscriptions/abc") == ("/subscriptions/abc/resourceGroups/rg",)
    assert scopes.beneath("/subscriptions/ab") == ()


def test_pattern_set_reports_the_matching_pattern():
    patterns = PatternSet(["Microsoft.Storage/*/delete", "*/read", "Microsoft.Web/sites/restart/action", "Microsoft.Storage/*"])
    assert patterns.first_match("microsoft.web/sites/restart/action") == "Microsoft.Web/sites/restart/action"
    assert patterns.first_match("microsoft.storage/storageaccounts/delete") == "Microsoft.Storage/*/delete"
    assert patterns.first_match("microsoft.compute/virtualmachines/read") == "*/read"
    assert patterns.first_match("microsoft.compute/virtualmachines/write") is None
    assert patterns.matches("MICROSOFT.STORAGE/X")
    # '*' spans '/', and a literal '.' is not a regex wildcard
    assert PatternSet(["Microsoft.Storage/*/action"]).matches("Microsoft.Storage/a/b/c/action")
    assert not PatternSet(["Microsoft.Storage/read"]).matches("MicrosoftXStorage/read")
