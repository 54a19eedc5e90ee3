"""What a sandbox service that lives under ARM's origin and token must offer the ARM plane.

Resource Graph, Azure Monitor and the other read services are rooms of their own, not routes in
``arm.py``: the ARM plane authenticates the token, checks the api-version and the claims
challenge, maps the request to its operation, then hands the request to the first room that
serves the path. A room checks RBAC through ``ArmPlane.require`` and answers in its service's
own shapes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from azure_agent_mcp.sandbox.access import Principal
    from azure_agent_mcp.sandbox.armpath import ArmTarget
    from azure_agent_mcp.sandbox.protocol import Request, Response


class ArmRoom(Protocol):
    def serves(self, method: str, lowered_parts: list[str]) -> bool:
        """Whether this room answers the path (its segments lower-cased) for this method."""

    def handle(self, request: Request, parts: list[str], target: ArmTarget, principal: Principal) -> Response:
        """The answer; raise ``ArmFailure`` for ARM's error shape."""
