"""`azure-agent-mcp demo` against the session sandbox: every step behaves as it says."""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_demo_passes_and_azure_recorded_the_refused_action(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state  # the elevation story moves the sandbox clock and activates a PIM role
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
    # the elevation story: approved, used, refused after the clock passed the grant's end, audited
    assert "the restart goes through: allowed by the grant locally, by the PIM activation in Azure" in done.stdout
    assert "straight at the sandbox with the reader's token: HTTP 403 AuthorizationFailed" in done.stdout
    assert "requested -> approved -> expired" in done.stdout
    restarts = [e for e in sandbox.requests("arm") if e["method"] == "POST" and e["path"].endswith("/app-orders-prod/restart")]
    assert [e["status"] for e in restarts] == [200, 403]  # the server's one restart, then the reader's own direct try
    assert any(r["properties"]["requestType"] == "SelfActivate" and r["properties"]["status"] == "Provisioned"
               for r in sandbox.pim()["requests"])
