"""log_query figures: p50/p99 of one KQL query through `serve` over stdio against the same query made
directly with azure-monitor-query's LogsQueryClient, both against one sandbox, in the same run.

The ratio is what the server adds (MCP, the guard's decision and write-ahead audit record, the
result's conversion and cap); the sandbox's own evaluation is in both.

    python bench/logs.py [--calls 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUERY = "AppRequests | where ResultCode == '500' | summarize failures = count() by Name, AppRoleName"


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _through_server(manifest: Path, audit: Path, env: dict[str, str], workspace: str, calls: int) -> list[float]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "azure_agent_mcp", "serve", "--sandbox", str(manifest), "--audit-log", str(audit)],
        env=env,
    )
    arguments = {"workspace": workspace, "query": QUERY, "timespan": "PT1H"}
    samples = []
    async with Client(params) as client:
        await client.call_tool("log_query", arguments)
        for _ in range(calls):
            started = time.perf_counter()
            result = await client.call_tool("log_query", arguments)
            samples.append(time.perf_counter() - started)
            assert not result.is_error, result.content
    return samples


def _direct(manifest: Path, workspace: str, calls: int) -> list[float]:
    import datetime

    from azure.monitor.query import LogsQueryClient

    from azure_agent_mcp.environment import from_manifest
    from azure_agent_mcp.identity import build_credential, resolve_session

    env = from_manifest(manifest)
    credential = build_credential("sandbox", env, resolve_session(session_id="bench-direct", environ={}))
    client = LogsQueryClient(credential, endpoint=env.logs_endpoint, credential_scopes=[env.logs_scope],
                             connection_verify=env.connection_verify)
    span = datetime.timedelta(hours=1)
    client.query_resource(workspace, QUERY, timespan=span)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        client.query_resource(workspace, QUERY, timespan=span)
        samples.append(time.perf_counter() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        workdir = Path(tmp)
        env = dict(os.environ, AZURE_AGENT_MCP_STATE_DIR=str(workdir / "state"))
        sandbox = subprocess.Popen(
            [sys.executable, "-m", "azure_agent_mcp", "sandbox", "--port", "0", "--state-dir", str(workdir / "sandbox")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        try:
            manifest = Path(sandbox.stdout.readline().strip())
            data = json.loads(manifest.read_text())
            workspace = next(w["id"] for w in data["workspaces"] if w["name"] == "log-sandbox-prod")
            direct = _direct(manifest, workspace, args.calls)
            served = asyncio.run(_through_server(manifest, workdir / "audit.jsonl", env, workspace, args.calls))
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
    d50, d99 = _percentiles(direct)
    s50, s99 = _percentiles(served)
    print(f"log_query, {args.calls} calls each ({QUERY!r}, PT1H)")
    print(f"  direct LogsQueryClient      p50 {d50 * 1000:7.2f} ms   p99 {d99 * 1000:7.2f} ms")
    print(f"  through serve (stdio, MCP)  p50 {s50 * 1000:7.2f} ms   p99 {s99 * 1000:7.2f} ms")
    print(f"  ratio through/direct        p50 {s50 / d50:7.2f}x     p99 {s99 / d99:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
