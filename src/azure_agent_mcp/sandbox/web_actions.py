"""App Service's lifecycle actions on a site (restart, start, stop): a room on the ARM plane.

The temporary-access demo restarts ``app-orders-prod`` with an activated Website Contributor role,
so the sandbox must answer ``POST .../Microsoft.Web/sites/{name}/restart`` as App Service does:
RBAC on ``Microsoft.Web/sites/restart/action`` at the site, 404 for a site that does not exist,
then 200 with no body. ``state`` follows start and stop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from azure_agent_mcp.sandbox.arm import ArmFailure
from azure_agent_mcp.sandbox.protocol import Response

if TYPE_CHECKING:
    from azure_agent_mcp.sandbox.access import Principal
    from azure_agent_mcp.sandbox.arm import ArmPlane
    from azure_agent_mcp.sandbox.armpath import ArmTarget
    from azure_agent_mcp.sandbox.protocol import Request

ACTIONS = {"restart": "Running", "start": "Running", "stop": "Stopped"}


class WebActionsRoom:
    def __init__(self, plane: ArmPlane) -> None:
        self.plane = plane

    def serves(self, method: str, lowered_parts: list[str]) -> bool:
        low = lowered_parts
        return (method == "POST" and len(low) == 9 and low[0] == "subscriptions" and low[2] == "resourcegroups"
                and low[4] == "providers" and low[5] == "microsoft.web" and low[6] == "sites"
                and low[8] in ACTIONS)

    def handle(self, request: Request, parts: list[str], target: ArmTarget, principal: Principal) -> Response:
        self.plane.require(principal, target.operation, target.scope)
        site_id = "/" + "/".join(parts[:8])
        site = self.plane.state.world.resources.get(site_id.lower())
        if site is None or site.get("type", "").lower() != "microsoft.web/sites":
            raise ArmFailure(404, "ResourceNotFound",
                             f"The Resource 'Microsoft.Web/sites/{parts[7]}' under resource group '{parts[3]}' was "
                             "not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")
        site.setdefault("properties", {})["state"] = ACTIONS[parts[8].lower()]
        return Response(200)
