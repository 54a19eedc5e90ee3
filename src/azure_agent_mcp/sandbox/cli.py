"""``azure-agent-mcp sandbox``: run the embedded Azure emulator until interrupted.

Prints the path of ``sandbox.json`` (one line, flushed) once the server answers, so scripts can
``read`` it and attach. Only the standard library is imported here; the server is imported in
the handler.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number (0-65535; 0 picks a free one)") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (0-65535; 0 picks a free one)")
    return value


def _lifetime(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of seconds") from None
    if not 60 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"{value} s is out of range: token lifetimes are 60 to 86400 seconds")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="run the embedded Azure sandbox (Entra, ARM, Key Vault over HTTPS) until interrupted",
        description="Serve a local Azure (Entra token service, ARM, Key Vault) on https://127.0.0.1:PORT with a CA "
        "generated at start. Prints the path of sandbox.json (endpoints, CA bundle, seeded users and service "
        "principal) and serves until SIGINT or SIGTERM.",
    )
    parser.add_argument("--port", type=_port, default=0, help="TCP port on 127.0.0.1 (default 0: a free port)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where to write sandbox.json and the TLS files (default: <state dir>/sandbox)")
    parser.add_argument("--token-lifetime", type=_lifetime, default=3600, metavar="SECONDS",
                        help="lifetime of issued access tokens (default 3600)")
    parser.set_defaults(handler=run_sandbox)


def run_sandbox(args: argparse.Namespace) -> int:
    from azure_agent_mcp.errors import CommandError
    from azure_agent_mcp.paths import state_dir
    from azure_agent_mcp.sandbox.server import Sandbox, SandboxError

    directory = args.state_dir if args.state_dir is not None else state_dir() / "sandbox"
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            sandbox = Sandbox(state_dir=directory, port=args.port, token_lifetime=args.token_lifetime).start()
        except (SandboxError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        try:
            print(sandbox.manifest_path, flush=True)
            print(f"sandbox: serving {sandbox.manifest['arm_endpoint']} (tenant {sandbox.manifest['tenant_id']}); "
                  "Ctrl+C to stop", file=sys.stderr, flush=True)
            while not stop.wait(0.5):
                if not sandbox.running:
                    raise CommandError("the sandbox server stopped unexpectedly")
        finally:
            sandbox.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
