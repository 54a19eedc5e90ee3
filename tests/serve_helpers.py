"""Driving `azure-agent-mcp serve` as a subprocess against the session sandbox, for the audit's
fault, crash and tamper tests: JSON-RPC lines over stdio by hand (sync, so a fault can be made
between two calls with plain file-system calls), what the sandbox received, what the audit says,
`audit verify --json`, and real mounts (a small tmpfs, a read-only file system over a directory).
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mounts import run, tmpfs
from server_helpers import audit_records

SERVE = [sys.executable, "-m", "azure_agent_mcp", "serve"]
PROTOCOL = "2025-06-18"


def serve_env(state: Path, **extra: str) -> dict[str, str]:
    """The environment of a server subprocess: its own state dir (signing key), no ambient audit settings."""
    env = dict(os.environ)
    env["AZURE_AGENT_MCP_STATE_DIR"] = str(state)
    for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG"):
        env.pop(key, None)
    for key in [k for k in env if k.startswith("OTEL_")]:  # telemetry only where a test asks for it
        env.pop(key)
    env.update(extra)
    return env


def serve_command(sandbox: Any, audit: Path, *extra: str) -> list[str]:
    return [*SERVE, "--sandbox", str(sandbox.manifest_path), "--audit-log", str(audit), *extra]


def new_session(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


class StdioServe:
    """One `serve` over stdio, spoken to in JSON-RPC lines; ``close()`` ends it with EOF (a clean stop)."""

    def __init__(self, sandbox: Any, audit: Path, state: Path, *extra: str, session: str | None = None,
                 env: dict[str, str] | None = None, python: tuple[str, ...] = ()) -> None:
        self.audit = audit
        self.session = session or new_session("serve")
        self.stderr_path = state.parent / f"serve-{self.session}.stderr"
        state.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [SERVE[0], *python, *SERVE[1:], *serve_command(sandbox, audit, *extra)[len(SERVE):]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=serve_env(state, COPILOT_AGENT_SESSION_ID=self.session, **(env or {})),
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self._next_id = 0
        answer = self.request("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                             "clientInfo": {"name": "audit-faults", "version": "0"}})
        assert "result" in answer, answer
        self.notify("notifications/initialized")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def stderr_bytes(self) -> bytes:
        """Everything the server wrote to stderr so far (for greps of secrets)."""
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_bytes()

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        self._send({"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})})

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        self._next_id += 1
        wanted = self._next_id
        self._send({"jsonrpc": "2.0", "id": wanted, "method": method, **({"params": params} if params else {})})
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"serve did not answer {method} within {timeout} s; stderr: {self.stderr()}") from None
            if not line:
                raise AssertionError(f"serve closed stdout before answering {method}; stderr: {self.stderr()}")
            message = json.loads(line)
            if message.get("id") == wanted:
                return message

    def call(self, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """The tools/call result (content, structuredContent, isError)."""
        answer = self.request("tools/call", {"name": tool, "arguments": arguments or {}})
        assert "result" in answer, f"tools/call {tool} answered a JSON-RPC error, not a tool result: {answer}"
        return answer["result"]

    def tools(self) -> set[str]:
        return {tool["name"] for tool in self.request("tools/list")["result"]["tools"]}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-2000:]

    def close(self, timeout: float = 30) -> int:
        """EOF on stdin: the server closes the audit (final checkpoint) and exits."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"serve did not exit on EOF within {timeout} s") from None
        finally:
            self._stderr.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._stderr.close()

    def __enter__(self) -> StdioServe:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            try:
                self.close()
            except AssertionError:
                pass
        elif not self._stderr.closed:
            self._stderr.close()


def error_of(result: dict[str, Any]) -> dict[str, Any]:
    return (result.get("structuredContent") or {}).get("error") or {}


def text_of(result: dict[str, Any]) -> str:
    return " ".join(part.get("text", "") for part in result.get("content") or [])


# -- what the sandbox received, what the audit says ------------------------------------------------


def last_seq(sandbox: Any) -> int:
    return sandbox.last_seq()


def sent(sandbox: Any, since: int, *, session: str | None = None, prefix: str | None = None) -> list[dict[str, Any]]:
    """ARM and Key Vault requests the sandbox received after ``since`` from one agent session (or a prefix)."""
    out = []
    for entry in sandbox.requests(since=since):
        if entry.get("kind") not in ("arm", "vault"):
            continue
        tagged = entry.get("token_session") or ""
        if (session is not None and tagged == session) or (prefix is not None and tagged.startswith(prefix)):
            out.append(entry)
    return out


def intents_by_correlation(audit: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for record in audit_records(audit, "intent"):
        found.setdefault(record.get("correlation_id"), []).append(record)
    return found


def unaudited(requests: list[dict[str, Any]], audit: Path) -> list[dict[str, Any]]:
    """The received requests with no intent record naming their correlation id, method and path as sent."""
    intents = intents_by_correlation(audit)
    missing = []
    for entry in requests:
        candidates = intents.get(entry.get("correlation_id"), [])
        if not any(i.get("method") == entry["method"] and i.get("path") == entry["raw_path"] for i in candidates):
            missing.append(entry)
    return missing


def tool_records(audit: Path, correlation: str) -> list[dict[str, Any]]:
    return [r for r in audit_records(audit, "tool") if r.get("correlation_id") == correlation]


def verify(path: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """`azure-agent-mcp audit verify --json PATH`: exit code and the JSON object."""
    done = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "audit", "verify", "--json", *extra, str(path)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout.strip(), f"audit verify printed nothing (exit {done.returncode}): {done.stderr}"
    return done.returncode, json.loads(done.stdout)


# -- real mounts ---------------------------------------------------------------------------------------


@contextmanager
def read_only_over(directory: Path) -> Iterator[Path]:
    """A read-only file system mounted over ``directory``: to every process, the path is now read-only.

    (Remounting the directory's own file system read-only is refused while the server holds files
    open for writing; shadowing the directory gives the server the same view.)
    """
    with tmpfs(directory, "1m"):
        done = run("mount", "-o", "remount,ro", str(directory))
        if done.returncode != 0:
            pytest.skip(f"cannot remount a tmpfs read-only here ({done.stderr.strip()})")
        yield directory


def fill_up(directory: Path) -> Path:
    """A file that takes every free block of ``directory``'s file system (ENOSPC from then on)."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as handle:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    handle.write(chunk[:size])
                except OSError:
                    break
    return filler


class StderrPump:
    """Reads a server's stderr to its end on a thread of its own, so a chatty server never blocks on a
    full pipe; keeps every byte (for greps of secrets) and notes the first MCP URL the server announces."""

    URL = re.compile(rb"(http://127\.0\.0\.1:\d+/mcp)")

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.data = bytearray()
        self.url = ""
        self._found = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.data.extend(raw)
            match = self.URL.search(raw)
            if match and not self.url:
                self.url = match.group(1).decode()
                self._found.set()
        self._found.set()  # stderr closed: the server is gone

    def wait_for_url(self, timeout: float) -> str:
        """The announced URL, or "" when the server exited or stayed silent for ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._found.wait(0.1) and time.monotonic() < deadline:
            pass
        return self.url

    def text(self, last: int | None = None) -> str:
        text = bytes(self.data).decode(errors="replace")
        return text[-last:] if last else text


class HttpServe:
    """One `serve --transport http --port 0` on loopback; ``url`` is its MCP endpoint."""

    def __init__(self, sandbox: Any, audit: Path, state: Path, *extra: str, timeout: float = 30,
                 env: dict[str, str] | None = None) -> None:
        self.audit = audit
        self.proc = subprocess.Popen(
            serve_command(sandbox, audit, "--transport", "http", "--port", "0", "--dangerously-allow-anonymous", *extra),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=serve_env(state, **(env or {})),
        )
        self.stderr_pump = StderrPump(self.proc)
        self.url = self.stderr_pump.wait_for_url(timeout)
        if not self.url:
            self.kill()
            raise AssertionError(f"serve --transport http did not start: {self.stderr_pump.text(2000)}")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM: the server drains, closes the audit and exits 0."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def kill(self) -> int:
        """SIGKILL: no handler runs, no close, no final checkpoint."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(timeout=10)
