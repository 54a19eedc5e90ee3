"""What ships around the server: client snippets, the repository's VS Code config, the Dockerfile."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("client,key", [("vscode", "servers"), ("claude", "mcpServers"), ("copilot-cli", "mcpServers")])
def test_config_snippets_are_valid(client, key):
    out = subprocess.run(
        [sys.executable, "-m", "azure_agent_mcp", "config", client, "--sandbox"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    document = json.loads(out)
    entry = document[key]["azure-agent-mcp"]
    assert entry["command"] == "azure-agent-mcp"
    assert entry["args"][:2] == ["serve", "--sandbox"]
    if client == "vscode":
        assert entry["type"] == "stdio"


def test_repository_vscode_config_runs_the_sandbox_read_only():
    document = json.loads((ROOT / ".vscode" / "mcp.json").read_text())
    entry = document["servers"]["azure-agent-mcp"]
    assert entry["type"] == "stdio"
    assert entry["args"] == ["serve", "--sandbox", "--read-only"]


def test_dockerfile_copies_only_what_exists_and_runs_as_non_root():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    copies = [shlex.split(line)[1:-1] for line in instructions if line.upper().startswith("COPY ")]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    assert any(line.startswith("FROM python:") and "slim" in line for line in instructions)
    users = [line for line in instructions if line.upper().startswith("USER ")]
    assert users and users[-1].split()[1] not in ("root", "0")
    assert instructions[-1] == 'ENTRYPOINT ["azure-agent-mcp", "serve"]'
