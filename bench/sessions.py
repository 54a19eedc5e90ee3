"""Sessions at scale: the server's RSS, open files and sockets after 100 agent sessions, after 10,000,
and after they idle out, in one run, with ratios to the 100-session figures.

Every session really works: one `group_list` call (a tagged token from the sandbox's Entra, an ARM
request) through `serve --transport http` (anonymous, loopback), each with its own
X-Agent-Session-Id on the 2026-07-28 protocol (one POST per call; raw httpx JSON-RPC from one
asyncio process, ``--concurrency`` at a time). The server runs with a short ``--session-idle``
(default 3s) so the idle-out happens within the run, and its ``--max-sessions`` cap (default 1000,
the server's default): past the cap the least recently used sessions are evicted as new ones come.

    python bench/sessions.py [--sessions 10000] [--baseline 100] [--idle 3s] [--max-sessions 1000]
                             [--concurrency 8]

Goal (issue 11): flat, within 10% of the 100-session figures, after 10,000 sessions and after idle-out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from harness import RawClient, bench_env, open_fds, rss_mb, sockets, start_sandbox, start_server, stop  # noqa: E402

GOAL = 0.10


async def _sessions(url: str, first: int, count: int, concurrency: int) -> float:
    """Open sessions ``first`` .. ``first + count - 1``, each with one group_list call; returns seconds."""
    import httpx

    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(first, first + count):
        queue.put_nowait(n)
    started = time.perf_counter()

    async def worker() -> None:
        async with httpx.AsyncClient(timeout=120, trust_env=False) as http:
            while True:
                try:
                    n = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                client = RawClient(http, url, "modern", session=f"bench-session-{n:06d}")
                await client.open()
                result = await client.call("group_list")
                if not result["structuredContent"]["items"]:
                    raise RuntimeError("group_list listed no groups")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def _figures(pid: int) -> dict[str, float]:
    return {"rss": rss_mb(pid), "fds": open_fds(pid), "sockets": sockets(pid)}


def _evicted(audit: Path) -> tuple[int, dict[str, int]]:
    """Eviction records in the log and its rotated segments, by reason."""
    from azure_agent_mcp.policy import audit_files

    reasons: dict[str, int] = {}
    for file in audit_files(audit):
        if not file.exists():
            continue
        for line in file.read_text(encoding="utf-8").splitlines():
            if '"session"' not in line:
                continue
            record = json.loads(line)
            if record.get("kind") == "session":
                reasons[record.get("reason", "?")] = reasons.get(record.get("reason", "?"), 0) + 1
    return sum(reasons.values()), reasons


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=100)
    parser.add_argument("--idle", default="3s", help="the server's --session-idle for the run")
    parser.add_argument("--max-sessions", type=int, default=1000, help="the server's --max-sessions for the run")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="sessions-bench-"))
    env = bench_env(workdir / "state")
    sandbox, manifest = start_sandbox(workdir, env)
    server = None
    audit = workdir / "audit.jsonl"
    rows: list[tuple[str, dict[str, float], str]] = []
    try:
        server, url = start_server(manifest, audit, env, "--dangerously-allow-anonymous", "--session-idle", args.idle,
                                   "--max-sessions", str(args.max_sessions))
        took = asyncio.run(_sessions(url, 0, args.baseline, args.concurrency))
        rows.append((f"after {args.baseline} sessions", _figures(server.pid), f"{args.baseline / took:.0f} sessions/s"))
        rest = args.sessions - args.baseline
        took = asyncio.run(_sessions(url, args.baseline, rest, args.concurrency))
        rows.append((f"after {args.sessions} sessions", _figures(server.pid), f"{rest / took:.0f} sessions/s"))
        print(f"  {args.sessions} sessions opened; waiting for them to idle out", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            total, reasons = _evicted(audit)
            if total >= args.sessions:
                break
            time.sleep(1)
        time.sleep(1)  # the last evictions' closing
        total, reasons = _evicted(audit)
        rows.append(("after idle-out", _figures(server.pid),
                     f"{total} evicted (" + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + ")"))
    finally:
        if server is not None:
            stop(server)
        stop(sandbox)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"agent sessions through serve --transport http (anonymous, loopback), each one group_list call with its "
          f"own X-Agent-Session-Id (2026-07-28 protocol, raw httpx JSON-RPC, {args.concurrency} at a time); "
          f"--session-idle {args.idle}, --max-sessions {args.max_sessions}")
    print()
    base = rows[0][1]
    print(f"{'':24} {'RSS MB':>8} {'vs base':>8} {'open fds':>9} {'vs base':>8} {'sockets':>8} {'vs base':>8}  note")
    for label, figures, note in rows:
        print(f"{label:24} {figures['rss']:8.1f} {figures['rss'] / base['rss']:7.2f}x {figures['fds']:9.0f} "
              f"{figures['fds'] / base['fds']:7.2f}x {figures['sockets']:8.0f} "
              f"{figures['sockets'] / max(base['sockets'], 1):7.2f}x  {note}")
    print()
    for label, figures, _ in rows[1:]:
        rss, fds = figures["rss"] / base["rss"] - 1, figures["fds"] / base["fds"] - 1
        verdict = "met" if abs(rss) <= GOAL and abs(fds) <= GOAL else "NOT met"
        print(f"goal {label}: within {GOAL:.0%} of the {args.baseline}-session figures: RSS {rss:+.1%}, "
              f"open fds {fds:+.1%} ({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
