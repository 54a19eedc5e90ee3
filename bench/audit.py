"""Audit cost per tool call: the log on a real disk vs on tmpfs, sequential and concurrent, in one run.

One tool call writes what the server writes for it: a durable intent record (fsynced before the
request would be sent), then its outcome and the tool record, not durable (they ride on the next
fsync). The figure is wall time per call with nothing else running, i.e. the audit's whole cost,
amortised over all calls (for N threads: total wall time / total calls). tmpfs, measured in the
same run, is the baseline: fsync there costs nothing, so the ratio is what the disk adds.

    python bench/audit.py [--calls 3000] [--threads 8] [--repeat 5] [--disk DIR] [--tmpfs DIR]

Goal (issue 10): <= 0.15 ms of audit cost per call amortised at 8 concurrent clients, on disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

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
    args = parser.parse_args()
    if not args.tmpfs.is_dir():
        print(f"no tmpfs directory at {args.tmpfs}: pass --tmpfs", file=sys.stderr)
        return 2
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
