"""ARM's mapping of an HTTP request to the operation string RBAC checks, and the scope it applies to.

``GET/HEAD`` -> ``{type}/read``, ``PUT/PATCH`` -> ``write``, ``DELETE`` -> ``delete``,
``POST .../{x}`` -> ``{type}/{x}/action``. The type chain comes from the path: after the last
``providers/{namespace}`` segment the even positions are types; subscription and resource group
level paths belong to ``Microsoft.Resources/subscriptions[/resourceGroups]/...``.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure_agent_mcp.sandbox import catalog

# Microsoft.Resources segment names in ARM's own casing (clients send e.g. "resourcegroups").
_RESOURCES_TYPES = {t.lower(): t for t in (
    "subscriptions", "resourceGroups", "resources", "providers", "locations", "operationresults", "tenants",
    "deployments", "tagNames",
)}
_SUFFIX = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


@dataclass(frozen=True)
class ArmTarget:
    operation: str
    scope: str
    namespace: str
    types: tuple[str, ...]  # the type chain (canonical casing as requested)
    provider_index: int | None  # index of the last "providers" segment that names a namespace


def split_path(path: str) -> list[str]:
    """Path segments without empty ones (duplicate or trailing slashes are ignored, as ARM does)."""
    return [segment for segment in path.split("/") if segment]


def last_provider_index(lowered: list[str]) -> int | None:
    for i in range(len(lowered) - 2, -1, -1):
        if lowered[i] == "providers":
            return i
    return None


def canonical_parts(parts: list[str]) -> list[str]:
    """ARM's casing for the fixed segments of a path (type names, ``providers``); names untouched."""
    out = list(parts)
    lowered = [p.lower() for p in parts]
    p = last_provider_index(lowered)
    head = out if p is None else out[:p]
    for i in range(0, len(head), 2):
        head[i] = _RESOURCES_TYPES.get(head[i].lower(), head[i])
    if p is None:
        return head
    out[:p] = head
    out[p] = "providers"
    namespace = catalog.canonical_namespace(out[p + 1])
    if namespace is not None:
        out[p + 1] = namespace
        chain: list[str] = []
        for i in range(p + 2, len(out), 2):
            chain.append(out[i])
            known = catalog.lookup_type(namespace, "/".join(chain))
            if known is None:
                break
            out[i] = known[1].rsplit("/", 1)[-1]
            chain[-1] = out[i]
    return out


def map_arm(method: str, parts: list[str]) -> ArmTarget:
    parts = canonical_parts(parts)
    lowered = [p.lower() for p in parts]
    suffix = _SUFFIX.get(method, "action")
    p = last_provider_index(lowered)
    if p is not None and p + 2 <= len(parts):
        namespace = parts[p + 1]
        rest = parts[p + 2:]
        base = parts[:p]
        if not rest:  # /subscriptions/{s}/providers/{namespace}: provider metadata
            return ArmTarget(
                "Microsoft.Resources/subscriptions/providers/read" if base else "Microsoft.Resources/providers/read",
                "/" + "/".join(base) if base else "/",
                "Microsoft.Resources",
                ("subscriptions", "providers") if base else ("providers",),
                None,
            )
        if method == "POST" and len(rest) % 2 == 1 and len(rest) >= 3:
            action = rest[-1]
            types = tuple(rest[0:-1:2])
            operation = f"{namespace}/{'/'.join(types)}/{action}/action"
            scope_parts = base + ["providers", namespace] + rest[:-1]
        else:
            types = tuple(rest[0::2])
            operation = f"{namespace}/{'/'.join(types)}/{suffix}"
            if len(rest) % 2 == 0:
                scope_parts = base + ["providers", namespace] + rest
            elif len(rest) > 1:
                scope_parts = base + ["providers", namespace] + rest[:-1]
            else:
                scope_parts = base
        return ArmTarget(operation, "/" + "/".join(scope_parts), namespace, types, p)
    # No provider: subscription / resource group level (Microsoft.Resources).
    if method == "POST" and len(parts) % 2 == 1 and len(parts) >= 3:
        types = tuple(parts[0:-1:2])
        operation = f"Microsoft.Resources/{'/'.join(types)}/{parts[-1]}/action"
        scope_parts = parts[:-1]
    else:
        types = tuple(parts[0::2])
        operation = f"Microsoft.Resources/{'/'.join(types)}/{suffix}"
        scope_parts = parts if len(parts) % 2 == 0 else parts[:-1]
    return ArmTarget(operation, "/" + "/".join(scope_parts) if scope_parts else "/", "Microsoft.Resources", types,
                     None)
