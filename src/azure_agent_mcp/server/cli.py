"""``serve``, ``demo`` and ``config``: stdlib-only at import time, so ``--help`` and start-up stay fast."""

from __future__ import annotations

import argparse
import os
from typing import Any

CLIENTS = ("vscode", "claude", "copilot-cli")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 (no deadline) or a positive number of seconds, not {text!r}")
    return value


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return _seconds(raw)
    except argparse.ArgumentTypeError:
        return default


def register(subparsers: Any) -> None:
    from azure_agent_mcp.identity.cli import add_identity_arguments

    serve = subparsers.add_parser(
        "serve",
        help="run the MCP server (stdio by default)",
        description="Run the MCP server. Every Azure request passes the local policy first and is audited.",
    )
    add_server_arguments(serve)
    add_identity_arguments(serve)
    serve.set_defaults(handler=_serve)

    demo = subparsers.add_parser(
        "demo",
        help="walk through an agent's story against the embedded sandbox",
        description="Launch `serve --sandbox` over stdio with a real MCP client and print the transcript.",
    )
    demo.add_argument("scenario", nargs="?", choices=("azure", "devops"), default="azure",
                      help="azure (default): the ARM / Key Vault story; devops: the agent user in Azure DevOps")
    demo.add_argument("--sandbox", nargs="?", const="embedded", default="embedded", metavar="MANIFEST",
                      help="attach to a running sandbox (path of its sandbox.json); default: start one")
    demo.add_argument("--quiet", action="store_true", help="print only the verdict line")
    demo.set_defaults(handler=_demo)

    config = subparsers.add_parser(
        "config",
        help="print the snippet that registers this server with an MCP client",
        description="Print a configuration snippet for VS Code (.vscode/mcp.json), Claude Desktop / Claude Code, or the Copilot CLI.",
    )
    config.add_argument("client", choices=CLIENTS)
    config.add_argument("--sandbox", action="store_true", help="configure the server against the embedded sandbox")
    config.add_argument("--read-only", action="store_true", help="add --read-only to the server's arguments")
    config.set_defaults(handler=_config)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (0 = ephemeral; default 8765)")
    parser.add_argument("--allow-remote", action="store_true", help="allow binding HTTP to a non-loopback address")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="another Host header value the HTTP server answers (repeatable; the bind address, and localhost on "
        "loopback, are always allowed); every other Host is refused (DNS-rebinding protection)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser Origin the HTTP server accepts, e.g. http://localhost:6274 (repeatable)",
    )
    auth = parser.add_argument_group(
        "authentication (HTTP)",
        "Over HTTP the server is an OAuth resource server for its own Entra app: callers send Entra tokens for "
        "its scope, and it calls Azure on their behalf (OBO). With --sandbox these default from the manifest's "
        "mcp_server_app.",
    )
    auth.add_argument("--auth-client-id", metavar="APP_ID", help="the MCP server's Entra app (client) id")
    auth.add_argument("--auth-app-id-uri", metavar="URI", help="its application id URI (default api://<client id>)")
    auth.add_argument("--auth-scope", metavar="NAME", help="the delegated scope callers need (default user_impersonation)")
    auth.add_argument("--auth-secret-env", metavar="NAME",
                      help="environment variable holding the server app's client secret (for on-behalf-of)")
    auth.add_argument("--auth-certificate", metavar="PEM",
                      help="the server app's certificate: PEM with private key and certificate (password in env "
                      "AZURE_AGENT_MCP_AUTH_CERTIFICATE_PASSWORD)")
    auth.add_argument("--auth-assertion-file", metavar="PATH",
                      help="workload identity federation: a token file the server app trusts, re-read for every exchange")
    auth.add_argument("--auth-resource-url", metavar="URL",
                      help="the MCP endpoint's public URL as clients see it (default http://<host>:<port>/mcp); the "
                      "protected resource metadata names it")
    auth.add_argument("--dangerously-allow-anonymous", action="store_true",
                      help="serve HTTP without authentication, acting with the server's own credential for everyone "
                      "(loopback binds only)")
    parser.add_argument(
        "--policy",
        default=os.environ.get("AZURE_AGENT_MCP_POLICY") or "read-only",
        help="profile (read-only, no-secrets, unrestricted) or policy JSON file; env AZURE_AGENT_MCP_POLICY",
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        default=_env_flag("AZURE_AGENT_MCP_READ_ONLY"),
        help="narrow any policy to reads without secrets; env AZURE_AGENT_MCP_READ_ONLY",
    )
    parser.add_argument(
        "--audit-log",
        default=os.environ.get("AZURE_AGENT_MCP_AUDIT_LOG"),
        help="audit log path (JSON lines); env AZURE_AGENT_MCP_AUDIT_LOG; default <state dir>/audit.jsonl",
    )
    parser.add_argument(
        "--audit-retain",
        type=_retain,
        default=5,
        metavar="N",
        help="rotated audit segments to keep (default 5); each one dropped leaves a seal record in the chain",
    )
    parser.add_argument(
        "--audit-key",
        default=os.environ.get("AZURE_AGENT_MCP_AUDIT_KEY"),
        metavar="PATH",
        help="Ed25519 key (PEM) that signs audit checkpoints, created 0600 if missing; env AZURE_AGENT_MCP_AUDIT_KEY; "
        "default <state dir>/audit-signing-key.pem",
    )
    parser.add_argument(
        "--audit-anchor",
        default=os.environ.get("AZURE_AGENT_MCP_AUDIT_ANCHOR"),
        metavar="PATH",
        help="where signed checkpoints go (put it on another mount or in another user's directory); "
        "env AZURE_AGENT_MCP_AUDIT_ANCHOR; default <audit log>.anchor",
    )
    parser.add_argument(
        "--call-timeout",
        type=_seconds,
        default=_env_seconds("AZURE_AGENT_MCP_CALL_TIMEOUT", 60.0),
        metavar="SECONDS",
        help="deadline of each tool call, retries, token requests and polling included (default 60; 0 = none); "
        "env AZURE_AGENT_MCP_CALL_TIMEOUT",
    )
    parser.add_argument(
        "--session-idle",
        type=_duration,
        default=os.environ.get("AZURE_AGENT_MCP_SESSION_IDLE") or "30m",
        metavar="DURATION",
        help="HTTP: evict an agent session (its credential, clients, MCP mappings) unused this long, such as 30m, "
        "2h, 90s; 0 = never (default 30m); env AZURE_AGENT_MCP_SESSION_IDLE",
    )
    parser.add_argument(
        "--max-sessions",
        type=_positive,
        default=os.environ.get("AZURE_AGENT_MCP_MAX_SESSIONS") or 1000,
        metavar="N",
        help="HTTP: agent sessions held at once; past it the least recently used idle one is evicted, and a new "
        "session is refused (503) while every one has a call in flight (default 1000); env AZURE_AGENT_MCP_MAX_SESSIONS",
    )
    parser.add_argument(
        "--devops-organization",
        type=_devops_organization,
        default=os.environ.get("AZURE_AGENT_MCP_DEVOPS_ORGANIZATION") or None,
        metavar="ORG",
        help="the Azure DevOps organization the devops_* tools work in (https://dev.azure.com/ORG); without it they "
        "are not offered; env AZURE_AGENT_MCP_DEVOPS_ORGANIZATION",
    )
    parser.add_argument(
        "--dangerously-skip-confirmation",
        action="store_true",
        help="treat every Confirm decision as approved (no elicitation)",
    )


def _duration(text: str) -> str:
    from azure_agent_mcp.identity.errors import InvalidDurationError
    from azure_agent_mcp.identity.session import parse_duration

    try:
        parse_duration(text)
    except InvalidDurationError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("session TTL", "duration")) from None
    return text


def _devops_organization(text: str) -> str:
    from azure_agent_mcp.tools.devops_client import organization_name

    try:
        return organization_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str | int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _retain(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _serve(args: argparse.Namespace) -> int:
    from azure_agent_mcp.server.serve import serve

    return serve(args)


def _demo(args: argparse.Namespace) -> int:
    from azure_agent_mcp.server.demo import run_demo

    return run_demo(manifest=None if args.sandbox == "embedded" else args.sandbox, quiet=args.quiet,
                    scenario=args.scenario)


def _config(args: argparse.Namespace) -> int:
    from azure_agent_mcp.server.clientconfig import snippet

    print(snippet(args.client, sandbox=args.sandbox, read_only=args.read_only))
    return 0
