"""`azure-agent-mcp demo devops` against the session sandbox: the design's scenario, each step as it says,
and Azure DevOps' own state naming the agent user as creator, author and replier."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_demo_devops_passes_and_azure_devops_records_the_agent_user(sandbox, tmp_path):
    env = dict(os.environ, AZURE_AGENT_MCP_STATE_DIR=str(tmp_path / "state"))
    since = sandbox.last_seq()
    done = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "demo", "devops", "--sandbox",
                           str(sandbox.manifest_path)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo: all 9 steps behaved as described" in done.stdout
    agent = sandbox.manifest["agent_identity"]["agent_user_upn"].lower()
    developer = next(u for u in sandbox.manifest["users"] if u["name"] == "developer")["upn"].lower()
    number = int(re.search(r"pull request (\d+) refs/heads/fix/login-timeout-", done.stdout).group(1))
    state = sandbox.devops_state()
    repo = next(r for p in state["projects"] if p["name"] == "Storefront" for r in p["repositories"]
                if r["name"] == "storefront-web")
    pr = next(p for p in repo["pull_requests"] if p["id"] == number)
    assert pr["created_by"].lower() == agent and [r["upn"].lower() for r in pr["reviewers"]] == [developer]
    item = next(w for w in state["work_items"] if w["id"] == pr["work_items"][0])
    assert item["fields"]["System.Title"] == "Fix login timeout" and item["fields"]["System.CreatedBy"].lower() == agent
    source = pr["source"] if pr["source"].startswith("refs/heads/") else f"refs/heads/{pr['source']}"
    fixed, main = repo["files"][source], repo["files"]["refs/heads/main"]
    # the fix changed session.py (the files map paths to git blob ids); one commit on top of main, by the agent user
    assert fixed["/src/auth/session.py"] != main["/src/auth/session.py"] and set(fixed) == set(main)
    tip = repo["commits"][repo["refs"][source]]
    assert tip["author"].lower() == agent and len(tip["parents"]) == 1
    [thread] = pr["threads"]
    assert [c["author"].lower() for c in thread["comments"]] == [developer, agent]
    # the read-only server sent nothing: every Azure DevOps request of the run was the agent user's or the reviewer's
    received = sandbox.requests(kind="devops", since=since)
    assert {r["token_claims"].get("upn", "").lower() for r in received} == {agent, developer}
    assert [r for r in received if r["token_claims"].get("upn", "").lower() == developer
            and r["method"] != "POST"] == []  # the developer's one comment, and only that
