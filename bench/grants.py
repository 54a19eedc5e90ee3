"""What the temporary grants cost the guard per request, against the guard without them, in one run.

Decides the same requests through ``Guard.decide`` (the policy's remembered decision: the baseline)
and through ``Guard.decide_in_session`` with a grant book holding N live grants for the session,
for three kinds of request: one the policy allows (the book is not consulted), one a grant lifts,
and one no grant covers (every grant checked). Prints microseconds per decision and the ratio to
the baseline. No network: decisions only (the audit and the wire are the same with or without).

    python bench/grants.py [--decisions 20000] [--grants 1 8]

Goal: an allowed request pays nothing measurable (ratio ~1); a lifted one stays in microseconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SUB = "00000000-0000-0000-0000-00000000000a"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-prod-app"
ARM = "https://management.azure.com"


def _per_call(fn, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--grants", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    from azure_agent_mcp.access.grants import Grant, GrantBook
    from azure_agent_mcp.policy import Endpoints, Guard, load_policy

    policy = load_policy("read-only")
    endpoints = Endpoints.public_cloud()
    read = f"{ARM}{RG}/providers/Microsoft.Web/sites/app-orders-prod?api-version=2022-03-01"
    restart = f"{ARM}{RG}/providers/Microsoft.Web/sites/app-orders-prod/restart?api-version=2022-03-01"
    stop = f"{ARM}{RG}/providers/Microsoft.Web/sites/app-orders-prod/stop?api-version=2022-03-01"
    plain = Guard(policy, endpoints)
    cases = (("allowed read", "GET", read), ("lifted restart", "POST", restart), ("refused stop", "POST", stop))
    base = {name: _per_call(lambda m=method, u=url: plain.decide(m, u), args.decisions) for name, method, url in cases}
    print(f"{'request':16} {'baseline us':>12} " + " ".join(f"{f'{n} grant(s) us':>14} {'ratio':>6}" for n in args.grants))
    rows = {name: [] for name, _, _ in cases}
    for count in args.grants:
        book = GrantBook()
        now = book.clock.now()
        for index in range(count):
            site = "app-orders-prod" if index == count - 1 else f"app-other-{index}"
            book.add(Grant(f"g-{index}", "s1", f"{RG}/providers/Microsoft.Web/sites/{site}", now, now + 3600, "bench",
                           ("Microsoft.Web/sites/restart/action",)))
        guard = Guard(policy, endpoints, grants=book)
        for name, method, url in cases:
            cost = _per_call(lambda m=method, u=url: guard.decide_in_session("s1", m, u), args.decisions)
            rows[name].append((cost, cost / base[name]))
    for name, _, _ in cases:
        cells = " ".join(f"{cost:14.2f} {ratio:6.2f}" for cost, ratio in rows[name])
        print(f"{name:16} {base[name]:12.2f} {cells}")


if __name__ == "__main__":
    main()
