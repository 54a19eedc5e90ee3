"""Audit cost per tool call: the log on a real disk vs on tmpfs, sequential and concurrent, in one run.

One tool call writes what the server writes for it: a durable intent record (fsynced before the
request would be sent), then its outcome and the tool record, not durable (they ride on the next
fsync). The figure is wall time per call with nothing else running, i.e. the audit's whole cost,
amortised over all calls (for N threads: total wall time / total calls). tmpfs, measured in the
same run, is the baseline: fsync there costs nothing, so the ratio is what the disk adds.

Part two measures the same through the server: `serve --transport http --port 0` (loopback)
against a sandbox subprocess, twice, one with its log on the disk and one on tmpfs, and 8
concurrent MCP clients (streamable HTTP, one asyncio process) each calling ``resource_list`` a
fixed number of times against each server in turn (interleaved runs, the median shown). It prints
calls/s for each log location, the per-call wall time seen by each client, and the audit cost
estimate: the difference disk - tmpfs, per call per client and amortised (total wall / total
calls), with the ratios. tmpfs still runs the whole audit (serialisation, hashing, locks,
os.write); what the difference isolates is what the disk adds (the fsyncs). The audit's CPU cost
on either is part one's CPU column.

    python bench/audit.py [--calls 3000] [--threads 8] [--repeat 5] [--disk DIR] [--tmpfs DIR]
                          [--part store|server|both] [--server-clients 8] [--server-calls 150]
                          [--server-repeat 3]

Goal (issue 10): <= 0.15 ms of audit cost per call amortised at 8 concurrent clients, on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import start_sandbox, start_server  # noqa: E402

GOAL_MS = 0.15
SCOPE = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-bench/providers/Microsoft.Storage"


def _call(log, n: int, worker: int) -> None:
    correlation = f"{worker:04d}-{n:08d}-bench-correlation-id"
    intent = log.append({
        "kind": "intent", "session_id": "bench-session", "tool": "resource_list", "client": "bench",
        "correlation_id": correlation, "call_id": f"call-{worker}-{n}", "method": "GET", "plane": "arm",
        "path": f"{SCOPE}/storageAccounts/acct{n % 50}", "operation": "Microsoft.Storage/storageAccounts/read",
        "scope": f"{SCOPE}/storageAccounts/acct{n % 50}", "data_action": False, "effect": "allow",
        "decision": "allow", "rule": "Actions: */read", "policy": "read-only",
        "principal": {"oid": "11111111-2222-3333-4444-555555555555", "appid": "bench-app", "tid": "bench-tenant"},
    })
    log.append({"kind": "outcome", "intent_seq": intent["seq"], "correlation_id": correlation, "status": 200,
                "duration_ms": 12.5}, durable=False)
    log.append({"kind": "tool", "tool": "resource_list", "session_id": "bench-session", "status": "ok",
                "decision": "allow", "arguments": {"subscription": "00000000-0000-0000-0000-000000000000"},
                "duration_ms": 13.1}, durable=False)


def _run(directory: Path, calls: int, threads: int) -> tuple[float, float, float]:
    """(wall ms per call, CPU ms per call, fsyncs per call) for ``calls`` calls over ``threads`` threads."""
    from azure_agent_mcp.policy import AuditLog

    work = Path(tempfile.mkdtemp(prefix="audit-bench-", dir=directory))
    try:
        log = AuditLog(work / "audit.jsonl", key_path=work / "key.pem")
        log.check_writable()
        for n in range(20):  # warm up: imports, first checkpoint, page cache
            _call(log, n, 999)
        before = log.fsyncs
        per_thread = calls // threads
        barrier = threading.Barrier(threads + 1)

        def worker(index: int) -> None:
            barrier.wait()
            for n in range(per_thread):
                _call(log, n, index)

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        barrier.wait()
        started, cpu = time.perf_counter(), time.process_time()
        for thread in pool:
            thread.join()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        fsyncs = log.fsyncs - before
        log.close()
        done = per_thread * threads
        return elapsed / done * 1000, cpu / done * 1000, fsyncs / done
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fs(path: Path) -> str:
    try:
        with open("/proc/mounts", encoding="utf-8") as handle:
            best = ("", "?")
            for line in handle:
                device, mount, kind = line.split()[:3]
                if str(path).startswith(mount) and len(mount) > len(best[0]):
                    best = (mount, kind)
            return best[1]
    except OSError:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5, help="runs per cell; the median is shown")
    parser.add_argument("--disk", type=Path, default=Path(__file__).resolve().parents[1],
                        help="a directory on a real disk (default: the repository)")
    parser.add_argument("--tmpfs", type=Path, default=Path("/dev/shm"), help="a directory on tmpfs (default /dev/shm)")
    parser.add_argument("--part", choices=("store", "server", "both"), default="both")
    parser.add_argument("--server-clients", type=int, default=8, help="concurrent MCP clients (part two)")
    parser.add_argument("--server-calls", type=int, default=150, help="resource_list calls per client per run")
    parser.add_argument("--server-repeat", type=int, default=3, help="runs per log location; the median is shown")
    args = parser.parse_args()
    if not args.tmpfs.is_dir():
        print(f"no tmpfs directory at {args.tmpfs}: pass --tmpfs", file=sys.stderr)
        return 2
    if args.part in ("store", "both"):
        _store_part(args)
    if args.part in ("server", "both"):
        if args.part == "both":
            print()
        _server_part(args)
    return 0


def _store_part(args: argparse.Namespace) -> None:
    state = tempfile.mkdtemp(prefix="audit-bench-state-")
    os.environ["AZURE_AGENT_MCP_STATE_DIR"] = state
    locations = [("disk", args.disk), ("tmpfs", args.tmpfs)]
    modes = [("sequential", 1), (f"{args.threads} threads", args.threads)]
    cells = [(name, directory, mode, threads) for mode, threads in modes for name, directory in locations]
    runs: dict[tuple[str, str], list[tuple[float, float, float]]] = {(n, m): [] for n, _, m, _ in cells}
    try:
        for _ in range(args.repeat):  # interleaved, so a noisy neighbour hits every cell alike
            for name, directory, mode, threads in cells:
                runs[(name, mode)].append(_run(directory, args.calls, threads))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    results = {key: tuple(statistics.median(r[i] for r in values) for i in range(3)) for key, values in runs.items()}

    print(f"audit cost per tool call: durable intent + outcome + tool record, {args.calls} calls, "
          f"median of {args.repeat}")
    for name, directory in locations:
        print(f"  {name:5} = {directory} ({_fs(directory)})")
    print()
    print(f"{'log on':8} {'clients':12} {'ms/call':>8} {'CPU ms/call':>12} {'calls/s':>9} {'fsyncs/call':>12} "
          f"{'vs tmpfs':>9}")
    for mode, _ in modes:
        base = results[("tmpfs", mode)][0]
        for name, _ in locations:
            ms, cpu, fsyncs = results[(name, mode)]
            print(f"{name:8} {mode:12} {ms:8.3f} {cpu:12.3f} {1000 / ms:9.0f} {fsyncs:12.2f} {ms / base:8.2f}x")
    wall, cpu, _ = results[("disk", modes[1][0])]
    print()
    print(f"goal: <= {GOAL_MS} ms of audit cost per call amortised at {args.threads} concurrent clients, log on disk:")
    print(f"  wall clock {wall:.3f} ms ({'met' if wall <= GOAL_MS else 'NOT met'}): the calls here do nothing but audit")
    print(f"  CPU        {cpu:.3f} ms ({'met' if cpu <= GOAL_MS else 'NOT met'}): what the audit takes from a server "
          "whose calls also wait on Azure")


# -- part two: through the server ------------------------------------------------------------------


_start_sandbox = start_sandbox  # bench/harness.py: what the HTTP benches share


def _start_server(manifest: Path, audit: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    return start_server(manifest, audit, env, "--dangerously-allow-anonymous")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


async def _clients_run(url: str, clients: int, calls: int, pid: int,
                       warmup: int = 5) -> tuple[float, list[float], float | None]:
    """(wall seconds for all clients' ``calls`` calls, each client's own seconds, the server's CPU seconds)."""
    import httpx
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    ready = asyncio.Barrier(clients + 1)
    done = asyncio.Barrier(clients + 1)
    elapsed = [0.0] * clients
    finished = [0.0] * clients

    async def one(index: int) -> None:
        try:
            await _one(index)
        except BaseException:
            await ready.abort()  # never leave the others waiting at a barrier
            await done.abort()
            raise

    async def _one(index: int) -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
                for _ in range(warmup):  # session, token, connection pool
                    await client.call_tool("resource_list", {"top": 20})
                await ready.wait()
                started = time.perf_counter()
                for _ in range(calls):
                    result = await client.call_tool("resource_list", {"top": 20})
                    if result.is_error:
                        raise RuntimeError(f"resource_list failed: {result.content}")
                finished[index] = time.perf_counter()
                elapsed[index] = finished[index] - started
                await done.wait()  # stay connected until every client is done: closing is not measured

    tasks = [asyncio.create_task(one(i)) for i in range(clients)]
    await ready.wait()
    started, cpu = time.perf_counter(), _cpu_seconds(pid)
    await done.wait()
    after = _cpu_seconds(pid)
    await asyncio.gather(*tasks)
    return max(finished) - started, elapsed, (after - cpu) if after is not None and cpu is not None else None


def _server_part(args: argparse.Namespace) -> None:
    clients, calls = args.server_clients, args.server_calls
    workdir = Path(tempfile.mkdtemp(prefix="audit-bench-server-"))
    logs = {name: Path(tempfile.mkdtemp(prefix="audit-bench-serve-", dir=directory))
            for name, directory in (("disk", args.disk), ("tmpfs", args.tmpfs))}
    env = dict(os.environ, AZURE_AGENT_MCP_STATE_DIR=str(workdir / "state"))
    for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1] / "src"),
                                                      env.get("PYTHONPATH")]))
    sandbox, manifest = _start_sandbox(workdir, env)
    servers: dict[str, tuple[subprocess.Popen[str], str]] = {}
    runs: dict[str, list[tuple[float, list[float], float | None]]] = {name: [] for name in logs}
    try:
        for name, directory in logs.items():
            servers[name] = _start_server(manifest, directory / "audit.jsonl", env)
        for _ in range(args.server_repeat):  # interleaved: a noisy neighbour hits both alike
            for name in logs:
                proc, url = servers[name]
                runs[name].append(asyncio.run(_clients_run(url, clients, calls, proc.pid)))
    finally:
        for proc, _ in servers.values():
            _stop(proc)
        _stop(sandbox)
        for directory in (*logs.values(), workdir):
            shutil.rmtree(directory, ignore_errors=True)

    total = clients * calls
    # calls/s, ms per call per client, amortised ms per call, (min, max) of the amortised, server CPU ms per call
    figures: dict[str, tuple[float, float, float, tuple[float, float], float | None]] = {}
    for name, values in runs.items():
        wall = statistics.median(v[0] for v in values)
        per_client = statistics.median(statistics.mean(e / calls for e in v[1]) for v in values)
        spread = (min(v[0] for v in values) / total * 1000, max(v[0] for v in values) / total * 1000)
        cpus = [v[2] for v in values if v[2] is not None]
        cpu = statistics.median(cpus) / total * 1000 if cpus else None
        figures[name] = (total / wall, per_client * 1000, wall / total * 1000, spread, cpu)

    print(f"through the server: {clients} concurrent HTTP MCP clients x {calls} resource_list calls each "
          f"({total} calls per run), serve --transport http on loopback, median of {args.server_repeat} "
          f"interleaved runs, {os.cpu_count()} CPU(s) for clients, server and sandbox together")
    for name in logs:
        print(f"  {name:5} = {logs[name].parent} ({_fs(logs[name].parent)})")
    print()
    print(f"{'log on':8} {'calls/s':>9} {'ms/call/client':>15} {'amortised ms/call':>18} {'(min..max)':>16} "
          f"{'server CPU ms/call':>19} {'vs tmpfs':>9}")
    base = figures["tmpfs"]
    for name in logs:
        rate, per_client, amortised, (low, high), cpu = figures[name]
        shown_cpu = f"{cpu:19.3f}" if cpu is not None else f"{'n/a':>19}"
        print(f"{name:8} {rate:9.0f} {per_client:15.3f} {amortised:18.3f} {f'{low:.3f}..{high:.3f}':>16} {shown_cpu} "
              f"{per_client / base[1]:8.2f}x")
    disk, tmpfs = figures["disk"], figures["tmpfs"]
    latency_cost, amortised_cost = disk[1] - tmpfs[1], disk[2] - tmpfs[2]
    print()
    print("audit cost estimate through the server (disk - tmpfs: what the log's fsyncs add):")
    print(f"  per call, per client (latency)     {latency_cost:+.3f} ms ({latency_cost / tmpfs[1] * 100:+.1f}% of "
          f"{tmpfs[1]:.3f} ms)")
    noise = max(disk[3][1] - disk[3][0], tmpfs[3][1] - tmpfs[3][0])
    verdict = "met" if amortised_cost <= GOAL_MS else "NOT met"
    if abs(amortised_cost) < noise:
        verdict += f", within the run-to-run spread of {noise:.3f} ms"
    print(f"  per call, amortised (1 / calls/s)  {amortised_cost:+.3f} ms "
          f"({verdict}; goal <= {GOAL_MS} ms at {clients} clients)")
    print(f"  throughput disk / tmpfs            {disk[0] / tmpfs[0]:.3f}x")
    if disk[4] is not None and tmpfs[4] is not None:
        print(f"  server CPU per call, disk - tmpfs  {disk[4] - tmpfs[4]:+.3f} ms "
              f"(of {tmpfs[4]:.3f} ms: the whole call, MCP and HTTP included)")


if __name__ == "__main__":
    raise SystemExit(main())
