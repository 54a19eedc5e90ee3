"""The `azure-agent-mcp` command.

Each area registers its own sub-commands (``<area>/cli.py``: ``register(subparsers)``) and keeps
its heavy imports inside the handlers, so that ``serve`` over stdio starts fast.
Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 policy deny, 4 policy confirm.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from azure_agent_mcp import __version__
from azure_agent_mcp.errors import CommandError

__all__ = ["CommandError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from azure_agent_mcp.identity import cli as identity_cli
    from azure_agent_mcp.policy import cli as policy_cli
    from azure_agent_mcp.sandbox import cli as sandbox_cli
    from azure_agent_mcp.server import cli as server_cli

    parser = argparse.ArgumentParser(
        prog="azure-agent-mcp",
        description="MCP server giving AI agents Azure tools under an agent session and a local RBAC-shaped policy.",
    )
    parser.add_argument("--version", action="version", version=f"azure-agent-mcp {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    server_cli.register(subparsers)
    identity_cli.register(subparsers)
    policy_cli.register(subparsers)
    sandbox_cli.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except CommandError as exc:
        print(f"azure-agent-mcp {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return int(result or 0)
