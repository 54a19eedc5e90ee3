"""Server figures: cold start to `initialize` over stdio, tools/list size, per-call overhead.

tools/list size is the bytes of the JSON result as sent (compact), under the default read-only
profile and under `--policy unrestricted`, where every tool is listed; the budget is 12 KiB. With
`--devops-organization` too (the 14 devops_* tools join the list) the goal is 16 KiB.

Baselines measured in the same run: a bare MCPServer with one trivial tool (the floor: importing the
SDK alone costs most of a start), Microsoft's Azure MCP Server when `npm install @azure/mcp` works,
and the same resource list made directly with azure-mgmt-resource against the same sandbox.
Telemetry: the same start and calls with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (a loopback sink that
answers every OTLP/HTTP export 200), against the server without it.

    python bench/server.py [--starts 5] [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BARE_SERVER = """
from mcp.server.mcpserver import MCPServer
server = MCPServer("bare")

@server.tool()
def ping() -> str:
    return "pong"

server.run()
"""

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
}
LIST_TOOLS = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


def _exchange(command: list[str], env: dict[str, str], timeout: float = 60) -> tuple[float, int]:
    """Seconds from spawn to the initialize answer, and the bytes of the tools/list answer."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        proc.stdin.write((json.dumps(INITIALIZE) + "\n").encode())
        proc.stdin.flush()
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{command[0]} exited before answering initialize")
            if json.loads(line).get("id") == 1:
                break
        elapsed = time.perf_counter() - started
        proc.stdin.write((json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n").encode())
        proc.stdin.write((json.dumps(LIST_TOOLS) + "\n").encode())
        proc.stdin.flush()
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("no tools/list answer")
            message = json.loads(line)
            if message.get("id") == 2:
                return elapsed, len(json.dumps(message.get("result", {}).get("tools", [])))
    finally:
        proc.kill()
        proc.wait(timeout=timeout)


@contextlib.contextmanager
def _otlp_sink():
    """A loopback OTLP/HTTP endpoint that accepts and drops every export; yields its base URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


TOOLS_LIST_BUDGET = 12 * 1024
DEVOPS_TOOLS_LIST_BUDGET = 16 * 1024  # the goal with --devops-organization (tests hold it under 17.5 KiB)


def _tools_list(command: list[str], env: dict[str, str]) -> tuple[int, int, list[tuple[str, int]]]:
    """Bytes of the tools/list result as sent (compact JSON), the tool count, and each tool's bytes."""
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        for message in (INITIALIZE, {"jsonrpc": "2.0", "method": "notifications/initialized"}, LIST_TOOLS):
            proc.stdin.write((json.dumps(message) + "\n").encode())
        proc.stdin.flush()
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("no tools/list answer")
            answer = json.loads(line)
            if answer.get("id") == 2:
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    result = answer["result"]
    size = len(json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode())
    each = [(tool["name"], len(json.dumps(tool, separators=(",", ":"), ensure_ascii=False).encode()))
            for tool in result["tools"]]
    return size, len(each), each


def _median_start(command: list[str], env: dict[str, str], starts: int) -> tuple[float, int]:
    _exchange(command, env)  # warm the OS file cache once
    times, size = [], 0
    for _ in range(starts):
        elapsed, size = _exchange(command, env)
        times.append(elapsed)
    return statistics.median(times), size


def _azure_mcp(workdir: Path) -> list[str] | None:
    if shutil.which("npm") is None:
        return None
    target = workdir / "azmcp"
    target.mkdir()
    install = subprocess.run(
        ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(target), "@azure/mcp"],
        capture_output=True, text=True, timeout=600,
    )
    binary = target / "node_modules" / ".bin" / "azmcp"
    if install.returncode != 0 or not binary.exists():
        print(f"  (Azure MCP Server not measured: npm install @azure/mcp failed: {install.stderr.strip()[:200]})")
        return None
    return [str(binary), "server", "start"]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _through_server(manifest: Path, audit: Path, env: dict[str, str], calls: int) -> list[float]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "azure_agent_mcp", "serve", "--sandbox", str(manifest), "--audit-log", str(audit)],
        env=env,
    )
    samples = []
    async with Client(params) as client:
        await client.call_tool("resource_list", {"top": 20})
        for _ in range(calls):
            started = time.perf_counter()
            result = await client.call_tool("resource_list", {"top": 20})
            samples.append(time.perf_counter() - started)
            assert not result.is_error
    return samples


def _direct(manifest: Path, calls: int) -> list[float]:
    from azure.mgmt.resource.resources import ResourceManagementClient

    from azure_agent_mcp.environment import from_manifest
    from azure_agent_mcp.identity import build_credential, resolve_session

    env = from_manifest(manifest)
    credential = build_credential("sandbox", env, resolve_session(session_id="bench-direct", environ={}))
    client = ResourceManagementClient(
        credential, env.default_subscription, base_url=env.arm_endpoint,
        credential_scopes=[env.arm_scope], connection_verify=env.connection_verify,
    )
    next(client.resources.list(top=20).by_page())
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        list(next(client.resources.list(top=20).by_page()))
        samples.append(time.perf_counter() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--skip-azure-mcp", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        workdir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["AZURE_AGENT_MCP_STATE_DIR"] = str(workdir / "state")
        sink = contextlib.ExitStack()
        otel_env = dict(env, OTEL_EXPORTER_OTLP_ENDPOINT=sink.enter_context(_otlp_sink()))
        sandbox = subprocess.Popen(
            [sys.executable, "-m", "azure_agent_mcp", "sandbox", "--port", "0", "--state-dir", str(workdir / "sandbox")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        try:
            manifest = Path(sandbox.stdout.readline().strip())
            bare_script = workdir / "bare_server.py"
            bare_script.write_text(BARE_SERVER)

            print("cold start to `initialize` answered over stdio (median of", args.starts, "starts)")
            floor, bare_size = _median_start([sys.executable, str(bare_script)], env, args.starts)
            ours, ours_size = _median_start(
                [sys.executable, "-m", "azure_agent_mcp", "serve", "--sandbox", str(manifest),
                 "--audit-log", str(workdir / "audit.jsonl")],
                env, args.starts,
            )
            print(f"  bare MCPServer (floor)      {floor * 1000:8.1f} ms   tools/list {bare_size:6d} B")
            print(f"  azure-agent-mcp serve       {ours * 1000:8.1f} ms   tools/list {ours_size:6d} B   "
                  f"{ours / floor:.2f}x floor (goal <= 1.2x)")
            traced, _ = _median_start(
                [sys.executable, "-m", "azure_agent_mcp", "serve", "--sandbox", str(manifest),
                 "--audit-log", str(workdir / "audit-traced.jsonl")],
                otel_env, args.starts,
            )
            print(f"  ... with OTLP export on     {traced * 1000:8.1f} ms   {traced / ours:.2f}x without "
                  f"(+{(traced - ours) * 1000:.1f} ms: the OpenTelemetry SDK and exporters, imported only then)")
            serve = [sys.executable, "-m", "azure_agent_mcp", "serve", "--sandbox", str(manifest),
                     "--audit-log", str(workdir / "audit.jsonl")]
            print("\ntools/list result, bytes as sent (compact JSON)")
            devops = ["--policy", "unrestricted", "--devops-organization", json.loads(manifest.read_text())["devops_organization"]]
            for label, extra, budget in (("read-only (default)", [], TOOLS_LIST_BUDGET),
                                         ("unrestricted (every tool)", ["--policy", "unrestricted"], TOOLS_LIST_BUDGET),
                                         ("unrestricted + devops org", devops, DEVOPS_TOOLS_LIST_BUDGET)):
                size, count, each = _tools_list(serve + extra, env)
                print(f"  {label:26s} {size:6d} B  {count:2d} tools  {size / count:6.0f} B/tool  "
                      f"{size / budget:.2f}x the {budget // 1024} KiB budget ({budget - size:+d} B)")
                largest = sorted(each, key=lambda item: -item[1])[:5]
                print("    largest tools: " + ", ".join(f"{name} {n} B" for name, n in largest))
            own = sum(n for name, n in each if name.startswith("devops_"))
            print(f"  the devops_* tools alone   {own:6d} B")
            azmcp = None if args.skip_azure_mcp else _azure_mcp(workdir)
            if azmcp:
                try:
                    theirs, their_size = _median_start(azmcp, env, args.starts)
                    print(f"  Azure MCP Server (azmcp)    {theirs * 1000:8.1f} ms   tools/list {their_size:6d} B")
                    print(f"  ours / Azure MCP start      {ours / theirs:.2f}x (goal <= 0.55x); "
                          f"list size {ours_size / their_size:.3f}x")
                except Exception as exc:  # a third-party binary that cannot start here
                    print(f"  (Azure MCP Server did not start here: {exc})")

            print(f"\nresource_list (20 items), {args.calls} calls")
            direct = _direct(manifest, args.calls)
            served = asyncio.run(_through_server(manifest, workdir / "audit.jsonl", env, args.calls))
            d50, d99 = _percentiles(direct)
            s50, s99 = _percentiles(served)
            traced_calls = asyncio.run(_through_server(manifest, workdir / "audit-traced.jsonl", otel_env, args.calls))
            t50, t99 = _percentiles(traced_calls)
            print(f"  direct azure-mgmt-resource  p50 {d50 * 1000:7.2f} ms   p99 {d99 * 1000:7.2f} ms")
            print(f"  through the MCP server      p50 {s50 * 1000:7.2f} ms   p99 {s99 * 1000:7.2f} ms")
            print(f"  server overhead             p50 {(s50 - d50) * 1000:+7.2f} ms (goal <= 2 ms)   "
                  f"ratio {s50 / d50:.2f}x")
            print(f"  ... with OTLP export on     p50 {t50 * 1000:7.2f} ms   p99 {t99 * 1000:7.2f} ms   "
                  f"{t50 / s50:.2f}x without (spans and audit log records)")
        finally:
            sink.close()
            sandbox.terminate()
            sandbox.wait(timeout=20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
