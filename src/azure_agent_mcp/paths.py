"""Where the server keeps its state (token cache, audit log): one directory, created 0700."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """``$AZURE_AGENT_MCP_STATE_DIR``, else ``$XDG_STATE_HOME/azure-agent-mcp``, else ``~/.local/state/azure-agent-mcp``."""
    explicit = os.environ.get("AZURE_AGENT_MCP_STATE_DIR")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        path = Path(base) / "azure-agent-mcp"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
