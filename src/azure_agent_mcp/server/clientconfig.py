"""Snippets that register the server with VS Code, Claude (Desktop / Code) and the Copilot CLI."""

from __future__ import annotations

import json


def server_args(sandbox: bool, read_only: bool) -> list[str]:
    args = ["serve"]
    if sandbox:
        args.append("--sandbox")
    if read_only:
        args.append("--read-only")
    return args


def snippet(client: str, *, sandbox: bool = False, read_only: bool = False) -> str:
    args = server_args(sandbox, read_only)
    if client == "vscode":
        # .vscode/mcp.json: "servers", each with a type.
        document = {"servers": {"azure-agent-mcp": {"type": "stdio", "command": "azure-agent-mcp", "args": args}}}
    elif client == "claude":
        # claude_desktop_config.json and Claude Code's .mcp.json share the "mcpServers" shape.
        document = {"mcpServers": {"azure-agent-mcp": {"command": "azure-agent-mcp", "args": args}}}
    elif client == "copilot-cli":
        # ~/.copilot/mcp-config.json
        document = {
            "mcpServers": {
                "azure-agent-mcp": {"type": "local", "command": "azure-agent-mcp", "args": args, "tools": ["*"]}
            }
        }
    else:
        raise ValueError(f"unknown client {client!r}: choose vscode, claude or copilot-cli")
    return json.dumps(document, indent=2)
