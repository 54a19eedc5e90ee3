"""The embedded Azure emulator: Entra token service, ARM and Key Vault behind one HTTPS origin.

``from azure_agent_mcp.sandbox import Sandbox``. The import is lazy so that ``sandbox/cli.py`` (on
the command-line start-up path) does not pull in uvicorn, cryptography or the planes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure_agent_mcp.sandbox.server import Sandbox, SandboxError

__all__ = ["Sandbox", "SandboxError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from azure_agent_mcp.sandbox import server

        return getattr(server, name)
    raise AttributeError(f"module 'azure_agent_mcp.sandbox' has no attribute {name!r}")
