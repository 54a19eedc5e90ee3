"""HTTP throughput: calls/s and p50/p99 of `resource_list` at 1, 8, 32 and 64 concurrent MCP clients,
against direct SDK calls to the same sandbox, in the same run, with the server's CPU per warm call.

The server is `serve --transport http --port 0` (loopback) over a sandbox subprocess.
The MCP clients are raw JSON-RPC over streamable HTTP (httpx, one asyncio process), each its own MCP
session and so its own agent session: ``--protocol legacy`` (default: initialize, Mcp-Session-Id,
event-stream answers, what most clients speak today) or ``modern`` (2026-07-28: one POST per call,
the agent session named by X-Agent-Session-Id). The baseline is the same listing made directly
(`ResourceManagementClient.resources.list(top=20)`, first page) with a sandbox user's token, one
client per thread, as many threads as MCP clients. Server CPU per warm call is the server process's
CPU time over the measured window divided by the calls in it (warm-up calls excluded).

    python bench/http_load.py [--clients 1,8,32,64] [--calls 1200] [--protocol legacy|modern] [--auth]

``--auth`` signs the clients in (a sandbox user's token for the scope the server's Protected
Resource Metadata names; every call is then checked and made on-behalf-of that user); without it
the server runs with ``--dangerously-allow-anonymous``.

Goal (issue 11) at 32 clients on a 2-core machine: >= 0.6x the direct rate, <= 1 ms server CPU per warm call.
Everything (clients, server, sandbox) shares the machine's cores: the figures are what this box gives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from harness import (  # noqa: E402
    RawClient,
    bench_env,
    cpu_seconds,
    start_sandbox,
    start_server,
    stop,
    user_token,
)

RATIO_GOAL = 0.6
CPU_GOAL_MS = 1.0
ARM_SCOPE = "https://management.azure.com/.default"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _mcp_level(url: str, clients: int, per_client: int, protocol: str, server_pid: int, bearer: str | None,
                     warmup: int = 5) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    ready = asyncio.Barrier(clients + 1)
    done = asyncio.Barrier(clients + 1)
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)

    async def one(index: int) -> None:
        async with httpx.AsyncClient(timeout=120, limits=limits, trust_env=False) as http:
            client = RawClient(http, url, protocol, session=f"load-{protocol}-{clients}-{index}" if protocol == "modern" else None,
                               bearer=bearer)
            try:
                await client.open()
                for _ in range(warmup):
                    await client.call("resource_list", {"top": 20})
            except BaseException:
                await ready.abort()
                await done.abort()
                raise
            await ready.wait()
            try:
                for _ in range(per_client):
                    started = time.perf_counter()
                    await client.call("resource_list", {"top": 20})
                    latencies.append(time.perf_counter() - started)
            finally:
                await done.wait()
                await client.close()

    tasks = [asyncio.create_task(one(i)) for i in range(clients)]
    await ready.wait()
    started, cpu = time.perf_counter(), cpu_seconds(server_pid)
    await done.wait()
    elapsed, cpu = time.perf_counter() - started, cpu_seconds(server_pid) - cpu
    await asyncio.gather(*tasks)
    calls = clients * per_client
    return {"rate": calls / elapsed, "p50": _pct(latencies, 0.5), "p99": _pct(latencies, 0.99),
            "cpu_ms": cpu / calls * 1000}


def _direct_level(manifest: dict[str, Any], token: str, clients: int, per_client: int, sandbox_pid: int) -> dict[str, float]:
    from azure.core.credentials import AccessToken
    from azure.mgmt.resource.resources import ResourceManagementClient

    class Static:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken(token, int(time.time()) + 3000)

    subscription = _subscription(manifest)
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    finished = threading.Barrier(clients + 1)

    def worker() -> None:
        client = ResourceManagementClient(Static(), subscription, base_url=manifest["arm_endpoint"],
                                          credential_scopes=[ARM_SCOPE], connection_verify=manifest["ca_bundle"])
        for _ in range(3):
            list(next(client.resources.list(top=20).by_page()))
        barrier.wait()
        own = []
        for _ in range(per_client):
            started = time.perf_counter()
            list(next(client.resources.list(top=20).by_page()))
            own.append(time.perf_counter() - started)
        with lock:
            latencies.extend(own)
        finished.wait()
        client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    finished.wait()
    elapsed = time.perf_counter() - started
    for thread in threads:
        thread.join()
    calls = clients * per_client
    return {"rate": calls / elapsed, "p50": _pct(latencies, 0.5), "p99": _pct(latencies, 0.99)}


def _subscription(manifest: dict[str, Any]) -> str:
    return manifest["subscriptions"][0]["id"]


def _bearer_for(url: str, manifest: dict[str, Any]) -> str:
    import httpx

    base = url.rsplit("/mcp", 1)[0]
    metadata = httpx.get(base + "/.well-known/oauth-protected-resource", timeout=10, trust_env=False)
    if metadata.status_code != 200:
        raise SystemExit("--auth: this server does not authenticate HTTP yet (no Protected Resource Metadata at "
                         f"{base}/.well-known/oauth-protected-resource: HTTP {metadata.status_code}); it comes with "
                         "branch auth. Run without --auth.")
    scopes = metadata.json().get("scopes_supported") or []
    if not scopes:
        raise SystemExit("--auth: the server's Protected Resource Metadata names no scope")
    return user_token(manifest, scopes[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32,64", help="comma-separated concurrency levels")
    parser.add_argument("--calls", type=int, default=1200, help="measured calls per level (split over its clients)")
    parser.add_argument("--protocol", choices=("legacy", "modern"), default="legacy")
    parser.add_argument("--auth", action="store_true", help="sign the clients in (needs a server with HTTP auth)")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra argument for serve (repeatable)")
    parser.add_argument("--audit-dir", type=Path, default=None,
                        help="where the server's audit log goes (default: the bench's temporary directory; "
                        "/dev/shm takes the disk's fsync latency out)")
    args = parser.parse_args()
    levels = [int(x) for x in args.clients.split(",") if x.strip()]

    workdir = Path(tempfile.mkdtemp(prefix="http-load-"))
    env = bench_env(workdir / "state")
    sandbox, manifest_path = start_sandbox(workdir, env)
    server = None
    rows: list[tuple[int, dict[str, float], dict[str, float]]] = []
    try:
        manifest = json.loads(manifest_path.read_text())
        audit_dir = Path(tempfile.mkdtemp(prefix="http-load-audit-", dir=args.audit_dir)) if args.audit_dir else workdir
        anonymous = [] if args.auth else ["--dangerously-allow-anonymous"]  # HTTP authenticates by default
        server, url = start_server(manifest_path, audit_dir / "audit.jsonl", env, *anonymous, *args.serve_arg)
        bearer = _bearer_for(url, manifest) if args.auth else None
        token = user_token(manifest, ARM_SCOPE)
        for clients in levels:
            per_client = max(args.calls // clients, 10)
            direct = _direct_level(manifest, token, clients, per_client, sandbox.pid)
            mcp = asyncio.run(_mcp_level(url, clients, per_client, args.protocol, server.pid, bearer))
            rows.append((clients, mcp, direct))
            print(f"  {clients:3d} client(s) done: {mcp['rate']:.0f} calls/s through MCP, {direct['rate']:.0f} direct",
                  file=sys.stderr, flush=True)
    finally:
        if server is not None:
            stop(server)
        stop(sandbox)
        shutil.rmtree(workdir, ignore_errors=True)
        if args.audit_dir:
            shutil.rmtree(audit_dir, ignore_errors=True)

    print(f"resource_list over streamable HTTP ({args.protocol} protocol, raw httpx JSON-RPC clients, "
          f"{'signed in' if args.auth else 'anonymous'}, audit log in {args.audit_dir or 'the temporary directory'}) vs direct ResourceManagementClient.resources.list, "
          f"same sandbox, same run; ~{args.calls} measured calls per level; clients, server and sandbox share "
          f"this machine's cores")
    print()
    print(f"{'clients':>7} {'MCP calls/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'server CPU ms/call':>19} "
          f"{'direct calls/s':>15} {'p50 ms':>8} {'p99 ms':>8} {'MCP / direct':>13}")
    for clients, mcp, direct in rows:
        print(f"{clients:7d} {mcp['rate']:12.0f} {mcp['p50']:8.2f} {mcp['p99']:8.2f} {mcp['cpu_ms']:19.3f} "
              f"{direct['rate']:15.0f} {direct['p50']:8.2f} {direct['p99']:8.2f} {mcp['rate'] / direct['rate']:12.2f}x")
    at = {clients: (mcp, direct) for clients, mcp, direct in rows}
    if 32 in at:
        mcp, direct = at[32]
        ratio = mcp["rate"] / direct["rate"]
        print()
        print(f"goal at 32 clients: >= {RATIO_GOAL}x the direct rate: {ratio:.2f}x "
              f"({'met' if ratio >= RATIO_GOAL else 'NOT met'}); <= {CPU_GOAL_MS} ms server CPU per warm call: "
              f"{mcp['cpu_ms']:.3f} ms ({'met' if mcp['cpu_ms'] <= CPU_GOAL_MS else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
