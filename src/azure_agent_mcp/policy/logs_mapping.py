"""Log Analytics query API paths to the operation Azure RBAC checks, at an ARM scope.

Paths are relative to the query endpoint (``https://api.loganalytics.io``). The one shape this
server vouches for is the resource-centric workspace query,
``GET|POST /v1/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.OperationalInsights/workspaces/{w}/query``:
Log Analytics checks ``Microsoft.OperationalInsights/workspaces/query/read`` (an Action, as
azure-docs permissions/monitor.md lists it, not a DataAction) on the workspace's ARM id.

Refused outright (no scope the policy could decide on, or more than one request):

- ``/v1/workspaces/{customerId}/query``: a workspace GUID names no subscription or group, so no
  ARM scope; the refusal says to use the workspace's resource id;
- ``/v1/$batch``: it bundles queries the policy could not see one by one;
- any other path, method or API version.

A resource-centric query on anything but a workspace (``/v1/{subscription, group or resource
id}/query``) maps to ``{type chain}/query/read`` at that id and is always marked *unknown*:
Azure publishes no such operation, so the read-only policies refuse it and the audit marks it.
"""

from __future__ import annotations

from dataclasses import dataclass

WORKSPACE_QUERY = "Microsoft.OperationalInsights/workspaces/query/read"
_WORKSPACE_NAMESPACE = "microsoft.operationalinsights"
_QUERY_METHODS = frozenset({"GET", "POST"})


class LogsShapeError(ValueError):
    """The path is not a Log Analytics query shape the mapper understands."""


@dataclass(frozen=True)
class LogsOperation:
    operation: str
    scope: str
    known: bool  # the workspace query Azure publishes; False for the other resource-centric forms


def _join(segments: list[str]) -> str:
    return "/" + "/".join(segments)


def map_logs(method: str, segs: list[str]) -> LogsOperation:
    """``segs``: the decoded path segments below the endpoint (``["v1", "subscriptions", ...]``)."""
    low = [s.lower() for s in segs]
    if not segs or low[0] != "v1":
        raise LogsShapeError("Log Analytics paths start with /v1 (the query API version this server maps)")
    rest, rest_low = segs[1:], low[1:]
    if rest_low[:1] == ["$batch"]:
        raise LogsShapeError("/v1/$batch bundles several queries the policy cannot check one by one")
    if rest_low[:1] == ["workspaces"]:
        raise LogsShapeError(
            "a workspace GUID (/v1/workspaces/{id}/...) names no ARM scope the policy could decide on; query the "
            "workspace by its resource id instead: /v1/subscriptions/{s}/resourceGroups/{g}/providers/"
            "Microsoft.OperationalInsights/workspaces/{name}/query"
        )
    if len(rest) < 3 or rest_low[-1] != "query":
        raise LogsShapeError(f"'{_join(segs)}' is not a Log Analytics query path this server maps")
    if method not in _QUERY_METHODS:
        raise LogsShapeError(f"{method} is not a method the Log Analytics query API accepts (GET or POST)")
    scope_segments, scope_low = rest[:-1], rest_low[:-1]
    chain = _type_chain(scope_segments, scope_low)
    scope = _join(scope_segments)
    if (
        len(scope_segments) == 8
        and scope_low[2] == "resourcegroups"
        and scope_low[4] == "providers"
        and scope_low[5] == _WORKSPACE_NAMESPACE
        and scope_low[6] == "workspaces"
    ):
        return LogsOperation(WORKSPACE_QUERY, scope, known=True)
    return LogsOperation(f"{chain}/query/read", scope, known=False)


def _type_chain(segs: list[str], low: list[str]) -> str:
    """The RBAC type chain of an ARM scope written out as ``subscriptions/{s}[/resourceGroups/{g}][/providers/...]``."""
    n = len(segs)
    if n < 2 or low[0] != "subscriptions":
        raise LogsShapeError(f"'{_join(segs)}' is not a subscription, resource group or resource id")
    if n == 2:
        return "Microsoft.Resources/subscriptions"
    position = 2
    if low[2] == "resourcegroups":
        if n == 3:
            raise LogsShapeError(f"'{_join(segs)}' names resourceGroups without a group")
        if n == 4:
            return "Microsoft.Resources/subscriptions/resourceGroups"
        position = 4
    chain: list[str] = []
    while position < n:
        if low[position] != "providers" or position + 2 >= n:
            raise LogsShapeError(f"'{_join(segs)}' is not a resource id (providers/Namespace/type/name...)")
        namespace = segs[position + 1]
        position += 2
        types: list[str] = []
        while position < n and low[position] != "providers":
            if position + 1 >= n:
                raise LogsShapeError(f"'{_join(segs)}' ends with a type instead of a resource name")
            types.append(segs[position])
            position += 2
        if not types:
            raise LogsShapeError(f"'{_join(segs)}' names a provider namespace but no resource")
        chain = [namespace, *types]
    return "/".join(chain)
