"""What authentication costs: token verification in process, and calls through `serve` over HTTP with
authentication (a signed-in user, on-behalf-of tokens) against the same server anonymous, in one run.

Part one: the verifier on a token it has not seen (signature + claims, keys cached) vs one it has.
Part two: C concurrent MCP clients x N `resource_list` calls, `serve --transport http --sandbox`
with auth (tokens from the sandbox's public client) vs `--dangerously-allow-anonymous`; calls/s and
the ratio auth / anonymous. Ratios, not absolute numbers, are the result: the machine is shared.

    python bench/auth.py [--clients 4] [--calls 50] [--tokens 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def verify_costs(sandbox, count: int) -> tuple[float, float]:
    from auth_helpers import mint, server_app

    from azure_agent_mcp.server.auth_config import AuthConfig, ServerAppCredential
    from azure_agent_mcp.server.bearer import EntraTokenVerifier

    manifest = sandbox.manifest
    app = server_app(sandbox)
    verifier = EntraTokenVerifier(AuthConfig(
        authority_host=manifest["authority_host"], tenant_id=manifest["tenant_id"], client_id=app["client_id"],
        app_id_uri=app["app_id_uri"], scope_name="user_impersonation", issuer=manifest["issuer"],
        jwks_uri=manifest["jwks_uri"], credential=ServerAppCredential(secret="x"), ca_bundle=manifest["ca_bundle"]))
    tokens = [mint(sandbox) for _ in range(count)]
    verifier.verify(tokens[0])  # the JWKS fetch, once
    started = time.perf_counter()
    for token in tokens[1:]:
        verifier.verify(token)
    first = (time.perf_counter() - started) / (count - 1)
    started = time.perf_counter()
    for _ in range(count):
        for token in tokens[:10]:
            verifier.verify(token)
    cached = (time.perf_counter() - started) / (count * 10)
    return first, cached


async def _client(url: str, token: str | None, calls: int) -> list[float]:
    import httpx
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies = []
    async with httpx.AsyncClient(headers=headers, timeout=120) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            await client.call_tool("resource_list", {})  # warm: session, token exchange, clients
            for _ in range(calls):
                started = time.perf_counter()
                result = await client.call_tool("resource_list", {})
                latencies.append(time.perf_counter() - started)
                assert not result.is_error, result.content
    return latencies


def through_serve(sandbox, tmp: Path, *, auth: bool, clients: int, calls: int) -> tuple[float, float]:
    import anyio

    from auth_helpers import AuthServe, sign_in

    extra = () if auth else ("--dangerously-allow-anonymous",)
    names = ["developer", "reader"]
    tokens = [sign_in(sandbox, names[n % 2])["access_token"] if auth else None for n in range(clients)]
    with AuthServe(sandbox, tmp / ("auth" if auth else "anon"), *extra) as server:
        results: list[list[float]] = []

        async def run() -> float:
            async def one(token):
                results.append(await _client(server.url, token, calls))

            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                for token in tokens:
                    group.start_soon(one, token)
            return time.perf_counter() - started

        elapsed = anyio.run(run)
    every = [x for r in results for x in r]
    return clients * (calls + 1) / elapsed, statistics.median(every)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=300)
    args = parser.parse_args()
    from azure_agent_mcp.sandbox import Sandbox

    with Sandbox() as sandbox, tempfile.TemporaryDirectory() as tmp:
        first, cached = verify_costs(sandbox, args.tokens)
        print(f"verify, first sight: {first * 1e6:.0f} us/token; remembered: {cached * 1e6:.1f} us/token "
              f"(ratio {first / cached:.0f}x)")
        anon_rate, anon_p50 = through_serve(sandbox, Path(tmp), auth=False, clients=args.clients, calls=args.calls)
        auth_rate, auth_p50 = through_serve(sandbox, Path(tmp), auth=True, clients=args.clients, calls=args.calls)
        print(f"through serve over HTTP, {args.clients} clients x {args.calls} resource_list calls:")
        print(f"  anonymous: {anon_rate:.0f} calls/s, p50 {anon_p50 * 1000:.1f} ms")
        print(f"  authenticated (bearer + on-behalf-of): {auth_rate:.0f} calls/s, p50 {auth_p50 * 1000:.1f} ms")
        print(f"  ratio authenticated / anonymous: {auth_rate / anon_rate:.2f}x calls/s, "
              f"{auth_p50 / anon_p50:.2f}x p50")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
