"""map_request(): ARM and Key Vault operation mapping, path normalisation, and refusals."""

from __future__ import annotations

import pytest

from azure_agent_mcp.environment import public_cloud
from azure_agent_mcp.policy import Endpoints, UnmappableRequestError, map_request

AZ = Endpoints.public_cloud()
SANDBOX = Endpoints("https://127.0.0.1:8443", "https://127.0.0.1:8443/vaults/{vault}")
ARM = "https://management.azure.com"
S = "/subscriptions/00000000-0000-0000-0000-00000000000a"
G = f"{S}/resourceGroups/rg-app"
ACCOUNT = f"{G}/providers/Microsoft.Storage/storageAccounts/stapp"
SITE = f"{G}/providers/Microsoft.Web/sites/web-app"

# (method, path, operation, scope)
ARM_CASES = [
    ("GET", "/subscriptions", "Microsoft.Resources/subscriptions/read", "/"),
    ("GET", S, "Microsoft.Resources/subscriptions/read", S),
    ("GET", "/tenants", "Microsoft.Resources/tenants/read", "/"),
    ("GET", "/providers", "Microsoft.Resources/providers/read", "/"),
    ("GET", f"{S}/providers", "Microsoft.Resources/subscriptions/providers/read", S),
    ("GET", f"{S}/providers/Microsoft.Storage", "Microsoft.Resources/subscriptions/providers/read", S),
    ("POST", f"{S}/providers/Microsoft.Storage/register", "Microsoft.Storage/register/action", S),
    ("POST", f"{S}/providers/Microsoft.Storage/checkNameAvailability", "Microsoft.Storage/checkNameAvailability/action", S),
    ("GET", f"{S}/resourcegroups", "Microsoft.Resources/subscriptions/resourceGroups/read", S),
    ("GET", G, "Microsoft.Resources/subscriptions/resourceGroups/read", G),
    ("HEAD", G, "Microsoft.Resources/subscriptions/resourceGroups/read", G),
    ("PUT", G, "Microsoft.Resources/subscriptions/resourceGroups/write", G),
    ("PATCH", G, "Microsoft.Resources/subscriptions/resourceGroups/write", G),
    ("DELETE", G, "Microsoft.Resources/subscriptions/resourceGroups/delete", G),
    ("POST", f"{G}/exportTemplate", "Microsoft.Resources/subscriptions/resourceGroups/exportTemplate/action", G),
    ("GET", f"{G}/resources", "Microsoft.Resources/subscriptions/resourceGroups/resources/read", G),
    ("GET", f"{S}/resources", "Microsoft.Resources/subscriptions/resources/read", S),
    ("GET", f"{S}/locations", "Microsoft.Resources/subscriptions/locations/read", S),
    ("GET", f"{S}/operationresults/eyJqb2JJZCI6IjEifQ", "Microsoft.Resources/subscriptions/operationresults/read", S),
    ("GET", f"{S}/tagNames", "Microsoft.Resources/subscriptions/tagNames/read", S),
    ("PUT", f"{S}/tagNames/env/tagValues/prod", "Microsoft.Resources/subscriptions/tagNames/tagValues/write", S),
    ("GET", f"{G}/providers/Microsoft.Storage/storageAccounts", "Microsoft.Storage/storageAccounts/read", G),
    ("GET", f"{S}/providers/Microsoft.Storage/storageAccounts", "Microsoft.Storage/storageAccounts/read", S),
    ("GET", ACCOUNT, "Microsoft.Storage/storageAccounts/read", ACCOUNT),
    ("PUT", ACCOUNT, "Microsoft.Storage/storageAccounts/write", ACCOUNT),
    ("PATCH", ACCOUNT, "Microsoft.Storage/storageAccounts/write", ACCOUNT),
    ("DELETE", ACCOUNT, "Microsoft.Storage/storageAccounts/delete", ACCOUNT),
    ("POST", f"{ACCOUNT}/listKeys", "Microsoft.Storage/storageAccounts/listKeys/action", ACCOUNT),
    ("POST", f"{ACCOUNT}/regenerateKey", "Microsoft.Storage/storageAccounts/regenerateKey/action", ACCOUNT),
    ("GET", f"{ACCOUNT}/blobServices/default", "Microsoft.Storage/storageAccounts/blobServices/read", f"{ACCOUNT}/blobServices/default"),
    ("GET", f"{ACCOUNT}/blobServices/default/containers", "Microsoft.Storage/storageAccounts/blobServices/containers/read",
     f"{ACCOUNT}/blobServices/default"),
    ("PUT", f"{ACCOUNT}/blobServices/default/containers/logs", "Microsoft.Storage/storageAccounts/blobServices/containers/write",
     f"{ACCOUNT}/blobServices/default/containers/logs"),
    ("POST", f"{SITE}/config/appsettings/list", "Microsoft.Web/sites/config/list/action", f"{SITE}/config/appsettings"),
    ("POST", f"{SITE}/publishxml", "Microsoft.Web/sites/publishxml/action", SITE),
    ("POST", f"{SITE}/restart", "Microsoft.Web/sites/restart/action", SITE),
    ("GET", f"{SITE}/slots/staging", "Microsoft.Web/sites/slots/read", f"{SITE}/slots/staging"),
    ("POST", f"{G}/providers/Microsoft.ContainerService/managedClusters/aks1/listClusterAdminCredential",
     "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action",
     f"{G}/providers/Microsoft.ContainerService/managedClusters/aks1"),
    ("PUT", f"{G}/providers/Microsoft.Resources/deployments/dep1", "Microsoft.Resources/deployments/write",
     f"{G}/providers/Microsoft.Resources/deployments/dep1"),
    ("GET", f"{G}/providers/Microsoft.Resources/deployments/dep1/operationStatuses/123",
     "Microsoft.Resources/deployments/operationStatuses/read", f"{G}/providers/Microsoft.Resources/deployments/dep1/operationStatuses/123"),
    # deployment history, as deployment_list / deployment_get send it (azure-mgmt-resource-deployments)
    ("GET", f"{G}/providers/Microsoft.Resources/deployments", "Microsoft.Resources/deployments/read", G),
    ("GET", f"{S}/providers/Microsoft.Resources/deployments", "Microsoft.Resources/deployments/read", S),
    ("GET", f"{G}/providers/Microsoft.Resources/deployments/dep1", "Microsoft.Resources/deployments/read",
     f"{G}/providers/Microsoft.Resources/deployments/dep1"),
    ("GET", f"{S}/providers/Microsoft.Resources/deployments/dep1", "Microsoft.Resources/deployments/read",
     f"{S}/providers/Microsoft.Resources/deployments/dep1"),
    ("GET", f"{S}/providers/Microsoft.Resources/deployments/dep1/operations", "Microsoft.Resources/deployments/operations/read",
     f"{S}/providers/Microsoft.Resources/deployments/dep1"),
    ("GET", f"{G}/providers/Microsoft.Resources/deployments/dep1/operations", "Microsoft.Resources/deployments/operations/read",
     f"{G}/providers/Microsoft.Resources/deployments/dep1"),
    # ARM's older route (no provider segment), which the SDK uses for a group deployment's operations:
    # checked as subscriptions/resourceGroups/deployments/..., on the deployment's own id
    ("GET", f"{G}/deployments/dep1/operations", "Microsoft.Resources/subscriptions/resourceGroups/deployments/operations/read",
     f"{G}/providers/Microsoft.Resources/deployments/dep1"),
    ("GET", f"{G}/deployments/dep1/operations/0A1B", "Microsoft.Resources/subscriptions/resourceGroups/deployments/operations/read",
     f"{G}/providers/Microsoft.Resources/deployments/dep1/operations/0A1B"),
    ("GET", f"{G}/deployments", "Microsoft.Resources/subscriptions/resourceGroups/deployments/read", G),
    ("GET", f"{G}/deployments/dep1", "Microsoft.Resources/subscriptions/resourceGroups/deployments/read",
     f"{G}/providers/Microsoft.Resources/deployments/dep1"),
    ("PUT", f"{G}/deployments/dep1", "Microsoft.Resources/subscriptions/resourceGroups/deployments/write",
     f"{G}/providers/Microsoft.Resources/deployments/dep1"),
    ("GET", f"{G}/deployments/dep1/operationstatuses/9", "Microsoft.Resources/subscriptions/resourceGroups/deployments/operationstatuses/read",
     f"{G}/providers/Microsoft.Resources/deployments/dep1/operationstatuses/9"),
    # role definitions, as role_definition_list sends them
    ("GET", f"{S}/providers/Microsoft.Authorization/roleDefinitions", "Microsoft.Authorization/roleDefinitions/read", S),
    ("GET", "/providers/Microsoft.Authorization/roleDefinitions", "Microsoft.Authorization/roleDefinitions/read", "/"),
    ("GET", f"{S}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
     "Microsoft.Authorization/roleDefinitions/read",
     f"{S}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"),
    ("GET", f"{ACCOUNT}/providers/Microsoft.Authorization/roleDefinitions", "Microsoft.Authorization/roleDefinitions/read", ACCOUNT),
    ("GET", f"{S}/providers/Microsoft.Storage/locations/eastus/asyncoperations/abc",
     "Microsoft.Storage/locations/asyncoperations/read", f"{S}/providers/Microsoft.Storage/locations/eastus/asyncoperations/abc"),
    ("GET", f"{S}/providers/Microsoft.Authorization/roleAssignments", "Microsoft.Authorization/roleAssignments/read", S),
    ("GET", f"{G}/providers/Microsoft.Authorization/roleAssignments", "Microsoft.Authorization/roleAssignments/read", G),
    ("GET", f"{ACCOUNT}/providers/Microsoft.Authorization/roleAssignments", "Microsoft.Authorization/roleAssignments/read", ACCOUNT),
    ("PUT", f"{S}/providers/Microsoft.Authorization/roleAssignments/11111111-2222-3333-4444-555555555555",
     "Microsoft.Authorization/roleAssignments/write",
     f"{S}/providers/Microsoft.Authorization/roleAssignments/11111111-2222-3333-4444-555555555555"),
    ("GET", f"{ACCOUNT}/providers/Microsoft.Insights/diagnosticSettings/ds1", "Microsoft.Insights/diagnosticSettings/read",
     f"{ACCOUNT}/providers/Microsoft.Insights/diagnosticSettings/ds1"),
    ("GET", "/providers/Microsoft.Management/managementGroups/mg1", "Microsoft.Management/managementGroups/read",
     "/providers/Microsoft.Management/managementGroups/mg1"),
    ("GET", "/providers/Microsoft.Storage/operations", "Microsoft.Storage/operations/read", "/"),
    ("GET", f"{G}/providers/Microsoft.Web/sites/providers/config", "Microsoft.Web/sites/config/read",
     f"{G}/providers/Microsoft.Web/sites/providers"),
]

# Azure Monitor reads (the monitor tools): what RBAC checks, and read-only allows each of them.
MONITOR_CASES = [
    ("GET", f"{S}/providers/Microsoft.Insights/eventtypes/management/values",
     "Microsoft.Insights/eventtypes/values/read", f"{S}/providers/Microsoft.Insights/eventtypes/management"),
    ("GET", f"{SITE}/providers/Microsoft.Insights/metricDefinitions", "Microsoft.Insights/metricDefinitions/read", SITE),
    ("GET", f"{SITE}/providers/Microsoft.Insights/metrics", "Microsoft.Insights/metrics/read", SITE),
    ("POST", f"{SITE}/providers/Microsoft.Insights/metrics", "Microsoft.Insights/metrics/read", SITE),
]
ARM_CASES += MONITOR_CASES


@pytest.mark.parametrize(("method", "path", "operation", "scope"), ARM_CASES)
def test_arm_mapping(method, path, operation, scope):
    mapped = map_request(method, ARM + path + "?api-version=2023-01-01", AZ)
    assert (mapped.operation, mapped.scope, mapped.data_action, mapped.plane) == (operation, scope, False, "arm")


@pytest.mark.parametrize(("method", "path", "operation", "scope"), MONITOR_CASES)
def test_read_only_allows_the_monitor_reads(method, path, operation, scope):
    from azure_agent_mcp.policy import decide_request
    from azure_agent_mcp.policy.profiles import builtin_profile

    decision, mapped = decide_request(builtin_profile("read-only"), AZ, method, ARM + path + "?api-version=2024-02-01")
    assert mapped is not None and not mapped.unknown_operation
    assert decision.effect.value == "allow", decision


@pytest.mark.parametrize(("method", "path", "operation", "scope"), ARM_CASES[:12])
def test_arm_mapping_on_the_sandbox_origin(method, path, operation, scope):
    mapped = map_request(method, "https://127.0.0.1:8443" + path, SANDBOX)
    assert (mapped.operation, mapped.scope, mapped.plane) == (operation, scope, "arm")


KV = "Microsoft.KeyVault/vaults/"
VROOT = "/providers/Microsoft.KeyVault/vaults/kv-ops"
# (method, vault-relative path, DataAction, scope)
VAULT_CASES = [
    ("GET", "/secrets", "secrets/readMetadata/action", VROOT),
    ("GET", "/secrets/db", "secrets/getSecret/action", f"{VROOT}/secrets/db"),
    ("GET", "/secrets/db/0123456789abcdef", "secrets/getSecret/action", f"{VROOT}/secrets/db"),
    ("GET", "/secrets/db/versions", "secrets/readMetadata/action", f"{VROOT}/secrets/db"),
    ("PUT", "/secrets/db", "secrets/setSecret/action", f"{VROOT}/secrets/db"),
    ("PATCH", "/secrets/db/0123", "secrets/update/action", f"{VROOT}/secrets/db"),
    ("DELETE", "/secrets/db", "secrets/delete", f"{VROOT}/secrets/db"),
    ("POST", "/secrets/db/backup", "secrets/backup/action", f"{VROOT}/secrets/db"),
    ("POST", "/secrets/restore", "secrets/restore/action", VROOT),
    ("GET", "/deletedsecrets", "secrets/readMetadata/action", VROOT),
    ("GET", "/deletedsecrets/db", "secrets/readMetadata/action", f"{VROOT}/secrets/db"),
    ("DELETE", "/deletedsecrets/db", "secrets/purge/action", f"{VROOT}/secrets/db"),
    ("POST", "/deletedsecrets/db/recover", "secrets/recover/action", f"{VROOT}/secrets/db"),
    ("GET", "/keys", "keys/read", VROOT),
    ("GET", "/keys/k1/abc", "keys/read", f"{VROOT}/keys/k1"),
    ("POST", "/keys/k1/create", "keys/create/action", f"{VROOT}/keys/k1"),
    ("PUT", "/keys/k1", "keys/import/action", f"{VROOT}/keys/k1"),
    ("POST", "/keys/k1/abc/unwrapkey", "keys/unwrap/action", f"{VROOT}/keys/k1"),
    ("POST", "/keys/k1/abc/wrapkey", "keys/wrap/action", f"{VROOT}/keys/k1"),
    ("POST", "/keys/k1/abc/decrypt", "keys/decrypt/action", f"{VROOT}/keys/k1"),
    ("POST", "/keys/k1/release", "keys/release/action", f"{VROOT}/keys/k1"),
    ("GET", "/keys/k1/rotationpolicy", "keyrotationpolicies/read", f"{VROOT}/keys/k1"),
    ("DELETE", "/deletedkeys/k1", "keys/purge/action", f"{VROOT}/keys/k1"),
    ("GET", "/certificates", "certificates/read", VROOT),
    ("GET", "/certificates/c1/policy", "certificates/read", f"{VROOT}/certificates/c1"),
    ("POST", "/certificates/c1/create", "certificates/create/action", f"{VROOT}/certificates/c1"),
    ("POST", "/certificates/c1/import", "certificates/import/action", f"{VROOT}/certificates/c1"),
    ("DELETE", "/certificates/c1", "certificates/delete", f"{VROOT}/certificates/c1"),
    ("GET", "/certificates/issuers", "certificatecas/read", VROOT),
    ("PUT", "/certificates/issuers/digicert", "certificatecas/write", VROOT),
    ("POST", "/deletedcertificates/c1/recover", "certificates/recover/action", f"{VROOT}/certificates/c1"),
]


@pytest.mark.parametrize(("method", "path", "action", "scope"), VAULT_CASES)
def test_vault_mapping_in_azure_and_in_the_sandbox(method, path, action, scope):
    azure = map_request(method, f"https://kv-ops.vault.azure.net{path}?api-version=7.5", AZ)
    sandbox = map_request(method, f"https://127.0.0.1:8443/vaults/kv-ops{path}?api-version=7.5", SANDBOX)
    for mapped in (azure, sandbox):
        assert (mapped.operation, mapped.scope, mapped.data_action, mapped.plane) == (KV + action, scope, True, "keyvault")
        assert mapped.vault == "kv-ops"


CANONICAL = [
    f"{ACCOUNT}/listKeys",
    f"{ACCOUNT.upper()}/LISTKEYS",
    f"{ACCOUNT}/listKeys?api-version=2023-01-01&x=/../../read",
]


@pytest.mark.parametrize("path", CANONICAL)
def test_canonical_paths_map_to_their_operation(path):
    mapped = map_request("post", ARM + path, AZ)
    assert mapped.operation.lower() == "microsoft.storage/storageaccounts/listkeys/action"
    assert mapped.scope.lower() == ACCOUNT.lower()
    assert mapped.path == path.split("?", 1)[0]  # the path as sent, not a rewriting of it


# Each of these once mapped to the same listKeys a lenient reader sees; now each is refused, and
# the refusal names the part at fault and, where there is one, the canonical path.
NOT_CANONICAL = [
    (f"{ACCOUNT}/listKeys/", "trailing '/'", f"{ACCOUNT}/listKeys"),
    (f"{ACCOUNT}//listKeys", "empty segment", f"{ACCOUNT}/listKeys"),
    (f"/{ACCOUNT}/./listKeys", "empty segment", f"{ACCOUNT}/listKeys"),
    (f"{ACCOUNT}/./listKeys", "dot segment '.'", f"{ACCOUNT}/listKeys"),
    (f"{ACCOUNT}/blobServices/../listKeys", "dot segment '..'", f"{ACCOUNT}/listKeys"),
    (f"{ACCOUNT}/%6c%69%73%74Keys", "unreserved character 'l'", None),
    (ACCOUNT.replace("Microsoft.Storage", "Microsoft%2EStorage") + "/listKeys", "unreserved character '.'", None),
    (f"{ACCOUNT}/listKeys#/../read", "fragment", None),
    (f"{ACCOUNT}/list%4beys", "unreserved character 'K'", None),
    (f"{ACCOUNT}/list Keys", "not printable ASCII", None),
    (f"{ACCOUNT}/listK\u00e9ys", "not printable ASCII", None),
    (f"{ACCOUNT}/list%C3%A9", "non-ASCII byte", None),
    (f"{ACCOUNT}/a%2cb", "lower case", None),
    (f"{ACCOUNT}/a%zzb", "invalid percent-escape", None),
    (f"{ACCOUNT}/a|b", "only escaped", None),
]


@pytest.mark.parametrize(("path", "problem", "canonical"), NOT_CANONICAL)
def test_non_canonical_paths_are_refused_with_the_part_and_the_canonical_form(path, problem, canonical):
    with pytest.raises(UnmappableRequestError) as caught:
        map_request("post", ARM + path, AZ)
    assert "not canonical" in str(caught.value) or "fragment" in str(caught.value) or "ASCII" in str(caught.value)
    assert problem in str(caught.value)
    if canonical is not None:
        assert f"the canonical form is '{canonical}'" in str(caught.value)


REFUSED = [
    ("GET", "https://evil.example.com/subscriptions", "neither the configured ARM endpoint"),
    ("GET", "http://management.azure.com/subscriptions", "neither the configured ARM endpoint"),
    ("GET", "https://management.azure.com:8443/subscriptions", "neither the configured ARM endpoint"),
    ("GET", "https://management.azure.com.evil.com/subscriptions", "neither the configured ARM endpoint"),
    ("GET", "https://user:pw@management.azure.com/subscriptions", "user information"),
    ("GET", "https://kv-ops.vault.azure.net.evil.com/secrets", "neither the configured ARM endpoint"),
    ("GET", "https://a.b.vault.azure.net/secrets", "neither the configured ARM endpoint"),
    ("GET", "/subscriptions", "absolute https URL"),
    ("POST", "https://management.azure.com/batch?api-version=2020-06-01", "/batch"),
    ("GET", "https://management.azure.com/", "ARM root"),
    ("GET", "https://management.azure.com/metadata/endpoints", "not an ARM path"),
    ("OPTIONS", "https://management.azure.com/subscriptions", "method OPTIONS"),
    ("POST", f"{ARM}{ACCOUNT}", "names no action"),
    ("PUT", f"{ARM}{G}/providers/Microsoft.Storage/storageAccounts", "collection"),
    ("DELETE", f"{ARM}/subscriptions", "only GET/HEAD"),
    ("DELETE", f"{ARM}{G}/deployments/dep1", "not a deployment path"),
    ("POST", f"{ARM}{G}/deployments/dep1/cancel", "not a deployment path"),
    ("DELETE", f"{ARM}{G}/deployments/dep1/operations", "only GET/HEAD"),
    ("POST", f"{ARM}{G}/deployments", "only GET/HEAD"),
    ("GET", f"{ARM}{ACCOUNT}%2FlistKeys", "path separator"),
    ("GET", f"{ARM}{ACCOUNT}%2flistKeys", "path separator"),
    ("GET", f"{ARM}{ACCOUNT}%5ClistKeys", "path separator"),
    ("GET", f"{ARM}{ACCOUNT}/%2e%2e/x", "unreserved character '.'"),
    ("GET", f"{ARM}{ACCOUNT}/.%2E/x", "unreserved character '.'"),
    ("GET", f"{ARM}{ACCOUNT}/%252FlistKeys", "twice"),
    ("GET", f"{ARM}{ACCOUNT}/%00", "control character"),
    ("GET", f"{ARM}{ACCOUNT}/%ff", "non-ASCII"),
    ("GET", f"{ARM}/../subscriptions", "dot segment"),
    ("GET", "https://kv-ops.vault.azure.net/", "vault root"),
    ("POST", "https://kv-ops.vault.azure.net/rng", "not a Key Vault data-plane operation"),
    ("GET", "https://127.0.0.1:8443/vaults/kv_bad!/secrets", "not a Key Vault name"),
    ("GET", "https://127.0.0.1:9999/subscriptions", "neither the configured ARM endpoint"),
]


@pytest.mark.parametrize(("method", "url", "problem"), REFUSED)
def test_refused_requests_say_why(method, url, problem):
    endpoints = SANDBOX if "127.0.0.1" in url else AZ
    with pytest.raises(UnmappableRequestError) as caught:
        map_request(method, url, endpoints)
    assert problem in str(caught.value)


def test_sandbox_origin_routes_vault_paths_to_the_data_plane_and_the_rest_to_arm():
    vault = map_request("GET", "https://127.0.0.1:8443/vaults/kv-ops/secrets", SANDBOX)
    arm = map_request("GET", "https://127.0.0.1:8443/subscriptions", SANDBOX)
    latest = map_request("GET", "https://127.0.0.1:8443/vaults/kv-ops/secrets/db/", SANDBOX)
    assert (vault.plane, arm.plane, latest.operation) == (
        "keyvault", "arm", "Microsoft.KeyVault/vaults/secrets/getSecret/action"
    )
    with pytest.raises(UnmappableRequestError, match="dot segment"):
        map_request("GET", "https://127.0.0.1:8443/vaults/kv-ops/../../subscriptions", SANDBOX)
    with pytest.raises(UnmappableRequestError, match="trailing"):
        map_request("GET", "https://127.0.0.1:8443/subscriptions/", SANDBOX)


def test_endpoints_from_environment_and_bad_templates():
    endpoints = Endpoints.from_environment(public_cloud())
    assert map_request("GET", "https://KV-OPS.VAULT.AZURE.NET/secrets", endpoints).vault == "kv-ops"
    for template in ("https://vault.azure.net", "https://{vault}.{vault}.net", "https://x.{vault}.net", "ftp://{vault}.x"):
        with pytest.raises(ValueError):
            Endpoints("https://management.azure.com", template)
