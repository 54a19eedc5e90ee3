"""Sandbox throughput: token requests/s and ARM GETs/s with concurrent keep-alive clients.

Starts ``azure-agent-mcp sandbox`` as its own process (so the load generator's GIL is not the
server's), then runs each workload with N client processes, each holding one keep-alive HTTPS
connection (stdlib ``http.client``, the cheapest client available), for a fixed number of
requests. ``GET /_sandbox/stats`` is the no-op baseline measured in the same run; the ratios
say how much of the per-request cost is the sandbox's own work rather than TLS + HTTP.

    /work/venv/bin/python bench/sandbox_throughput.py [--clients 8] [--requests 1000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse


def _worker(args: tuple[dict[str, Any], str, str, dict[str, str], bytes | None, int, Any]) -> tuple[float, float, int]:
    manifest, method, path, headers, body, count, barrier = args
    origin = urlparse(manifest["arm_endpoint"])
    context = ssl.create_default_context(cafile=manifest["ca_bundle"])
    connection = http.client.HTTPSConnection(origin.hostname, origin.port, context=context, timeout=30)
    connection.connect()
    barrier.wait()
    errors = 0
    started = time.perf_counter()
    for _ in range(count):
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            errors += 1
    ended = time.perf_counter()
    connection.close()
    return started, ended, errors


def run_workload(pool: Any, manager: Any, manifest: dict[str, Any], clients: int, requests: int, method: str,
                 path: str, headers: dict[str, str], body: bytes | None = None) -> tuple[float, int]:
    barrier = manager.Barrier(clients)
    jobs = [(manifest, method, path, headers, body, requests, barrier) for _ in range(clients)]
    results = pool.map(_worker, jobs)
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    errors = sum(r[2] for r in results)
    return clients * requests / (end - start), errors


def start_sandbox(state_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "azure_agent_mcp", "sandbox", "--port", "0", "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = process.stdout.readline().strip() if process.stdout else ""
    if not line:
        process.kill()
        raise SystemExit("the sandbox did not start")
    return process, json.loads(Path(line).read_text(encoding="utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1000, help="requests per client per workload")
    parser.add_argument("--manifest", type=Path, help="attach to a running sandbox instead of starting one")
    args = parser.parse_args()

    process = None
    temp = tempfile.TemporaryDirectory(prefix="sandbox-bench-")
    if args.manifest:
        manifest = json.loads(args.manifest.read_text(encoding="utf-8"))
    else:
        process, manifest = start_sandbox(Path(temp.name) / "sb")
    try:
        sp = manifest["service_principals"][0]
        tenant = manifest["tenant_id"]
        form = urlencode({"grant_type": "client_credentials", "client_id": sp["client_id"],
                          "client_secret": sp["client_secret"],
                          "scope": "https://management.azure.com/.default"}).encode()
        form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
        developer = next(u for u in manifest["users"] if u["name"] == "developer")
        user_form = urlencode({"grant_type": "password", "client_id": manifest["public_client_id"],
                               "username": developer["upn"], "password": developer["password"],
                               "scope": "https://management.azure.com/.default"}).encode()

        # One token for the ARM workload (the developer: Owner on subscription A).
        origin = urlparse(manifest["arm_endpoint"])
        context = ssl.create_default_context(cafile=manifest["ca_bundle"])
        conn = http.client.HTTPSConnection(origin.hostname, origin.port, context=context)
        conn.request("POST", f"/{tenant}/oauth2/v2.0/token", body=user_form, headers=form_headers)
        token = json.loads(conn.getresponse().read())["access_token"]
        conn.close()
        subscription = manifest["subscriptions"][0]["id"]
        arm_path = f"/subscriptions/{subscription}/resourceGroups/rg-prod-app?api-version=2022-09-01"
        arm_headers = {"Authorization": f"Bearer {token}"}

        ctx = multiprocessing.get_context("fork")
        with ctx.Manager() as manager, ctx.Pool(args.clients) as pool:
            # Warm-up: connections, caches, the token's signature check.
            run_workload(pool, manager, manifest, args.clients, 20, "GET", arm_path, arm_headers)
            baseline, e0 = run_workload(pool, manager, manifest, args.clients, args.requests, "GET",
                                        "/_sandbox/stats", {})
            arm, e1 = run_workload(pool, manager, manifest, args.clients, args.requests, "GET", arm_path,
                                   arm_headers)
            tokens, e2 = run_workload(pool, manager, manifest, args.clients, max(args.requests // 3, 10), "POST",
                                      f"/{tenant}/oauth2/v2.0/token", form_headers, form)
        print(f"sandbox throughput, {args.clients} concurrent keep-alive clients, {os.cpu_count()} CPUs")
        print(f"  baseline GET /_sandbox/stats        {baseline:8.0f} req/s   (errors {e0})")
        print(f"  ARM GET resource group (with token) {arm:8.0f} req/s   (errors {e1})   "
              f"{arm / baseline:5.2f}x baseline")
        print(f"  token requests (client_credentials) {tokens:8.0f} req/s   (errors {e2})   "
              f"{tokens / baseline:5.2f}x baseline")
        goal = "met" if arm >= 300 else "NOT met"
        print(f"  goal >= 300 ARM GETs/s: {goal}")
        return 0 if not (e0 or e1 or e2) else 1
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        temp.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
