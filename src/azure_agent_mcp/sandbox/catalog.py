"""Resource provider metadata: the namespaces, resource types and api-versions the sandbox serves.

Clients pick api-versions from ``GET /subscriptions/{s}/providers/{namespace}`` exactly as they do
against ARM, and generic resource requests with an api-version not listed here are refused with
ARM's ``NoRegisteredProviderFound``.
"""

from __future__ import annotations

from typing import Any

LOCATIONS = {
    "eastus": ("East US", "(US) East US", "US"),
    "westus2": ("West US 2", "(US) West US 2", "US"),
    "westeurope": ("West Europe", "(Europe) West Europe", "Europe"),
    "global": ("Global", "Global", "Global"),
}

_NET = ["2024-01-01", "2023-09-01", "2023-05-01", "2022-07-01"]
PROVIDERS: dict[str, dict[str, list[str]]] = {
    "Microsoft.Storage": {
        "storageAccounts": ["2023-05-01", "2023-01-01", "2022-09-01", "2021-09-01"],
        "storageAccounts/blobServices": ["2023-05-01", "2023-01-01", "2022-09-01"],
        "storageAccounts/blobServices/containers": ["2023-05-01", "2023-01-01", "2022-09-01"],
    },
    "Microsoft.KeyVault": {
        "vaults": ["2023-07-01", "2022-07-01", "2021-10-01", "2019-09-01"],
        "vaults/secrets": ["2023-07-01", "2022-07-01", "2021-10-01"],
    },
    "Microsoft.Web": {
        "sites": ["2023-12-01", "2023-01-01", "2022-09-01"],
        "sites/config": ["2023-12-01", "2023-01-01", "2022-09-01"],
        "serverFarms": ["2023-12-01", "2023-01-01", "2022-09-01"],
    },
    "Microsoft.Compute": {
        "virtualMachines": ["2024-03-01", "2023-09-01", "2023-03-01"],
        "virtualMachines/extensions": ["2024-03-01", "2023-09-01"],
        "disks": ["2023-10-02", "2023-04-02", "2022-07-02"],
    },
    "Microsoft.Network": {
        "virtualNetworks": _NET,
        "virtualNetworks/subnets": _NET,
        "networkInterfaces": _NET,
        "publicIPAddresses": _NET,
        "networkSecurityGroups": _NET,
        "loadBalancers": _NET,
        "privateDnsZones": ["2024-06-01", "2020-06-01", "2018-09-01"],
    },
    "Microsoft.Sql": {
        "servers": ["2023-08-01-preview", "2021-11-01", "2021-02-01-preview"],
        "servers/databases": ["2023-08-01-preview", "2021-11-01", "2021-02-01-preview"],
    },
    "Microsoft.Insights": {"components": ["2020-02-02", "2015-05-01"]},
    "Microsoft.OperationalInsights": {"workspaces": ["2023-09-01", "2022-10-01", "2020-08-01"]},
    "Microsoft.ManagedIdentity": {"userAssignedIdentities": ["2023-01-31", "2018-11-30"]},
    "Microsoft.ContainerRegistry": {"registries": ["2023-07-01", "2023-01-01-preview", "2019-05-01"]},
    "Microsoft.ContainerService": {"managedClusters": ["2024-02-01", "2023-10-01", "2023-08-01"]},
    "Microsoft.DocumentDB": {"databaseAccounts": ["2024-05-15", "2023-11-15", "2023-04-15"]},
    "Microsoft.Cache": {"redis": ["2024-03-01", "2023-08-01", "2023-04-01"]},
    "Microsoft.EventHub": {"namespaces": ["2024-01-01", "2021-11-01"]},
    "Microsoft.ServiceBus": {"namespaces": ["2022-10-01-preview", "2021-11-01"]},
    "Microsoft.Resources": {"deployments": ["2026-06-01", "2025-04-01", "2024-03-01", "2022-09-01", "2021-04-01"]},
    "Microsoft.Authorization": {
        "roleAssignments": ["2022-04-01", "2020-04-01-preview", "2015-07-01"],
        "roleDefinitions": ["2022-04-01", "2018-01-01-preview", "2015-07-01"],
    },
}

# lower "namespace/type/chain" -> (canonical namespace, canonical type chain, api versions)
_TYPE_INDEX: dict[str, tuple[str, str, list[str]]] = {
    f"{ns}/{t}".lower(): (ns, t, versions) for ns, types in PROVIDERS.items() for t, versions in types.items()
}
_NAMESPACES = {ns.lower(): ns for ns in PROVIDERS}


def canonical_namespace(namespace: str) -> str | None:
    return _NAMESPACES.get(namespace.lower())


def lookup_type(namespace: str, type_chain: str) -> tuple[str, str, list[str]] | None:
    return _TYPE_INDEX.get(f"{namespace}/{type_chain}".lower())


def provider_document(subscription: str | None, namespace: str) -> dict[str, Any]:
    locations = [LOCATIONS[name][0] for name in ("eastus", "westus2", "westeurope")]
    prefix = f"/subscriptions/{subscription}" if subscription else ""
    return {
        "id": f"{prefix}/providers/{namespace}",
        "namespace": namespace,
        "registrationState": "Registered",
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": [
            {
                "resourceType": t,
                "locations": locations,
                "apiVersions": list(versions),
                "defaultApiVersion": versions[0],
                "capabilities": "CrossResourceGroupResourceMove, CrossSubscriptionResourceMove",
            }
            for t, versions in PROVIDERS[namespace].items()
        ],
    }


def location_documents(subscription: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"/subscriptions/{subscription}/locations/{name}",
            "name": name,
            "displayName": display,
            "regionalDisplayName": regional,
            "type": "Region",
            "metadata": {"regionType": "Physical" if name != "global" else "Logical", "geographyGroup": geo},
        }
        for name, (display, regional, geo) in LOCATIONS.items()
        if name != "global"
    ]
