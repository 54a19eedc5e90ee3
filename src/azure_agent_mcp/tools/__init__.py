"""The tool catalog: one module per Azure area, each exporting ``TOOLS``."""

from __future__ import annotations

from azure_agent_mcp.tools.base import AzureTool


def catalog(devops: bool = False) -> tuple[AzureTool, ...]:
    """The tools; ``devops``: with the Azure DevOps tools, which need an organization (``--devops-organization``)."""
    from azure_agent_mcp.tools import (
        access, arm, authorization, deployments, keyvault, local, logs, monitor, resourcegraph, storage,
    )

    tools = (*local.TOOLS, *arm.TOOLS, *resourcegraph.TOOLS, *keyvault.TOOLS, *storage.TOOLS, *authorization.TOOLS,
             *deployments.TOOLS, *monitor.TOOLS, *logs.TOOLS, *access.TOOLS)
    if devops:
        from azure_agent_mcp.tools import devops as devops_tools

        tools = (*tools, *devops_tools.TOOLS)
    return tools
