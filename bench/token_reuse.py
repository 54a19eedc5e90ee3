"""Token reuse in one agent session: token-endpoint requests and get_token latency per design.

Starts the sandbox as a subprocess (``azure-agent-mcp sandbox``) and, for N calls in one session,
counts the requests its token endpoint saw (from its admin request log) and times each call:

  (a) this server's AgentCredential (sandbox provider: MSAL, client_session + forwarded claims,
      per-session cache in front);
  (b) the first Azure CLI agentic design: MSAL with a ``claims_challenge`` on every call, which
      bypasses MSAL's access-token cache (one refresh-token grant per call);
  (c) a fresh ``az account get-access-token`` per call (Azure CLI 2.91 in the session), when the
      Azure CLI is installed; and (d) this credential over the azure-cli provider.

Microsoft Entra Agent ID (the agent's own identity, ``--credential agent-identity`` / ``sidecar``),
each for N calls on one resource in one session:

  (e) agent identity acting autonomously (blueprint exchange, then the agent identity's request);
  (f) the agent user (exchange, the agent identity's own exchange token, then ``user_fic``);
  (g) the auth sidecar (counting the sidecar's requests and the token requests it makes);
  (n) the naive baseline: both legs of the exchange over plain HTTPS on every call.

Azure DevOps (``499b84ac-.../.default``), N calls in one fresh session per credential path: the
tagged user (MSAL), the agent user through ``user_fic``, and the sidecar as the agent user; each
against the same path's ARM figure measured in this run (the baseline: a DevOps token must cost
what an ARM token costs). How one call is made is a workload (``DEVOPS_WORKLOADS``, ``get_token``).

And through the tools (``serve --devops-organization`` over stdio, N real ``devops_*`` tool
calls in one agent session, each path): (u) the tagged developer, (v) the agent user via
``user_fic``, (w) the agent user via the sidecar, counting the token requests (and sidecar
requests) for Azure DevOps' scope against the baseline of one token request per Azure DevOps request.

Goal for (a): one token request per N calls, cached p50 under 50 us. Goal for (e): two exchanges
per session and resource, then cache hits. Usage:
    python bench/token_reuse.py [--calls 100] [--az-calls 100] [--devops-workload get_token] [--devops-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

from azure_agent_mcp.environment import from_manifest
from azure_agent_mcp.identity import build_credential, resolve_session
from azure_agent_mcp.identity.claims import agent_claims
from azure_agent_mcp.identity.msal_provider import MsalApps, device_code_sign_in

ARM = "https://management.azure.com/.default"


class SandboxProcess:
    """``azure-agent-mcp sandbox`` in a child process, with a small client for its admin API."""

    def __init__(self, state_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "azure_agent_mcp", "sandbox", "--state-dir", str(state_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.process.stdout.readline().strip() if self.process.stdout else ""
        if not line:
            self.stop()
            raise SystemExit("the sandbox did not start (no manifest path printed)")
        self.manifest_path = Path(line)
        self.manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        self._ssl = ssl.create_default_context(cafile=self.manifest["ca_bundle"])

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.manifest["admin"] + path, context=self._ssl, timeout=30) as response:
            return json.loads(response.read())

    def last_seq(self) -> int:
        return int(self._get("/stats")["last_seq"])

    def token_requests(self, since: int) -> list[dict[str, Any]]:
        return self._get(f"/requests?kind=token&since={since}")["value"]

    def sidecar_requests(self, since: int) -> list[dict[str, Any]]:
        return self._get(f"/requests?kind=sidecar&since={since}")["value"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def measure(sandbox: SandboxProcess, calls: int, call: Callable[[], Any]) -> dict[str, Any]:
    since = sandbox.last_seq()
    latencies = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        call()
        latencies.append(time.perf_counter_ns() - started)
    requests = len(sandbox.token_requests(since))
    return {
        "calls": calls,
        "token_requests": requests,
        "sidecar_requests": len(sandbox.sidecar_requests(since)),
        "p50_us": statistics.median(latencies) / 1000,
        "p50_after_first_us": statistics.median(latencies[1:]) / 1000 if calls > 1 else None,
        "first_ms": latencies[0] / 1e6,
        "total_ms": sum(latencies) / 1e6,
    }


def design_a(sandbox: SandboxProcess, env: Any, calls: int) -> dict[str, Any]:
    session = resolve_session(session_id=f"bench-a-{uuid.uuid4().hex[:8]}", environ={})
    credential = build_credential("sandbox", env, session)
    return measure(sandbox, calls, lambda: credential.get_token(ARM))


def design_b(sandbox: SandboxProcess, env: Any, calls: int) -> dict[str, Any]:
    """MSAL as the first agentic Azure CLI used it: the agent claims as a claims_challenge on every call."""
    apps = MsalApps(env.manifest["public_client_id"], env.authority_host, verify=env.connection_verify,
                    default_tenant=env.tenant_id)
    app = apps.app_for(None)
    session_id = f"bench-b-{uuid.uuid4().hex[:8]}"
    # the initial sign-in (az login) is not part of the measured calls
    device_code_sign_in()(app, (ARM,), {}, {}, "")
    (account,) = app.get_accounts()
    challenge = agent_claims(session_id, "xms_agent_session")

    def call() -> None:
        result = app.acquire_token_silent_with_error(
            [ARM], account, claims_challenge=challenge,
            data={"client_session": session_id}, params={"client_session": session_id},
        )
        if not result or "access_token" not in result:
            raise SystemExit(f"design (b) failed: {result and result.get('error')}")

    return measure(sandbox, calls, call)


def design_c(sandbox: SandboxProcess, az_environ: dict[str, str], calls: int) -> dict[str, Any]:
    az = shutil.which("az")
    environ = dict(az_environ, COPILOT_AGENT_SESSION_ID=f"bench-c-{uuid.uuid4().hex[:8]}")

    def call() -> None:
        subprocess.run([az, "account", "get-access-token", "--scope", ARM, "--output", "json"],
                       capture_output=True, check=True, env=environ, timeout=120)

    return measure(sandbox, calls, call)


def design_d(sandbox: SandboxProcess, env: Any, az_environ: dict[str, str], calls: int) -> dict[str, Any]:
    session = resolve_session(session_id=f"bench-d-{uuid.uuid4().hex[:8]}", environ={})
    credential = build_credential("azure-cli", env, session, environ=az_environ)
    return measure(sandbox, calls, lambda: credential.get_token(ARM))


def design_agent(sandbox: SandboxProcess, env: Any, calls: int, kind: str, **options: Any) -> dict[str, Any]:
    """(e) autonomous / (f) agent user (``agent_user``) / (g) sidecar: ids and secret from the manifest."""
    session = resolve_session(session_id=f"bench-{kind}-{uuid.uuid4().hex[:8]}", environ={})
    credential = build_credential(kind, env, session, **options)
    try:
        return measure(sandbox, calls, lambda: credential.get_token(ARM))
    finally:
        credential.close()


def design_naive_agent(sandbox: SandboxProcess, env: Any, calls: int) -> dict[str, Any]:
    """(n) both legs of the agent identity exchange over plain HTTPS on every call, no cache at all."""
    import requests

    ids = env.manifest["agent_identity"]
    url = f"{env.authority_host}/{env.tenant_id}/oauth2/v2.0/token"
    http = requests.Session()
    http.trust_env = False
    http.verify = env.ca_bundle

    def call() -> None:
        t1 = http.post(url, data={"grant_type": "client_credentials", "client_id": ids["blueprint_client_id"],
                                  "client_secret": ids["blueprint_client_secret"],
                                  "scope": "api://AzureADTokenExchange/.default",
                                  "fmi_path": ids["agent_identity_id"]}).json()["access_token"]
        answer = http.post(url, data={"grant_type": "client_credentials", "client_id": ids["agent_identity_id"],
                                      "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                      "client_assertion": t1, "scope": ARM}).json()
        if "access_token" not in answer:
            raise SystemExit(f"design (n) failed: {answer.get('error')}")

    try:
        return measure(sandbox, calls, call)
    finally:
        http.close()


# -- Azure DevOps ---------------------------------------------------------------------------------

Workload = Callable[[Any, Any, str], Callable[[], Any]]
"""(session credential, environment, scope) -> one call; measured N times in one session."""


def get_token_workload(credential: Any, env: Any, scope: str) -> Callable[[], Any]:
    return lambda: credential.get_token(scope)


DEVOPS_WORKLOADS: dict[str, Workload] = {"get_token": get_token_workload}
"""How one Azure DevOps call is made. Add tool calls here (e.g. ``devops_project_list`` through
``serve``, the scope telling which audience's tool to call); every path is measured with it."""


def devops_paths(manifest: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, --credential kind, build_credential options) for each path issue 13 names."""
    agent_user = manifest["agent_identity"]["agent_user_upn"]
    return [
        ("tagged user (MSAL, session-tagged)", "sandbox", {}),
        ("agent user via user_fic", "agent-identity", {"agent_user": agent_user}),
        ("sidecar as the agent user", "sidecar", {"agent_user": agent_user}),
    ]


def design_devops(sandbox: SandboxProcess, env: Any, calls: int, kind: str, options: dict[str, Any],
                  workload: Workload, scope: str) -> dict[str, Any]:
    """N calls of ``workload`` for ``scope`` in one fresh session of ``kind``."""
    session = resolve_session(session_id=f"bench-devops-{kind}-{uuid.uuid4().hex[:8]}", environ={})
    credential = build_credential(kind, env, session, **options)
    since = sandbox.last_seq()
    try:
        result = measure(sandbox, calls, workload(credential, env, scope))
    finally:
        credential.close()
    # The sidecar (and MSAL's agent clients) reuse exchange tokens across audiences and, for the
    # sidecar, across sessions: the requests for the resource itself are what compare fairly.
    result["resource_requests"] = sum(1 for e in sandbox.token_requests(since) if scope in str(e.get("scope")).split())
    return result


def devops_rows(sandbox: SandboxProcess, env: Any, calls: int, workload: Workload) -> list[tuple[str, Any, Any]]:
    """(label, DevOps result, ARM result of the same path): each in a session of its own."""
    rows = []
    for label, kind, options in devops_paths(sandbox.manifest):
        devops = design_devops(sandbox, env, calls, kind, options, workload, env.devops_scope)
        arm = design_devops(sandbox, env, calls, kind, options, workload, env.arm_scope)
        rows.append((label, devops, arm))
    return rows


DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
DEVOPS_TOOLS = (("devops_project_list", {}), ("devops_repo_list", {"project": "Storefront"}),
                ("devops_branch_list", {"project": "Storefront", "repo": "storefront-web"}),
                ("devops_work_item_query", {"project": "Storefront", "top": 5,
                                            "wiql": "SELECT [System.Id] FROM WorkItems WHERE [System.State] = 'New'"}))


def devops_path(sandbox: SandboxProcess, workdir: Path, calls: int, kind: str) -> dict[str, Any]:
    """``calls`` devops_* tool calls through one ``serve`` (one agent session) for one credential path."""
    import anyio
    from mcp import Client, StdioServerParameters

    manifest = sandbox.manifest
    agent = manifest["agent_identity"]["agent_user_upn"]
    credential = {"user": [], "agent_user": ["--credential", "agent-identity", "--agent-user", agent],
                  "sidecar": ["--credential", "sidecar", "--sidecar-url", manifest["sidecar"], "--agent-user", agent]}[kind]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_AGENT_MCP_")}
    env["AZURE_AGENT_MCP_STATE_DIR"] = str(workdir / f"state-{kind}")
    env["COPILOT_AGENT_SESSION_ID"] = f"bench-devops-{kind}-{uuid.uuid4().hex[:8]}"
    params = StdioServerParameters(command=sys.executable, env=env, args=[
        "-m", "azure_agent_mcp", "serve", "--sandbox", str(sandbox.manifest_path), "--policy", "read-only",
        "--audit-log", str(workdir / f"audit-{kind}.jsonl"), "--devops-organization", manifest["devops_organization"],
        *credential])
    since = sandbox.last_seq()
    latencies: list[int] = []

    async def run() -> None:
        async with Client(params) as client:
            for i in range(calls):
                tool, arguments = DEVOPS_TOOLS[i % len(DEVOPS_TOOLS)]
                started = time.perf_counter_ns()
                result = await client.call_tool(tool, arguments)
                latencies.append(time.perf_counter_ns() - started)
                if result.is_error:
                    raise SystemExit(f"{kind}: {tool} failed: {result.content[0].text}")

    anyio.run(run)
    tokens = sandbox.token_requests(since)
    devops_tokens = [t for t in tokens if DEVOPS_SCOPE in str(t.get("scope", ""))]
    received = sandbox._get(f"/requests?kind=devops&since={since}")["value"]
    asked = sandbox.sidecar_requests(since)
    return {"calls": calls, "devops_requests": len(received), "token_requests": len(tokens),
            "devops_token_requests": len(devops_tokens), "sidecar_requests": len(asked),
            "sidecar_devops": sum(1 for r in asked if r.get("api_name") == "devops"),
            "p50_ms": statistics.median(latencies) / 1e6}


def devops_row(name: str, result: dict[str, Any], sidecar: bool = False) -> str:
    """The server's fetches of an Azure DevOps token: from Entra, or (sidecar) from the sidecar, which may answer
    from its own cache (its Entra requests are shown too)."""
    fetched = result["sidecar_devops"] if sidecar else result["devops_token_requests"]
    per_100 = 100 * fetched / max(result["calls"], 1)
    baseline = result["devops_requests"]  # one token fetch per Azure DevOps request, no cache
    source = "from the sidecar" if sidecar else "from Entra"
    return (f"{name:<34} {fetched:>2} DevOps token fetch(es) {source} ({per_100:.0f} per 100 calls; Entra saw "
            f"{result['devops_token_requests']} for DevOps, {result['token_requests']} in all); "
            f"{result['devops_requests']} DevOps requests sent; baseline/this {baseline / max(fetched, 1):.0f}x"
            f"   p50 {result['p50_ms']:.1f} ms")


def devops_section(sandbox: SandboxProcess, workdir: Path, calls: int) -> list[str]:
    results = {kind: devops_path(sandbox, workdir, calls, kind) for kind in ("user", "agent_user", "sidecar")}
    return [
        f"Azure DevOps through the tools ({calls} devops_* tool calls in one agent session per path; baseline: a token "
        "request per Azure DevOps request)",
        devops_row("(u) tagged user (developer)", results["user"]),
        devops_row("(v) agent user via user_fic", results["agent_user"]),
        devops_row("(w) agent user via the sidecar", results["sidecar"], sidecar=True),
    ]


def row(name: str, result: dict[str, Any] | None, note: str = "") -> str:
    if result is None:
        return f"{name:<58} skipped{(': ' + note) if note else ''}"
    after = result["p50_after_first_us"]
    return (f"{name:<58} {result['token_requests']:>4} req / {result['calls']:<4} calls   "
            f"p50 {result['p50_us']:>10.1f} us   p50 after 1st {after:>10.1f} us   first {result['first_ms']:>8.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--az-calls", type=int, default=None, help="calls for (c); default: --calls")
    parser.add_argument("--devops-only", action="store_true", help="only the Azure DevOps tool calls (u)-(w)")
    parser.add_argument("--devops-workload", choices=sorted(DEVOPS_WORKLOADS), default="get_token",
                        help="how one Azure DevOps call is made")
    options = parser.parse_args()
    az_calls = options.az_calls or options.calls
    if options.devops_only:
        workdir = Path(tempfile.mkdtemp(prefix="bench-token-reuse-"))
        sandbox = SandboxProcess(workdir / "sandbox")
        try:
            lines = devops_section(sandbox, workdir, options.calls)
        finally:
            sandbox.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        print("\n".join(lines))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="bench-token-reuse-"))
    sandbox = SandboxProcess(workdir / "sandbox")
    try:
        env = from_manifest(sandbox.manifest)
        a = design_a(sandbox, env, options.calls)
        b = design_b(sandbox, env, options.calls)
        agent_user = sandbox.manifest["agent_identity"]["agent_user_upn"]
        e = design_agent(sandbox, env, options.calls, "agent-identity")
        f = design_agent(sandbox, env, options.calls, "agent-identity", agent_user=agent_user)
        g = design_agent(sandbox, env, options.calls, "sidecar")
        n = design_naive_agent(sandbox, env, options.calls)
        devops = devops_rows(sandbox, env, options.calls, DEVOPS_WORKLOADS[options.devops_workload])
        c = d = None
        az_note = "the Azure CLI ('az') is not on PATH"
        if shutil.which("az"):
            from azure_agent_mcp.identity.azure_cli import sandbox_cli_environment

            az_environ = sandbox_cli_environment(sandbox.manifest, workdir / "azure-config")
            c = design_c(sandbox, az_environ, az_calls)
            d = design_d(sandbox, env, az_environ, options.calls)
        tool_lines = devops_section(sandbox, workdir, options.calls)
    finally:
        sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"token reuse in one agent session ({options.calls} get_token calls; sandbox as a subprocess)")
    print(row("(a) AgentCredential, sandbox provider (MSAL, per-session)", a))
    print(row("(b) first Azure CLI design: claims_challenge every call", b))
    print(row("(c) fresh `az account get-access-token` per call", c, az_note))
    print(row("(d) AgentCredential over the azure-cli provider", d, az_note))
    print()
    print(f"goal (a): 1 request per {options.calls} calls -> {a['token_requests']}; "
          f"cached p50 < 50 us -> {a['p50_after_first_us']:.1f} us "
          f"({'met' if a['token_requests'] == 1 and a['p50_after_first_us'] < 50 else 'NOT met'})")
    print(f"(b)/(a) token requests: {b['token_requests'] / max(a['token_requests'], 1):.0f}x   "
          f"p50 latency: {b['p50_us'] / a['p50_us']:.0f}x")
    if c is not None:
        print(f"(c)/(a) token requests: {c['token_requests'] / max(a['token_requests'], 1):.0f}x   "
              f"p50 latency: {c['p50_us'] / a['p50_us']:.0f}x   ({az_calls} az calls)")
    if d is not None:
        print(f"(c)/(d) p50 latency: {c['p50_us'] / d['p50_us']:.0f}x   (the in-process cache in front of az)")
    print()
    print(f"Entra Agent ID ({options.calls} get_token calls for ARM in one session)")
    print(row("(e) agent identity, autonomous (two MSAL clients)", e))
    print(row("(f) agent user (exchange, own exchange token, user_fic)", f))
    print(row("(g) auth sidecar: token requests made by the sidecar", g)
          + f"   ({g['sidecar_requests']} sidecar request(s))")
    print(row("(n) naive: both legs of the exchange on every call", n))
    print(f"goal (e): 2 exchanges per session and resource, then cache hits -> {e['token_requests']} "
          f"({'met' if e['token_requests'] == 2 else 'NOT met'}); agent user -> {f['token_requests']} "
          f"(its third request is the user_fic grant itself)")
    print(f"(n)/(e) token requests: {n['token_requests'] / max(e['token_requests'], 1):.0f}x   "
          f"p50 latency: {n['p50_us'] / e['p50_us']:.0f}x   cached p50 (e) {e['p50_after_first_us']:.1f} us, "
          f"(g) {g['p50_after_first_us']:.1f} us")
    print()
    print(f"Azure DevOps ({options.calls} {options.devops_workload} calls per path, one fresh session each; "
          "baseline: the same path's ARM figure)")
    for label, result, arm in devops:
        sidecar = (f"   ({result['sidecar_requests']} sidecar request(s); ARM {arm['sidecar_requests']})"
                   if result["sidecar_requests"] or arm["sidecar_requests"] else "")
        print(row(f"DevOps: {label}", result) + sidecar)
        print(f"{'':<8}requests for the resource itself DevOps/ARM: {result['resource_requests']}/"
              f"{arm['resource_requests']} = {result['resource_requests'] / max(arm['resource_requests'], 1):.2f}x "
              f"(the rest are exchange tokens, reused across audiences)   "
              f"cached p50 DevOps/ARM: {result['p50_after_first_us'] / max(arm['p50_after_first_us'], 1e-9):.2f}x")
    print()
    print("\n".join(tool_lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
