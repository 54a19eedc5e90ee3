"""Deployment history as ARM serves it (Microsoft.Resources/deployments): a room on the ARM plane.

Paths served (azure-rest-api-specs, resources/deployments), GET and HEAD:

- ``/subscriptions/{s}/resourcegroups/{g}/providers/Microsoft.Resources/deployments[/{name}[/operations[/{id}]]]``
- ``/subscriptions/{s}/providers/Microsoft.Resources/deployments[/{name}[/operations[/{id}]]]``
- ``/subscriptions/{s}/resourcegroups/{g}/deployments[/{name}[/operations[/{id}]]]``: the older route,
  which the SDK still uses for a group deployment's operations. ARM checks it as
  ``Microsoft.Resources/subscriptions/resourceGroups/deployments[/operations]/read`` on the
  deployment's id (the path names no provider, so the scope is not the path).

Lists take ``$top`` and ``$filter=provisioningState eq '...'`` and page with ``nextLink``; the sandbox
lists the newest deployment first. RBAC is checked before existence (403 before 404), as ARM does.
The sandbox runs no templates: any other method on these paths is refused with a message saying so.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from azure_agent_mcp.sandbox import catalog
from azure_agent_mcp.sandbox.arm import ArmFailure
from azure_agent_mcp.sandbox.protocol import Response, json_response

if TYPE_CHECKING:
    from azure_agent_mcp.sandbox.access import Principal
    from azure_agent_mcp.sandbox.arm import ArmPlane
    from azure_agent_mcp.sandbox.armpath import ArmTarget
    from azure_agent_mcp.sandbox.deployment_world import Deployment
    from azure_agent_mcp.sandbox.protocol import Request

MAX_TOP = 800  # ARM keeps at most 800 deployments per scope in the history
_STATE_FILTER = re.compile(r"^\s*provisioningState\s+eq\s+'([A-Za-z]+)'\s*$", re.IGNORECASE)


def _located(low: list[str]) -> tuple[int | None, int, bool] | None:
    """(index of the group name or None, index of the first segment after ``deployments``, legacy route)."""
    if len(low) >= 5 and low[0] == "subscriptions" and low[2:5] == ["providers", "microsoft.resources", "deployments"]:
        return None, 5, False
    if len(low) >= 5 and low[0] == "subscriptions" and low[2] == "resourcegroups":
        if len(low) >= 7 and low[4:7] == ["providers", "microsoft.resources", "deployments"]:
            return 3, 7, False
        if low[4] == "deployments":
            return 3, 5, True
    return None


class DeploymentsRoom:
    def __init__(self, plane: ArmPlane) -> None:
        self.plane = plane

    @property
    def _world(self) -> Any:
        return self.plane.state.world

    def serves(self, method: str, lowered_parts: list[str]) -> bool:
        located = _located(lowered_parts)
        return located is not None and len(lowered_parts) - located[1] <= 3

    def handle(self, request: Request, parts: list[str], target: ArmTarget, principal: Principal) -> Response:
        group_index, start, legacy = _located([p.lower() for p in parts]) or (None, 0, False)
        rest = parts[start:]
        if request.method not in ("GET", "HEAD"):
            raise ArmFailure(405, "MethodNotAllowed",
                             f"The sandbox serves deployment history only (GET); it does not run {request.method} "
                             "on deployments (no template deployment, validation, what-if or cancel).")
        self._check_version(request.query_ci("api-version") or "")
        scope = self._scope(parts, group_index)
        if not rest:
            self.plane.require(principal, target.operation, scope)
            return self._list(request, scope)
        deployment_id = f"{scope}/providers/Microsoft.Resources/deployments/{rest[0]}"
        if len(rest) > 1 and rest[1].lower() != "operations":
            raise ArmFailure(404, "NotFound", f"No HTTP resource was found that matches the request URI "
                                              f"'{request.origin}{request.path}'.")
        # the older route names no provider, so its scope is the deployment's own id, not the path
        checked = deployment_id + ("/operations/" + rest[2] if len(rest) == 3 else "") if legacy else target.scope
        self.plane.require(principal, target.operation, checked)
        deployment = self._deployment(deployment_id, rest[0])
        if len(rest) == 1:
            if request.method == "HEAD":
                return Response(204)
            return json_response(200, deployment.to_arm())
        operations = [op.to_arm(deployment.id) for op in deployment.operations]
        if len(rest) == 3:
            found = next((op for op in operations if op["operationId"].lower() == rest[2].lower()), None)
            if found is None:
                raise ArmFailure(404, "DeploymentOperationNotFound",
                                 f"Deployment operation '{rest[2]}' of deployment '{deployment.name}' could not be "
                                 "found.")
            return json_response(200, found)
        return self._page(request, operations)

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _check_version(api_version: str) -> None:
        known = catalog.lookup_type("Microsoft.Resources", "deployments")
        versions = known[2] if known else []
        if api_version not in versions:
            raise ArmFailure(400, "NoRegisteredProviderFound",
                             f"No registered resource provider found for location 'eastus' and API version "
                             f"'{api_version}' for type 'deployments'. The supported api-versions are "
                             f"'{', '.join(versions)}'.")

    def _scope(self, parts: list[str], group_index: int | None) -> str:
        sub = next((s for s in self._world.subscriptions if s.lower() == parts[1].lower()), None)
        if sub is None:
            raise ArmFailure(404, "SubscriptionNotFound", f"The subscription '{parts[1]}' could not be found.")
        if group_index is None:
            return f"/subscriptions/{sub}"
        group = self._world.groups.get(f"/subscriptions/{sub}/resourcegroups/{parts[group_index]}".lower())
        if group is None:
            raise ArmFailure(404, "ResourceGroupNotFound", f"Resource group '{parts[group_index]}' could not be found.")
        return group["id"]

    def _deployment(self, deployment_id: str, name: str) -> Deployment:
        found = self._world.deployments.get(deployment_id.lower())
        if found is None:
            raise ArmFailure(404, "DeploymentNotFound", f"Deployment '{name}' could not be found.")
        return found

    def _list(self, request: Request, scope: str) -> Response:
        state = None
        raw = request.query_ci("$filter")
        if raw and raw.strip():
            match = _STATE_FILTER.match(raw)
            if match is None:
                raise ArmFailure(400, "InvalidFilterInQueryString",
                                 f"The $filter '{raw}' is not supported. Supported: provisioningState eq '{{state}}'.")
            state = match.group(1).lower()
        found = [d for d in self._world.deployments.values()
                 if d.scope.lower() == scope.lower() and (state is None or d.state.lower() == state)]
        found.sort(key=lambda d: d.timestamp, reverse=True)
        return self._page(request, [d.to_arm() for d in found])

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        top_raw = request.query_ci("$top")
        top = MAX_TOP
        if top_raw is not None:
            top = int(top_raw) if top_raw.isdigit() else 0
            if not 1 <= top <= MAX_TOP:
                raise ArmFailure(400, "InvalidTopValue",
                                 f"The value '{top_raw}' of query parameter '$top' is invalid: use 1 to {MAX_TOP}.")
        offset = _offset(request.query_ci("$skiptoken"))
        payload: dict[str, Any] = {"value": items[offset:offset + top]}
        if offset + top < len(items):
            params = {"api-version": request.query_ci("api-version") or ""}
            for name in ("$filter", "$top"):
                value = request.query_ci(name)
                if value:
                    params[name] = value
            params["$skiptoken"] = base64.urlsafe_b64encode(json.dumps({"o": offset + top}).encode()).decode()
            payload["nextLink"] = f"{request.origin}{request.path}?{urlencode(params, quote_via=quote)}"
        return json_response(200, payload)


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = int(json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["o"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ArmFailure(400, "InvalidSkipToken", "The $skiptoken is not valid. Use the nextLink of the previous "
                                                  "page as it was returned.") from exc
    if offset < 0:
        raise ArmFailure(400, "InvalidSkipToken", "The $skiptoken is not valid.")
    return offset
