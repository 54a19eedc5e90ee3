"""The official MCP conformance suite against `serve --transport http` in anonymous loopback mode.

CI installs the suite (pinned) with Node 22 and points ``MCP_CONFORMANCE`` at its entry point and
``MCP_CONFORMANCE_NODE`` at that Node; without them (a developer machine) the test is skipped,
but never under CI, where a missing suite is a failure. The scenarios that cannot apply to this
server are listed, with the reason, in conformance/baseline.yml; the suite itself fails on any
other failure and on a listed scenario that starts to pass.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from serve_helpers import HttpServe

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "conformance" / "baseline.yml"
APPLICABLE = {  # scenarios that exercise this server's own behaviour: each must pass
    "server-initialize", "ping", "tools-list", "tools-call-simple-text", "tools-call-error",
    "server-sse-multiple-streams", "resources-list", "prompts-list", "dns-rebinding-protection",
}


def _suite() -> tuple[str, str]:
    entry = os.environ.get("MCP_CONFORMANCE")
    node = os.environ.get("MCP_CONFORMANCE_NODE", "node")
    if not entry:
        if os.environ.get("CI"):
            pytest.fail("CI must run the MCP conformance suite: MCP_CONFORMANCE is not set (see .ci/run)")
        pytest.skip("the MCP conformance suite is not installed (set MCP_CONFORMANCE; .ci/run does)")
    return node, entry


def test_conformance_suite_passes_every_applicable_scenario(sandbox, tmp_path):
    node, entry = _suite()
    server = HttpServe(sandbox, tmp_path / "audit.jsonl", tmp_path / "state", *ANONYMOUS)
    try:
        results = tmp_path / "results"
        run = subprocess.run(
            [node, entry, "server", "--url", server.url, "--expected-failures", str(BASELINE), "-o", str(results)],
            capture_output=True, text=True, timeout=240, cwd=tmp_path,
        )
        outcome = _outcomes(results)
        assert run.returncode == 0, f"conformance regressions (exit {run.returncode}):\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
        missing = APPLICABLE - set(outcome)
        assert not missing, f"the suite no longer runs these scenarios: {sorted(missing)}"
        failed = {name for name in APPLICABLE if outcome[name] != "passed"}
        assert not failed, f"applicable scenarios did not pass: {sorted(failed)}"
        assert server.proc.poll() is None, "the server stopped during the suite"
    finally:
        server.kill()


def _outcomes(results: Path) -> dict[str, str]:
    """scenario -> passed | failed, from the suite's checks.json files."""
    outcome: dict[str, str] = {}
    for checks in results.glob("server-*/checks.json"):
        match = re.fullmatch(r"server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z", checks.parent.name)
        if match is None:
            continue
        name = match.group(1)
        entries = json.loads(checks.read_text())
        ok = all(e.get("status") in ("SUCCESS", "INFO", "SKIPPED") for e in entries) and bool(entries)
        outcome[name] = "passed" if ok else "failed"
    return outcome


ANONYMOUS: tuple[str, ...] = ()  # HttpServe already serves with --dangerously-allow-anonymous (the suite has no Entra)
