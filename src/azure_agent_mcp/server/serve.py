"""Start-up of ``serve``: policy first (fail closed), then identity, audit, runtime and transport.

Over stdio nothing but protocol messages may reach stdout, so every human-readable line goes to
stderr and the Python logging root is pointed there before anything else is imported.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path

from azure_agent_mcp.errors import CommandError
from azure_agent_mcp.netaddr import is_loopback

def load_active_policy(spec: str, read_only: bool):
    from azure_agent_mcp.policy import PolicyLoadError, load_policy, narrow_read_only

    try:
        policy = load_policy(spec)
    except PolicyLoadError as exc:
        raise CommandError(f"policy did not load, refusing to start (fail closed): {exc}") from exc
    return narrow_read_only(policy) if read_only else policy


def audit_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    from azure_agent_mcp.paths import state_dir

    return state_dir() / "audit.jsonl"


def open_audit(args: argparse.Namespace):
    """The audit log, proved writable before anything else starts (fail closed: exit 1, path and cause)."""
    from azure_agent_mcp.policy import AuditLog, AuditUnavailable

    try:
        return AuditLog.open(
            audit_path(args.audit_log),
            retain=getattr(args, "audit_retain", 5),
            key_path=getattr(args, "audit_key", None),
            anchor_path=getattr(args, "audit_anchor", None),
        )
    except AuditUnavailable as exc:
        raise CommandError(f"refusing to start: {exc}") from exc


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="azure-agent-mcp: %(message)s")
    if args.transport == "http" and not is_loopback(args.host) and not args.allow_remote:
        raise CommandError(
            f"refusing to serve HTTP on non-loopback address {args.host}: pass --allow-remote to expose the "
            "server (and put authentication in front of it)"
        )
    policy = load_active_policy(args.policy, args.read_only)

    from azure_agent_mcp.identity.cli import open_identity

    audit = open_audit(args)
    with open_identity(args, lazy_credential=True, expected_principal=policy.expected_principal) as identity:
        runtime = _runtime(args, identity, policy, audit)
        try:
            if args.transport == "stdio":
                _run_stdio(runtime)
            else:
                _run_http(runtime, args.host, args.port, tuple(args.allow_host), tuple(args.allow_origin))
        finally:
            runtime.close()
    return 0


def _runtime(args: argparse.Namespace, identity, policy, audit):
    from azure_agent_mcp.server.runtime import AgentRuntime, RuntimeOptions

    return AgentRuntime(
        env=identity.env,
        policy=policy,
        audit=audit,
        default_session=identity.session,
        credential_factory=identity.credential_for,
        options=RuntimeOptions(
            session_ttl=args.session_ttl,
            skip_confirmation=args.dangerously_skip_confirmation,
            transport=args.transport,
        ),
        default_credential=identity.credential,
    )


def _run_stdio(runtime) -> None:
    import anyio

    from azure_agent_mcp.server.app import build_server
    from azure_agent_mcp.server.stdio import run_stdio

    server = build_server(runtime)
    anyio.run(run_stdio, server)


def _run_http(runtime, host: str, port: int, allow_hosts: tuple[str, ...] = (), allow_origins: tuple[str, ...] = ()) -> None:
    import anyio
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    from azure_agent_mcp.server.app import build_server
    from azure_agent_mcp.server.hosts import allowed_peers

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # listen before announcing the URL: a client that connects as soon as it reads the line is
    # queued until uvicorn accepts, not refused (uvicorn's create_server listens again, harmlessly)
    sock.listen(2048)
    bound_port = sock.getsockname()[1]
    peers = allowed_peers(host, bound_port, allow_hosts, allow_origins)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=list(peers.hosts), allowed_origins=list(peers.origins)
    )
    server = build_server(runtime)
    app = server.streamable_http_app(host=host, transport_security=security)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"azure-agent-mcp: serving MCP over HTTP at http://{shown}:{bound_port}/mcp", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    anyio.run(uvicorn.Server(config).serve, [sock])
