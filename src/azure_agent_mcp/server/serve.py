"""Start-up of ``serve``: policy first (fail closed), then identity, audit, runtime and transport.

Over stdio nothing but protocol messages may reach stdout, so every human-readable line goes to
stderr and the Python logging root is pointed there before anything else is imported.

Shutdown (``lifecycle``): SIGINT and SIGTERM are taken before anything else starts, on either
transport; in-flight calls get ``SHUTDOWN_GRACE`` seconds, the rest are cancelled and recorded,
the audit log is closed, buffered spans and logs are exported (``telemetry.shutdown``, bounded) and
``serve`` returns 0. stdin EOF ends a stdio server the same way.
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
    from azure_agent_mcp.server.lifecycle import ShutdownRequest

    shutdown = ShutdownRequest()
    shutdown.install()  # from here on SIGINT / SIGTERM mean "shut down cleanly, exit 0"
    try:
        return _serve(args, shutdown)
    finally:
        shutdown.restore()


def _serve(args: argparse.Namespace, shutdown) -> int:
    if args.transport == "http" and not is_loopback(args.host) and not args.allow_remote:
        raise CommandError(
            f"refusing to serve HTTP on non-loopback address {args.host}: pass --allow-remote to expose the "
            "server (callers then sign in with Entra; see --auth-client-id)"
        )
    if args.transport == "http" and getattr(args, "dangerously_allow_anonymous", False) and not is_loopback(args.host):
        from azure_agent_mcp.server.auth_config import AuthConfigError

        raise AuthConfigError(
            f"--dangerously-allow-anonymous is for loopback binds only, not {args.host}: remote callers must "
            "authenticate (drop the flag and configure --auth-client-id)"
        )
    call_timeout = getattr(args, "call_timeout", None)
    if call_timeout is not None and call_timeout < 0:
        raise CommandError(f"--call-timeout must be 0 (no deadline) or a number of seconds, not {call_timeout:g}")
    policy = load_active_policy(args.policy, args.read_only)

    from azure_agent_mcp import telemetry
    from azure_agent_mcp.identity.cli import open_identity

    try:
        running = telemetry.start()
        audit = open_audit(args)
    except BaseException:
        telemetry.shutdown()
        raise
    listener = running.audit_listener() if running is not None else None
    if listener is not None and isinstance(getattr(audit, "listeners", None), list):
        audit.listeners.append(listener)
    try:
        anonymous = args.transport != "http" or getattr(args, "dangerously_allow_anonymous", False)
        with open_identity(args, lazy_credential=True, expected_principal=policy.expected_principal,
                           own_credential=anonymous, audit=audit) as identity:
            from azure_agent_mcp.server.auth_config import auth_config

            auth = auth_config(args, identity.env)
            runtime = _runtime(args, identity, policy, audit, auth)
            try:
                if shutdown.requested:
                    return 0
                if args.transport == "stdio":
                    _run_stdio(runtime, shutdown, call_timeout)
                else:
                    _run_http(runtime, args.host, args.port, tuple(args.allow_host), tuple(args.allow_origin),
                              shutdown=shutdown, call_timeout=call_timeout, auth=auth)
            finally:
                import threading

                hurry = threading.Event()  # a signal during the close: stop waiting on Azure (access.ending)
                shutdown.on_signal(hurry.set)
                runtime.close(hurry=hurry)
    finally:
        close_audit(audit)
        telemetry.shutdown()  # after the audit's last records: their log records leave too
    return 0


def close_audit(audit) -> None:
    """The audit's final act (a closing checkpoint, once the store writes them); a no-op for a store without close()."""
    close = getattr(audit, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception as exc:  # the process is ending either way: say so, do not hide the exit status
        logging.getLogger("azure_agent_mcp.server").warning("closing the audit log failed: %s", type(exc).__name__)


def _runtime(args: argparse.Namespace, identity, policy, audit, auth=None):
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
            session_idle=getattr(args, "session_idle", "30m"),
            max_sessions=int(getattr(args, "max_sessions", 1000)),
            devops_organization=getattr(args, "devops_organization", None) or None,
        ),
        default_credential=identity.credential,
        caller_credential_factory=obo_credentials(auth, args.session_claims) if auth is not None else None,
    )


def obo_credentials(auth, claims_profile: str):
    """(agent session, the caller's newest token) -> that session's on-behalf-of credential.

    The server app's MSAL state is built on the first call, not at start-up.
    """
    shared: dict[str, object] = {}

    def credential_for(session, assertion):
        from azure_agent_mcp.identity.credential import AgentCredential
        from azure_agent_mcp.identity.obo import OboProvider, ServerApp, server_app_credential

        app = shared.get("app")
        if app is None:
            app = shared.setdefault("app", ServerApp(
                authority_host=auth.authority_host, tenant_id=auth.tenant_id, client_id=auth.client_id,
                credential=server_app_credential(auth.credential), ca_bundle=auth.ca_bundle,
            ))
        return AgentCredential(OboProvider(app, session, assertion, claims_profile=claims_profile), session)

    return credential_for


def _call_timeout(value: float | None) -> float | None:
    from azure_agent_mcp.callcontext import DEFAULT_CALL_TIMEOUT

    if value is None:
        return DEFAULT_CALL_TIMEOUT
    return value or None  # 0: no deadline


def _run_stdio(runtime, shutdown=None, call_timeout: float | None = None) -> None:
    import anyio

    from azure_agent_mcp.server.app import build_server
    from azure_agent_mcp.server.stdio import run_stdio

    server = build_server(runtime, call_timeout=_call_timeout(call_timeout))
    anyio.run(run_stdio, server, shutdown)


def _run_http(runtime, host: str, port: int, allow_hosts: tuple[str, ...] = (), allow_origins: tuple[str, ...] = (),
              *, shutdown=None, call_timeout: float | None = None, auth=None) -> None:
    import anyio
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    from azure_agent_mcp.server.app import build_server
    from azure_agent_mcp.server.hosts import allowed_peers

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = listening_socket(host, port)
    bound_port = sock.getsockname()[1]
    peers = allowed_peers(host, bound_port, allow_hosts, allow_origins)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=list(peers.hosts), allowed_origins=list(peers.origins)
    )
    from azure_agent_mcp.server.http_gate import SessionGate

    server = build_server(runtime, call_timeout=_call_timeout(call_timeout))
    # MCP sessions idle out with their agent sessions: what the SDK keeps per MCP session goes too
    idle = runtime.sessions.idle_seconds
    app = SessionGate(server.streamable_http_app(host=host, transport_security=security, session_idle_timeout=idle),
                      runtime)
    runtime.start()
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    if auth is not None:
        from azure_agent_mcp.server.resource_server import ResourceServer

        app = ResourceServer(app, config=auth, resource_url=auth.resource_url or f"http://{shown}:{bound_port}/mcp",
                             runtime=runtime)
    from azure_agent_mcp.server.health import health_app

    # outermost: a probe carries no token and may name the pod's address as its Host
    app = health_app(app, draining=lambda: shutdown is not None and shutdown.requested, audit=runtime.audit)
    # Listen before saying so: a client that connects on reading the line is queued, not refused,
    # while uvicorn is still starting.
    sock.listen(2048)
    mode = (f" (callers sign in to Entra for {auth.scope})" if auth is not None
            else " WITHOUT authentication (--dangerously-allow-anonymous)")
    print(f"azure-agent-mcp: serving MCP over HTTP at http://{shown}:{bound_port}/mcp{mode}", file=sys.stderr, flush=True)
    # Open streams (a client's GET event stream) get one second once the calls are drained.
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    anyio.run(_serve_http, _QuietSignalsServer(config), [sock], server.calls, shutdown,
              backend_options={"use_uvloop": _uvloop_available()})


def _uvloop_available() -> bool:
    """uvloop (libuv, C) runs the HTTP server's event loop when installed: asyncio's own loop was about a
    tenth of the server's CPU per tool call."""
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def listening_socket(host: str, port: int) -> socket.socket:
    """The HTTP listener, listening already: a client that connects as soon as it reads the URL
    line is queued until uvicorn accepts, not refused (uvicorn's create_server listens again, harmlessly).

    Made with IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets that say TCP,
    and without it every answer written in two parts waits out the client's delayed ACK (about
    40 ms a request, whatever the request).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


class _QuietSignalsServer:
    """uvicorn's Server without its signal handling: uvicorn re-raises a captured SIGTERM after its
    shutdown (exit status -15) and knows nothing of our calls; ``ShutdownRequest`` drains them first."""

    def __new__(cls, config):  # a subclass built on first use: uvicorn is imported with the HTTP transport
        import contextlib

        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):  # type: ignore[override]
                yield

        return Server(config)


async def _serve_http(server, sockets, registry, shutdown) -> None:
    import anyio

    stop = anyio.Event()
    second = anyio.Event()

    def on_signal(count: int) -> None:
        if count > 1:
            second.set()
            server.force_exit = count > 2  # a third signal: stop waiting for anything
        stop.set()

    async def on_stop() -> None:
        await stop.wait()
        if registry is not None:
            await registry.drain(second)  # new calls are refused meanwhile; the listener stays up to answer them
        server.should_exit = True

    async with anyio.create_task_group() as tasks:
        with shutdown.watch(on_signal) if shutdown is not None else _no_watch():
            tasks.start_soon(on_stop)
            await server.serve(sockets)
            tasks.cancel_scope.cancel()


class _no_watch:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
