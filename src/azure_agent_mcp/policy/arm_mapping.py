"""ARM paths to the operation and scope ARM's own RBAC check uses.

ARM's rules: ``GET``/``HEAD`` -> ``<type chain>/read``, ``PUT``/``PATCH`` -> ``/write``,
``DELETE`` -> ``/delete``, ``POST <resource id>/<name>`` -> ``<type chain>/<name>/action``. The type
chain is the provider namespace followed by the type segments of the path:
``/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a/blobServices/default``
is ``Microsoft.Storage/storageAccounts/blobServices``. A ``providers`` segment where a type
would stand starts an extension resource (``.../storageAccounts/a/providers/Microsoft.Authorization/roleAssignments``).
Subscription and resource-group level paths are ``Microsoft.Resources/subscriptions/...``.

POST requests that Azure RBAC checks as reads (a Resource Graph or Log Analytics query) are the
exception; ``known_operations.post_reads`` lists them with their sources.

Scope: for a resource (or a POST action on it) its resource id; for a collection (a list) the
resource or scope that contains it; ``/`` for tenant-level lists. Anything else is refused, with
``/batch`` named explicitly: it bundles requests the policy could not see one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure_agent_mcp.policy.known_operations import post_read

READ_METHODS = frozenset({"GET", "HEAD"})
WRITE_METHODS = frozenset({"PUT", "PATCH"})

SUBSCRIPTIONS_READ = "Microsoft.Resources/subscriptions/read"
RESOURCE_GROUPS = "Microsoft.Resources/subscriptions/resourceGroups"


class ArmShapeError(ValueError):
    """The path is not an ARM request shape the mapper understands."""


@dataclass(frozen=True)
class ArmOperation:
    operation: str
    scope: str


def _verb(method: str, what: str) -> str:
    if method in READ_METHODS:
        return "read"
    if method in WRITE_METHODS:
        return "write"
    if method == "DELETE":
        return "delete"
    raise ArmShapeError(f"{method} is not a method ARM accepts on {what}")


def _read_only(method: str, what: str) -> None:
    if method not in READ_METHODS:
        raise ArmShapeError(f"{method} is not a method ARM accepts on {what} (only GET/HEAD)")


def _join(*segments: str) -> str:
    return "/" + "/".join(segments)


def map_arm(method: str, segs: list[str]) -> ArmOperation:
    low = [s.lower() for s in segs]
    n = len(segs)
    if n == 0:
        raise ArmShapeError("the ARM root is not a resource")
    head = low[0]
    if head == "batch":
        raise ArmShapeError("ARM /batch bundles several requests the policy cannot check one by one")
    if head == "subscriptions":
        return _subscriptions(method, segs, low)
    if head == "tenants" and n == 1:
        _read_only(method, "the tenant list")
        return ArmOperation("Microsoft.Resources/tenants/read", "/")
    if head == "providers":
        if n <= 2:  # tenant-level provider metadata: /providers, /providers/{namespace}
            _read_only(method, "provider metadata")
            return ArmOperation("Microsoft.Resources/providers/read", "/")
        return _provider_sections(method, segs, low, 0, "")
    raise ArmShapeError(f"'/{segs[0]}' is not an ARM path this server maps")


def _subscriptions(method: str, segs: list[str], low: list[str]) -> ArmOperation:
    n = len(segs)
    if n == 1:
        _read_only(method, "the subscription list")
        return ArmOperation(SUBSCRIPTIONS_READ, "/")
    sub = _join(*segs[:2])
    if n == 2:
        _read_only(method, "a subscription")
        return ArmOperation(SUBSCRIPTIONS_READ, sub)
    kind = low[2]
    if kind == "resourcegroups":
        return _resource_groups(method, segs, low, sub)
    if kind == "providers":
        if n <= 4:  # /subscriptions/s/providers[/{namespace}]: provider registrations
            _read_only(method, "provider registrations")
            return ArmOperation("Microsoft.Resources/subscriptions/providers/read", sub)
        return _provider_sections(method, segs, low, 2, sub)
    if kind == "resources" and n == 3:
        _read_only(method, "the subscription's resource list")
        return ArmOperation("Microsoft.Resources/subscriptions/resources/read", sub)
    if kind == "locations" and n == 3:
        _read_only(method, "the location list")
        return ArmOperation("Microsoft.Resources/subscriptions/locations/read", sub)
    if kind == "operationresults" and n >= 4:
        _read_only(method, "an operation result")
        return ArmOperation("Microsoft.Resources/subscriptions/operationresults/read", sub)
    if kind == "tagnames":
        if n == 3:
            _read_only(method, "the tag list")
            return ArmOperation("Microsoft.Resources/subscriptions/tagNames/read", sub)
        if n == 4:
            return ArmOperation(f"Microsoft.Resources/subscriptions/tagNames/{_verb(method, 'a tag name')}", sub)
        if n == 6 and low[4] == "tagvalues":
            verb = _verb(method, "a tag value")
            return ArmOperation(f"Microsoft.Resources/subscriptions/tagNames/tagValues/{verb}", sub)
    raise ArmShapeError(f"'{_join(*segs)}' is not a subscription-level path this server maps")


def _resource_groups(method: str, segs: list[str], low: list[str], sub: str) -> ArmOperation:
    n = len(segs)
    if n == 3:
        _read_only(method, "the resource group list")
        return ArmOperation(f"{RESOURCE_GROUPS}/read", sub)
    group = _join(*segs[:4])
    if n == 4:
        return ArmOperation(f"{RESOURCE_GROUPS}/{_verb(method, 'a resource group')}", group)
    if low[4] == "deployments":
        return _legacy_deployments(method, segs, low, group)
    if n == 5:
        if low[4] == "resources":
            _read_only(method, "the resource group's resource list")
            return ArmOperation(f"{RESOURCE_GROUPS}/resources/read", group)
        if method == "POST" and low[4] != "providers":  # exportTemplate, moveResources, validateMoveResources
            return ArmOperation(f"{RESOURCE_GROUPS}/{segs[4]}/action", group)
    if n >= 6 and low[4] == "providers":
        return _provider_sections(method, segs, low, 4, group)
    raise ArmShapeError(f"'{_join(*segs)}' is not a resource-group-level path this server maps")


def _legacy_deployments(method: str, segs: list[str], low: list[str], group: str) -> ArmOperation:
    """``{group}/deployments[/{name}[/operations[/{id}]]]``: deployments' older route, without a provider.

    ARM checks it as ``Microsoft.Resources/subscriptions/resourceGroups/deployments[/operations]/...`` (its
    published operations name both forms), on the deployment's id: ``{group}/providers/Microsoft.Resources/
    deployments/{name}``, as the newer route names it. The SDK lists a group deployment's operations here.
    """
    n = len(segs)
    if n == 5:
        _read_only(method, "the resource group's deployment list")
        return ArmOperation(f"{RESOURCE_GROUPS}/deployments/read", group)
    deployment = group + _join("providers", "Microsoft.Resources", "deployments", segs[5])
    if n == 6 and method != "DELETE":
        return ArmOperation(f"{RESOURCE_GROUPS}/deployments/{_verb(method, 'a deployment')}", deployment)
    if n in (7, 8) and low[6] in ("operations", "operationstatuses"):
        _read_only(method, "a deployment's operations")
        kind = "operations" if low[6] == "operations" else "operationstatuses"
        scope = deployment + _join(*segs[6:]) if n == 8 else deployment
        return ArmOperation(f"{RESOURCE_GROUPS}/deployments/{kind}/read", scope)
    raise ArmShapeError(f"'{_join(*segs)}' is not a deployment path this server maps")


def _provider_sections(method: str, segs: list[str], low: list[str], start: int, parent: str) -> ArmOperation:
    """``{parent}/providers/NS/t1/n1/.../providers/NS2/...``: one section per provider namespace."""
    n = len(segs)
    i = start  # segs[i] == "providers"
    while True:
        if i + 1 >= n:
            raise ArmShapeError(f"'{_join(*segs)}' names 'providers' without a namespace")
        namespace = segs[i + 1]
        types: list[str] = []
        names: list[str] = []
        pos = i + 2
        while pos < n:
            if low[pos] == "providers" and types and len(types) == len(names):
                break  # an extension resource on the resource named so far
            types.append(segs[pos])
            pos += 1
            if pos < n:
                names.append(segs[pos])
                pos += 1
        if pos < n:  # continue with the extension section; its parent is this resource
            parent = parent + _join("providers", *segs[i + 1 : pos])
            i = pos
            continue
        return _section_operation(method, segs, namespace, types, names, parent, i)


def _section_operation(
    method: str, segs: list[str], namespace: str, types: list[str], names: list[str], parent: str, i: int
) -> ArmOperation:
    if not types:
        raise ArmShapeError(f"'{_join(*segs)}' names a provider namespace but no resource type")
    base = parent + _join("providers", namespace)
    if len(names) == len(types):  # ends with a name: one resource
        resource_id = parent + _join(*segs[i:])
        chain = "/".join([namespace, *types])
        if method == "POST":
            # ``.../workspaces/w/api/query``: a read behind a POST whose path ends in a name
            read = post_read("/".join([namespace, *types, names[-1], "action"]))
            if read is not None and len(types) > 1:
                return ArmOperation(read, parent + _join(*segs[i:-2]))
            raise ArmShapeError(f"POST to the resource '{resource_id}' itself names no action")
        return ArmOperation(f"{chain}/{_verb(method, 'a resource')}", resource_id)
    # ends with a type: a collection, or (POST) an action on the resource before it
    container = base + ("/" + "/".join(_interleave(types[:-1], names)) if names else "")
    container = container if names else (parent or "/")
    if method == "POST":
        action = "/".join([namespace, *types, "action"])
        return ArmOperation(post_read(action) or action, container)
    if method in READ_METHODS:
        chain = "/".join([namespace, *types])
        return ArmOperation(f"{chain}/read", container)
    raise ArmShapeError(f"{method} on the collection '{_join(*segs)}' is not an ARM operation")


def _interleave(types: list[str], names: list[str]) -> list[str]:
    out: list[str] = []
    for t, name in zip(types, names):
        out.extend((t, name))
    return out
