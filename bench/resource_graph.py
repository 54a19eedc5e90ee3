"""resource_graph_query p50 through the MCP server (stdio) against the direct SDK, same sandbox, same run.

Both sides ask the same Resource Graph question (the TLS one, over both seeded subscriptions) with
azure-mgmt-resourcegraph; the server adds the MCP round trip, the plan check, the guard's decision
at both subscriptions the body names, and the audit's intent and outcome records.

    python bench/resource_graph.py [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUERY = ("Resources | where type =~ 'microsoft.storage/storageaccounts' "
         "| where properties.minimumTlsVersion != 'TLS1_2' | project name, tls = tostring(properties.minimumTlsVersion)")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _direct(manifest: Path, subscriptions: list[str], calls: int) -> list[float]:
    from azure.mgmt.resourcegraph import ResourceGraphClient
    from azure.mgmt.resourcegraph.models import QueryRequest

    from azure_agent_mcp.environment import from_manifest
    from azure_agent_mcp.identity import build_credential, resolve_session

    env = from_manifest(manifest)
    credential = build_credential("sandbox", env, resolve_session(session_id="bench-direct", environ={}))
    client = ResourceGraphClient(credential, base_url=env.arm_endpoint, credential_scopes=[env.arm_scope],
                                 connection_verify=env.connection_verify)
    request = QueryRequest(query=QUERY, subscriptions=subscriptions)
    assert len(client.resources(request).data) == 2
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        client.resources(request)
        samples.append(time.perf_counter() - started)
    return samples


async def _through_server(manifest: Path, audit: Path, env: dict[str, str], subscriptions: list[str],
                          calls: int) -> list[float]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "azure_agent_mcp", "serve", "--sandbox", str(manifest), "--audit-log", str(audit)],
        env=env,
    )
    arguments = {"query": QUERY, "subscriptions": subscriptions}
    samples = []
    async with Client(params) as client:
        first = await client.call_tool("resource_graph_query", arguments)
        assert not first.is_error and len(first.structured_content["items"]) == 2, first.content
        for _ in range(calls):
            started = time.perf_counter()
            result = await client.call_tool("resource_graph_query", arguments)
            samples.append(time.perf_counter() - started)
            assert not result.is_error
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rg-") as tmp:
        workdir = Path(tmp)
        env = dict(os.environ, AZURE_AGENT_MCP_STATE_DIR=str(workdir / "state"))
        for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG"):
            env.pop(key, None)
        sandbox = subprocess.Popen(
            [sys.executable, "-m", "azure_agent_mcp", "sandbox", "--port", "0", "--state-dir", str(workdir / "sandbox")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        try:
            import json

            manifest = Path(sandbox.stdout.readline().strip())
            subscriptions = [s["id"] for s in json.loads(manifest.read_text())["subscriptions"]]
            print(f"resource_graph_query (the TLS question over {len(subscriptions)} subscriptions), {args.calls} calls")
            direct = _direct(manifest, subscriptions, args.calls)
            served = asyncio.run(_through_server(manifest, workdir / "audit.jsonl", env, subscriptions, args.calls))
            d50, d99 = _percentiles(direct)
            s50, s99 = _percentiles(served)
            print(f"  direct azure-mgmt-resourcegraph  p50 {d50 * 1000:7.2f} ms   p99 {d99 * 1000:7.2f} ms")
            print(f"  through the MCP server (stdio)   p50 {s50 * 1000:7.2f} ms   p99 {s99 * 1000:7.2f} ms")
            print(f"  server overhead                  p50 {(s50 - d50) * 1000:+7.2f} ms   ratio {s50 / d50:.2f}x")
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
