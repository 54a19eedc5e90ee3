"""`azure-agent-mcp demo` against the session sandbox: every step behaves as it says."""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_demo_passes_and_azure_recorded_the_refused_action(sandbox, tmp_path):
    env = dict(os.environ)
    env["AZURE_AGENT_MCP_STATE_DIR"] = str(tmp_path / "state")
    done = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "demo", "--sandbox", str(sandbox.manifest_path)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "activity_log_list: Azure's activity log recorded the refused action" in done.stdout
    refused = [e for e in sandbox.state.activity.events()
               if e["operationName"]["value"] == "Microsoft.Storage/storageAccounts/listKeys/action"
               and e["claims"].get("xms_cli_sid", "").startswith("demo-")]
    assert refused and refused[-1]["status"]["value"] == "Failed"
    assert refused[-1]["correlationId"] in done.stdout
