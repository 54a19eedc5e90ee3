"""The tool catalog: one module per Azure area, each exporting ``TOOLS``."""

from __future__ import annotations

from azure_agent_mcp.tools.base import AzureTool


def catalog() -> tuple[AzureTool, ...]:
    from azure_agent_mcp.tools import arm, authorization, keyvault, local, monitor, storage

    return (*local.TOOLS, *arm.TOOLS, *keyvault.TOOLS, *storage.TOOLS, *authorization.TOOLS, *monitor.TOOLS)
