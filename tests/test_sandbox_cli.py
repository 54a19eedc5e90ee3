"""`azure-agent-mcp sandbox` as a separate process: prints its manifest path, serves, stops on SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import SandboxTokens, httpx_client


def _start(state_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "azure_agent_mcp", "sandbox", "--port", "0", "--state-dir", str(state_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_cli_serves_until_sigint(tmp_path):
    state_dir = tmp_path / "sb"
    process = _start(state_dir, "--token-lifetime", "120")
    try:
        line = process.stdout.readline().strip()
        assert line == str(state_dir / "sandbox.json")
        manifest = json.loads(Path(line).read_text())
        assert manifest["pid"] == process.pid
        assert manifest["token_lifetime"] == 120
        assert oct(os.stat(line).st_mode & 0o777) == "0o600"
        token = SandboxTokens(manifest).user_token()
        response = httpx_client(manifest).get(manifest["arm_endpoint"] + "/subscriptions",
                                              params={"api-version": "2022-12-01"},
                                              headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and len(response.json()["value"]) == 2
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_cli_usage_errors_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "sandbox", "--token-lifetime", "5"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "60 to 86400" in result.stderr


def test_cli_port_in_use_is_a_runtime_error(tmp_path, sandbox):
    result = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "sandbox", "--port", str(sandbox.port),
                             "--state-dir", str(tmp_path / "busy")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{sandbox.port}" in result.stderr


def test_stop_removes_the_manifest_and_a_running_state_dir_is_refused(tmp_path):
    state_dir = tmp_path / "shared"
    process = _start(state_dir)
    try:
        manifest_path = Path(process.stdout.readline().strip())
        assert manifest_path.exists()
        second = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "sandbox", "--state-dir", str(state_dir)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "already running" in second.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert process.returncode == 0
    assert not manifest_path.exists() and not (state_dir / "leaf-key.pem").exists()
