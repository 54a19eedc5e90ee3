"""What a short-lived agent identity costs a session: its first call, and the calls after, in one run.

Two `serve --transport http` against one sandbox subprocess: the baseline acts as the sandbox's seeded
agent identity (`--credential agent-identity`), the other makes one per session
(`--ephemeral-agent --ephemeral-role "Website Contributor@<rg-prod-app>"`: a Graph create, a PIM
AdminAssign, then the blueprint's exchange for the new identity). Each of ``--sessions`` new agent
sessions (X-Agent-Session-Id, the 2026-07-28 protocol) calls ``group_list`` twice, against each server
in turn; the medians of the first and second calls and the ratios ephemeral / baseline are printed.
The first call is where the identity is made; the second shows the steady state is unchanged. The
deletions happen when the servers stop (one per session) and are not timed.

    python bench/ephemeral.py [--sessions 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import MODERN, RawClient, bench_env, start_sandbox, start_server, stop  # noqa: E402


async def _session_calls(url: str, session: str) -> tuple[float, float]:
    import httpx

    async with httpx.AsyncClient(timeout=120, trust_env=False) as http:
        client = RawClient(http, url, "modern", session=session)
        await client.open()
        started = time.perf_counter()
        await client.call("group_list")
        first = time.perf_counter() - started
        started = time.perf_counter()
        await client.call("group_list")
        return first, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = bench_env(work / "state")
        sandbox, manifest_path = start_sandbox(work, env)
        try:
            manifest = json.loads(manifest_path.read_text())
            group = f"/subscriptions/{manifest['subscriptions'][0]['id']}/resourceGroups/rg-prod-app"
            common = ("--credential", "agent-identity", "--dangerously-allow-anonymous", "--session-ttl", "1h",
                      "--max-sessions", str(args.sessions + 5))
            baseline, baseline_url = start_server(manifest_path, work / "a.jsonl", env, *common)
            ephemeral, ephemeral_url = start_server(
                manifest_path, work / "b.jsonl", env, *common, "--ephemeral-agent", "--policy", "unrestricted",
                "--ephemeral-role", f"Website Contributor@{group}")
            try:
                figures: dict[str, list[tuple[float, float]]] = {"baseline": [], "ephemeral": []}
                for _ in range(args.sessions):  # interleaved, so machine noise falls on both alike
                    for name, url in (("baseline", baseline_url), ("ephemeral", ephemeral_url)):
                        figures[name].append(asyncio.run(_session_calls(url, f"bench-{uuid.uuid4().hex[:12]}")))
            finally:
                stop(baseline)
                stop(ephemeral)
        finally:
            stop(sandbox)
    first = {k: statistics.median(f for f, _ in v) * 1000 for k, v in figures.items()}
    second = {k: statistics.median(s for _, s in v) * 1000 for k, v in figures.items()}
    print(f"sessions: {args.sessions} (protocol {MODERN})")
    print(f"first call  (session start): baseline {first['baseline']:.1f} ms, ephemeral {first['ephemeral']:.1f} ms, "
          f"ratio {first['ephemeral'] / first['baseline']:.2f}")
    print(f"second call (steady state):  baseline {second['baseline']:.1f} ms, ephemeral {second['ephemeral']:.1f} ms, "
          f"ratio {second['ephemeral'] / second['baseline']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
