"""The seeded world as Resource Graph's ``Resources`` and ``ResourceContainers`` tables.

Rows carry Resource Graph's column shape (type and resourceGroup lower-cased, empty strings for
absent string columns, nulls for absent dynamic ones), and only what the caller may read in the
subscriptions asked: Resource Graph filters by RBAC instead of refusing the query.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from azure_agent_mcp.sandbox.access import Principal
from azure_agent_mcp.sandbox.kql import Column, Table

_STRINGS = ("id", "name", "type", "tenantId", "kind", "location", "resourceGroup", "subscriptionId", "managedBy")
_DYNAMICS = ("sku", "plan", "properties", "tags", "identity", "zones", "extendedLocation")
COLUMNS = [Column(name, "string") for name in _STRINGS] + [Column(name, "dynamic") for name in _DYNAMICS]


def _ids(resource_id: str) -> tuple[str, str]:
    parts = resource_id.split("/")
    lowered = [p.lower() for p in parts]
    sub = parts[2] if len(parts) > 2 else ""
    group = parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered else ""
    return sub, group


def _row(doc: dict[str, Any], tenant_id: str, name: str | None = None) -> list[Any]:
    sub, group = _ids(doc["id"])
    return [
        doc["id"], name if name is not None else doc["id"].rstrip("/").rsplit("/", 1)[-1], doc["type"].lower(),
        tenant_id, doc.get("kind") or "", doc.get("location") or "", group.lower(), sub, doc.get("managedBy") or "",
        doc.get("sku"), doc.get("plan"), doc.get("properties") or {}, doc.get("tags") or {}, doc.get("identity"),
        doc.get("zones"), doc.get("extendedLocation"),
    ]


def resources_table(state: Any, principal: Principal, subscriptions: Iterable[str]) -> Table:
    wanted = {s.lower() for s in subscriptions}
    rows = []
    for doc in state.world.resources.values():
        sub, _ = _ids(doc["id"])
        if sub.lower() in wanted and state.authorizer.allowed(principal.object_id, f"{doc['type']}/read", doc["id"]):
            rows.append(_row(doc, state.tenant_id))
    return Table(list(COLUMNS), rows)


def containers_table(state: Any, principal: Principal, subscriptions: Iterable[str]) -> Table:
    wanted = {s.lower() for s in subscriptions}
    rows = []
    for sub, display in state.world.subscriptions.items():
        scope = f"/subscriptions/{sub}"
        if sub.lower() not in wanted or not state.authorizer.allowed(
                principal.object_id, "Microsoft.Resources/subscriptions/read", scope):
            continue
        rows.append(_row({
            "id": scope, "type": "microsoft.resources/subscriptions",
            "properties": {"state": "Enabled", "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off"},
                "managementGroupAncestorsChain": [{"name": state.tenant_id, "displayName": "Tenant Root Group"}]},
        }, state.tenant_id, name=display))
    for group in state.world.groups.values():
        sub, _ = _ids(group["id"])
        if sub.lower() in wanted and state.authorizer.allowed(
                principal.object_id, "Microsoft.Resources/subscriptions/resourceGroups/read", group["id"]):
            rows.append(_row({**group, "type": "microsoft.resources/subscriptions/resourcegroups"}, state.tenant_id))
    return Table(list(COLUMNS), rows)


TABLES = {"resources": ("Resources", resources_table), "resourcecontainers": ("ResourceContainers", containers_table)}


def table_for(name: str, state: Any, principal: Principal, subscriptions: list[str]) -> Table | None:
    """The named table (Resource Graph's table names are case-insensitive), or None if it has none such."""
    entry = TABLES.get(name.lower())
    return None if entry is None else entry[1](state, principal, subscriptions)
