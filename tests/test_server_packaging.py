"""What ships around the server: client snippets, the repository's VS Code config, the Dockerfile."""

from __future__ import annotations

import json
import re
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
    assert any(line.startswith("ENTRYPOINT ") for line in instructions)


def _entrypoint_script() -> str:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    entry = json.loads(next(line for line in lines if line.startswith("ENTRYPOINT "))[len("ENTRYPOINT "):])
    assert entry[:2] == ["sh", "-c"], entry
    return entry[2]


def test_the_image_serves_http_with_authentication(sandbox, tmp_path):
    """The image's entrypoint, run as the image runs it (plus loopback and the sandbox): HTTP, callers
    must sign in, the probe answers."""
    import os
    import re

    import httpx

    script = _entrypoint_script()
    assert "--dangerously-allow-anonymous" not in script
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "AZURE_AGENT_MCP_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(
        ["sh", "-c", script, "azure-agent-mcp", "--sandbox", str(sandbox.manifest_path), "--host", "127.0.0.1",
         "--port", "0", "--audit-log", str(tmp_path / "audit.jsonl")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        line = proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/mcp", line)
        assert match, line
        assert "sign in to Entra" in line
        origin = match.group(1)
        assert httpx.get(origin + "/healthz", timeout=30).json() == {"status": "ok"}
        refused = httpx.post(origin + "/mcp", json={}, headers={"accept": "application/json, text/event-stream"},
                             timeout=30)
        assert refused.status_code == 401 and "resource_metadata=" in refused.headers["www-authenticate"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_kubernetes_example_passes_flags_serve_accepts_and_probes_healthz():
    import yaml

    from azure_agent_mcp.cli import build_parser

    documents = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    workloads = [d for d in documents if d and d.get("kind") in ("StatefulSet", "Deployment")]
    assert workloads and workloads[0]["spec"]["replicas"] >= 2
    container = workloads[0]["spec"]["template"]["spec"]["containers"][0]
    filled = [re.sub(r"<[^>]+>", lambda m: _placeholder(m.group(0)), arg) for arg in container["args"]]
    args = build_parser().parse_args(["serve", *filled])
    assert args.transport == "http" and not args.dangerously_allow_anonymous
    assert args.auth_client_id and (args.auth_assertion_file or args.auth_secret_env or args.auth_certificate)
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert any(e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT" for e in container["env"])


def _placeholder(name: str) -> str:
    if "id" in name:
        return "5a1db0c5-0000-4000-a000-000000000001"
    return "mcp.example.com"
