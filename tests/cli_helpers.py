"""Running `azure-agent-mcp` as an operator's script does: a subprocess with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without Azure or Copilot variables, and a private state directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "COPILOT_"))}
    env["AZURE_AGENT_MCP_STATE_DIR"] = str(tmp_path / "state")
    env.update(extra)
    return env


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "azure_agent_mcp", *args],
        capture_output=True, text=True, env=cli_env(tmp_path, **env), timeout=120,
    )
