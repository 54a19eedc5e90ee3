"""azure-agent-mcp: Azure tools for AI agents, tagged with an agent session and held to a local RBAC-shaped policy."""

__version__ = "0.1.0"
USER_AGENT = f"azure-agent-mcp/{__version__}"
