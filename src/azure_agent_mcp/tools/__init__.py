"""The tool catalog: one module per Azure area, each exporting ``TOOLS``."""

from __future__ import annotations

from azure_agent_mcp.tools.base import AzureTool


def catalog() -> tuple[AzureTool, ...]:
    from azure_agent_mcp.tools import (
        access, arm, authorization, deployments, keyvault, local, logs, monitor, resourcegraph, storage,
    )

    return (*local.TOOLS, *arm.TOOLS, *resourcegraph.TOOLS, *keyvault.TOOLS, *storage.TOOLS, *authorization.TOOLS,
            *deployments.TOOLS, *monitor.TOOLS, *logs.TOOLS, *access.TOOLS)
