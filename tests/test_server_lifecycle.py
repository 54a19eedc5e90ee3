"""Every call ends in bounded time with a clear answer and one record, whatever ends it (issue 10, items 5-6).

Each test runs ``serve`` as a subprocess against the session sandbox (its fault injection stalls,
drops and fails requests) and asserts what can be seen from outside: exit codes, the audit
records, the answers, what the sandbox received, and the server's stderr.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from server_helpers import audit_records

pytestmark = pytest.mark.anyio

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
GROUPS = f"/subscriptions/{SUB_A}/resourcegroups"
GROUPS_PATTERN = r"/subscriptions/5a1db0c5-a000-4000-a000-00000000000a/resourcegroups$"
TOKEN_PATTERN = r"/oauth2/v2\.0/token$"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["AZURE_AGENT_MCP_STATE_DIR"] = str(tmp_path / "state")
    for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG",
                "AZURE_AGENT_MCP_CALL_TIMEOUT", "COPILOT_AGENT_SESSION_ID"):
        env.pop(key, None)
    return env


def _serve_args(manifest: Path, audit: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "azure_agent_mcp", "serve", "--sandbox", str(manifest), "--audit-log", str(audit),
            *extra]


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _tool_records(audit: Path, tool: str | None = None) -> list[dict[str, Any]]:
    if not audit.exists():
        return []
    return [r for r in audit_records(audit, "tool") if tool is None or r.get("tool") == tool]


def _request_records(audit: Path) -> list[dict[str, Any]]:
    """One per attempt: the guard's refusals (not sent) and intents (sent, before they were)."""
    if not audit.exists():
        return []
    return [r for r in audit_records(audit) if r.get("kind") in ("refused", "intent")]


class RawStdio:
    """``serve`` over stdio driven line by line, so a test can signal it or close its stdin mid-call."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env)
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self._next_id = 1

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            if line.strip():
                self.messages.put(json.loads(line))

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line.decode("utf-8", "replace"))

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def send(self, message: dict[str, Any]) -> None:
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        request_id = self._next_id
        self._next_id += 1
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, **({"params": params} if params else {})})
        return request_id

    def call(self, tool: str, arguments: dict[str, Any] | None = None) -> int:
        return self.request("tools/call", {"name": tool, "arguments": arguments or {}})

    def answer(self, request_id: int, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no answer to request {request_id}; stderr: {self.stderr}")
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if message.get("id") == request_id:
                return message

    def initialize(self) -> None:
        first = self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                            "clientInfo": {"name": "lifecycle-test", "version": "0"}})
        assert "result" in self.answer(first)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def exit_code(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _error(answer: dict[str, Any]) -> dict[str, Any]:
    return (answer.get("result") or {}).get("structuredContent", {}).get("error", {})


@pytest.fixture
def stall(fresh_sandbox_state):
    """Add a latency fault; at teardown, wait until every request it stalled has been answered, so a
    late answer never lands in the next test's window of the sandbox log."""
    sandbox = fresh_sandbox_state
    added: list[tuple[str, int, int, int]] = []

    def add(pattern: str, latency_ms: int, count: int = 1) -> None:
        added.append((pattern, count, latency_ms, sandbox.last_seq()))
        sandbox.add_fault(pattern, latency_ms=latency_ms, count=count)

    yield add
    faults = sandbox._admin("GET", "/faults")["value"]
    for pattern, count, latency_ms, since in added:
        remaining = next((f["remaining"] for f in faults if f["path"] == pattern and f["latency_ms"] == latency_ms), 0)
        stalled = count - remaining

        def answered() -> bool:
            entries = [e for e in sandbox.requests(since=since) if re.search(pattern, e["path"], re.I)]
            return len(entries) >= stalled

        _wait_for(answered, latency_ms / 1000 + 10, f"the requests stalled by {pattern}")


@pytest.fixture
def stdio_server(fresh_sandbox_state, tmp_path):
    started: list[RawStdio] = []

    def start(*extra: str, manifest: Path | None = None) -> RawStdio:
        audit = tmp_path / "audit.jsonl"
        server = RawStdio(_serve_args(manifest or fresh_sandbox_state.manifest_path, audit, *extra), _env(tmp_path))
        started.append(server)
        server.initialize()
        return server

    yield start
    for server in started:
        server.kill()


# -- signals and EOF on stdio --------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stdio_signal_cancels_a_stalled_call_after_the_grace_and_exits_0(stdio_server, fresh_sandbox_state, stall,
                                                                          tmp_path, signum):
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    server = stdio_server()
    warm = server.call("subscription_list")  # signs in, so the slow call below is only the stalled ARM request
    assert not server.answer(warm)["result"].get("isError")
    stall(GROUPS_PATTERN, 4000)
    slow = server.call("group_list", {"subscription": SUB_A})
    time.sleep(0.5)
    signalled = time.monotonic()
    server.proc.send_signal(signum)
    time.sleep(0.3)
    since = sandbox.last_seq()
    late = server.call("subscription_list")  # arrives during the drain: refused, recorded, nothing sent
    refused = server.answer(late, timeout=2)
    assert _error(refused)["code"] == "ServerShuttingDown"
    answer = server.answer(slow, timeout=10)
    assert server.exit_code(timeout=10) == 0, server.stderr
    took = time.monotonic() - signalled
    assert 1.8 <= took < 6, took  # the 2 s grace, then cancelled: not the 4 s stall
    assert _error(answer)["code"] == "ServerShuttingDown"
    [record] = _tool_records(audit, "group_list")
    assert record["status"] == "cancelled" and record["cancelled_by"] == "shutdown"
    assert record["correlation_id"] and record["decision"] == "allow"
    assert _tool_records(audit, "subscription_list")[-1]["error_code"] == "ServerShuttingDown"
    assert not [e for e in sandbox.requests(kind="arm", since=since) if e["path"] == "/subscriptions"]
    assert "Traceback" not in server.stderr


def test_stdio_sigint_lets_a_call_finish_within_the_grace(stdio_server, stall, tmp_path):
    audit = tmp_path / "audit.jsonl"
    server = stdio_server()
    warm = server.call("subscription_list")
    server.answer(warm)
    stall(GROUPS_PATTERN, 800)
    call = server.call("group_list", {"subscription": SUB_A})
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGINT)
    answer = server.answer(call, timeout=10)
    assert server.exit_code(timeout=10) == 0, server.stderr
    assert not answer["result"].get("isError"), answer
    assert answer["result"]["structuredContent"]["items"]
    [record] = _tool_records(audit, "group_list")
    assert record["status"] == "ok"


def test_stdio_signal_while_idle_exits_at_once_and_closes_the_audit(fresh_sandbox_state, tmp_path):
    # The audit store's close() writes its final checkpoint; this store has none yet, so give it one
    # that leaves a mark (sitecustomize runs in the server's interpreter before serve starts).
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    marker = tmp_path / "closed.txt"
    (hooks / "sitecustomize.py").write_text(
        "import azure_agent_mcp.policy.audit as audit\n"
        "def close(self):\n"
        f"    open({str(marker)!r}, 'a').write('closed\\n')\n"
        "audit.AuditLog.close = close\n"
    )
    env = _env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), *filter(None, [env.get("PYTHONPATH")])])
    server = RawStdio(_serve_args(fresh_sandbox_state.manifest_path, tmp_path / "audit.jsonl"), env)
    try:
        server.initialize()
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.exit_code(timeout=10) == 0, server.stderr
        assert time.monotonic() - started < 3
        assert marker.read_text() == "closed\n"  # once, at shutdown
    finally:
        server.kill()


def test_stdin_eof_cancels_the_call_and_sends_nothing_more(stdio_server, fresh_sandbox_state, stall, tmp_path):
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    server = stdio_server()
    storage = server.call("storage_account_list", {})
    account = server.answer(storage)["result"]["structuredContent"]["items"][0]["id"]
    # resource_get looks the api-version up first (stalled here), then reads the resource
    stall(r"/providers/Microsoft\.Storage$", 2500)
    since = sandbox.last_seq()
    server.call("resource_get", {"resource_id": account})
    time.sleep(0.6)
    closed = time.monotonic()
    server.proc.stdin.close()
    assert server.exit_code(timeout=10) == 0, server.stderr
    assert time.monotonic() - closed < 3  # not waiting for the stalled request
    [record] = _tool_records(audit, "resource_get")
    assert record["status"] == "cancelled" and record["cancelled_by"] == "stdin-closed"
    # the stalled provider request completes on the sandbox; the resource read after it is never sent
    _wait_for(lambda: any("/providers/Microsoft.Storage" in e["path"]
                          for e in sandbox.requests(kind="arm", since=since)), 10, "the stalled request")
    time.sleep(0.5)
    paths = [e["path"] for e in sandbox.requests(kind="arm", since=since)]
    assert not any(p.lower() == account.lower() for p in paths), paths




# -- cancellation by the client ----------------------------------------------------------------------


async def _async_wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await anyio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_client_cancel_records_cancelled_and_sends_no_further_request(fresh_sandbox_state, stall, tmp_path):
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    args = _serve_args(sandbox.manifest_path, audit)
    params = StdioServerParameters(command=args[0], args=args[1:], env=_env(tmp_path))
    async with Client(params) as client:
        storage = await client.call_tool("storage_account_list", {})
        account = storage.structured_content["items"][0]["id"]
        # resource_get asks ARM for the provider's api-versions (stalled here), then reads the resource
        stall(r"/providers/Microsoft\.Storage$", 2500)
        since = sandbox.last_seq()
        with anyio.move_on_after(0.8) as waited:  # the client gives up: it sends notifications/cancelled
            await client.call_tool("resource_get", {"resource_id": account})
        assert waited.cancelled_caught, "the stalled call answered"
        record = await _async_wait_for(lambda: _tool_records(audit, "resource_get"), 3, "the cancelled call's record")
        assert record[0]["status"] == "cancelled" and record[0]["cancelled_by"] == "client"
        assert record[0]["duration_ms"] < 2500  # written when the call was cancelled, not when Azure answered

        # the request in flight finishes; the next one of the cancelled call is refused, recorded, never sent
        refused = await _async_wait_for(
            lambda: [r for r in _request_records(audit) if r.get("decision") == "cancelled"], 10, "the refused request")
        assert refused[0]["status"] == "not-sent"
        assert refused[0]["path"].lower() == account.lower()
        assert refused[0]["correlation_id"] == record[0]["correlation_id"]
        seen = [e["path"] for e in sandbox.requests(kind="arm", since=since)]
        assert any(p.endswith("/providers/Microsoft.Storage") for p in seen), seen
        assert not any(p.lower() == account.lower() for p in seen), seen

        # and the server goes on serving
        again = await client.call_tool("resource_get", {"resource_id": account, "api_version": "2023-05-01"})
        assert not again.is_error, again.content


# -- bounded failures: deadline, network, Entra, throttling -----------------------------------------------


def _stderr_line(server: RawStdio, code: str, correlation_id: str) -> str:
    def find() -> str | None:
        for line in server.stderr_lines:
            if f"code={code}" in line and f"correlation_id={correlation_id}" in line:
                return line
        return None

    return _wait_for(find, 5, f"the stderr line of the {code} call")


def _no_secrets_in(text: str) -> None:
    assert "eyJ" not in text  # no JWT (header or payload) anywhere
    assert "Bearer" not in text and "client_secret" not in text and "refresh_token" not in text


def test_call_timeout_bounds_a_stalled_arm_and_logs_one_line(stdio_server, fresh_sandbox_state, stall, tmp_path):
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    server = stdio_server("--call-timeout", "2")
    server.answer(server.call("subscription_list"))
    stall(GROUPS_PATTERN, 3500, count=5)
    started = time.monotonic()
    answer = server.answer(server.call("group_list", {"subscription": SUB_A}), timeout=20)
    took = time.monotonic() - started
    assert 1.8 <= took < 4.5, took  # the deadline, not the stall and not three retries of it
    error = _error(answer)
    assert error["code"] == "DeadlineExceeded", error
    arm = sandbox.manifest["arm_endpoint"]
    assert error["endpoint"] == arm and arm in error["message"] and "2 s" in error["message"]
    assert error["cause"] == "timeout"
    [record] = _tool_records(audit, "group_list")
    assert record["status"] == "error" and record["error_code"] == "DeadlineExceeded"
    assert error["correlation_id"] == record["correlation_id"]  # the agent can quote it
    attempts = [r for r in _request_records(audit) if r.get("tool") == "group_list"]
    assert len([r for r in attempts if r.get("status") != "not-sent"]) <= 1, attempts  # no retry past the deadline
    line = _stderr_line(server, "DeadlineExceeded", record["correlation_id"])
    assert "tool call failed: tool=group_list" in line and f"endpoint={arm}" in line and "cause=timeout" in line
    _no_secrets_in(server.stderr)


def test_call_timeout_bounds_long_running_operation_polling(stdio_server, fresh_sandbox_state, stall, tmp_path):
    sandbox = fresh_sandbox_state
    server = stdio_server("--call-timeout", "3", "--policy", "unrestricted", "--dangerously-skip-confirmation")
    server.answer(server.call("subscription_list"))
    since = sandbox.last_seq()
    stall(r"/operationresults/", 3500, count=10)  # the delete's status does not come back in time
    started = time.monotonic()
    answer = server.answer(server.call("resource_delete",
                                       {"resource_id": f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-network"}),
                           timeout=20)
    assert time.monotonic() - started < 5.5
    assert _error(answer)["code"] == "DeadlineExceeded", answer
    sent = sandbox.requests(kind="arm", since=since)
    assert [e["status"] for e in sent if e["method"] == "DELETE"] == [202]  # the delete went out; its poll stalled


class _PlainTcp:
    """A loopback listener that answers every connection in plain text: a TLS client fails its handshake."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_network_failures_name_the_endpoint_and_the_cause(stdio_server, fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    refusing = socket.socket()  # bound, never listening: connections to it are refused
    refusing.bind(("127.0.0.1", 0))
    plain = _PlainTcp()
    try:
        manifest = json.loads(sandbox.manifest_path.read_text())
        arm = f"https://127.0.0.1:{refusing.getsockname()[1]}"
        vaults = f"https://127.0.0.1:{plain.port}"
        manifest["arm_endpoint"] = arm
        manifest["keyvault_endpoint"] = vaults + "/vaults/{vault}"
        moved = tmp_path / "moved" / "sandbox.json"
        moved.parent.mkdir()
        moved.write_text(json.dumps(manifest))
        server = stdio_server(manifest=moved)

        refused = _error(server.answer(server.call("group_list", {"subscription": SUB_A})))
        assert refused["code"] == "NetworkError" and refused["cause"] == "refused", refused
        assert refused["endpoint"] == arm and f"ARM at {arm}" in refused["message"]
        assert "refused" in refused["message"] and "/resourcegroups" in refused["message"]

        tls = _error(server.answer(server.call("keyvault_secret_list", {"vault": "kv-sandbox-prod"})))
        assert tls["code"] == "NetworkError" and tls["cause"] == "tls", tls
        assert tls["endpoint"] == vaults and f"Key Vault at {vaults}" in tls["message"]
        assert "TLS" in tls["message"]

        records = {r["tool"]: r for r in _tool_records(audit)}
        for tool, cause in (("group_list", "refused"), ("keyvault_secret_list", "tls")):
            assert records[tool]["error_code"] == "NetworkError"
            line = _stderr_line(server, "NetworkError", records[tool]["correlation_id"])
            assert f"cause={cause}" in line and f"tool={tool}" in line
        assert "see the server's stderr log" not in json.dumps([refused, tls])
        _no_secrets_in(server.stderr)
    finally:
        refusing.close()
        plain.close()


def test_a_reset_connection_names_the_endpoint(stdio_server, fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    server = stdio_server()
    server.answer(server.call("subscription_list"))
    since = sandbox.last_seq()
    sandbox.add_fault(GROUPS_PATTERN, drop=True, count=10)
    error = _error(server.answer(server.call("group_list", {"subscription": SUB_A})))
    assert error["code"] == "NetworkError" and error["cause"] == "reset", error
    arm = sandbox.manifest["arm_endpoint"]
    assert error["endpoint"] == arm and f"ARM at {arm}" in error["message"] and "reset" in error["message"]
    dropped = [e for e in sandbox.requests(kind="arm", since=since) if e.get("dropped")]
    assert len(dropped) == 4  # the first attempt and azure-core's three retries, each cut by the sandbox


def test_entra_outage_answers_token_service_unavailable_with_the_delay(stdio_server, fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    server = stdio_server()
    since = sandbox.last_seq()
    sandbox.add_fault(TOKEN_PATTERN, status=503, count=2)  # no Retry-After: MSAL holds the account for 60 s
    first = _error(server.answer(server.call("group_list", {"subscription": SUB_A})))
    assert first["code"] == "TokenServiceUnavailable", first
    assert first["status"] == 503 and 55 <= first["retry_after"] <= 60
    assert first["message"].startswith("Token service unavailable") and f"retry in {first['retry_after']} s" in first["message"]
    tokens = sandbox.requests(kind="token", since=since)
    assert [t["status"] for t in tokens] == [503, 503]  # one quick retry, then the answer
    # while MSAL holds requests back, the next call answers at once, with the time left, and asks Entra nothing
    since = sandbox.last_seq()
    second = _error(server.answer(server.call("group_list", {"subscription": SUB_A})))
    assert second["code"] == "TokenServiceUnavailable" and second["retry_after"] <= first["retry_after"]
    assert sandbox.requests(kind="token", since=since) == []
    [record, _] = _tool_records(audit, "group_list")
    assert record["error_code"] == "TokenServiceUnavailable"
    _stderr_line(server, "TokenServiceUnavailable", record["correlation_id"])
    _no_secrets_in(server.stderr)


def test_entra_retry_after_is_the_delay_and_one_blip_is_absorbed(stdio_server, fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    server = stdio_server()
    since = sandbox.last_seq()
    sandbox.add_fault(TOKEN_PATTERN, status=503, count=1)  # one transient 503: retried, the call succeeds
    ok = server.answer(server.call("group_list", {"subscription": SUB_A}))
    assert not ok["result"].get("isError"), ok
    assert [t["status"] for t in sandbox.requests(kind="token", since=since)] == [503, 200]
    # Key Vault needs a token of its own; Entra throttles it with a Retry-After
    since = sandbox.last_seq()
    sandbox.add_fault(TOKEN_PATTERN, status=429, retry_after=7, count=1)
    throttled = _error(server.answer(server.call("keyvault_secret_list", {"vault": "kv-sandbox-prod"})))
    assert throttled["code"] == "TokenServiceUnavailable", throttled
    assert throttled["status"] == 429 and throttled["retry_after"] == 7 and "retry in 7 s" in throttled["message"]
    assert [t["status"] for t in sandbox.requests(kind="token", since=since)] == [429]


def test_a_429_carries_retry_after_in_the_hint(stdio_server, fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    server = stdio_server()
    server.answer(server.call("subscription_list"))
    since = sandbox.last_seq()
    sandbox.add_fault(GROUPS_PATTERN, status=429, retry_after=30, count=10)
    started = time.monotonic()
    sdk = _error(server.answer(server.call("group_list", {"subscription": SUB_A})))
    raw = _error(server.answer(server.call("arm_request", {"method": "GET", "path": GROUPS})))
    assert time.monotonic() - started < 5  # a 30 s Retry-After is the agent's to wait, not the call's
    for error in (sdk, raw):
        assert error["status"] == 429 and error["retry_after"] == 30, error
        assert "retry in 30 s (Retry-After)" in error["hint"]
    assert len([e for e in sandbox.requests(kind="arm", since=since) if e["path"].endswith("/resourcegroups")]) == 2
    records = _tool_records(audit)
    assert [r["error_code"] for r in records[-2:]] == ["TooManyRequests", "TooManyRequests"]
    line = _stderr_line(server, "TooManyRequests", records[-1]["correlation_id"])
    assert "http_status=429" in line and "retry_after=30" in line


# -- streamable HTTP: a client that goes away, signals -----------------------------------------------------


def _start_http(manifest: Path, audit: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str, list[str]]:
    proc = subprocess.Popen(_serve_args(manifest, audit, "--transport", "http", "--port", "0", "--dangerously-allow-anonymous"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    lines: list[str] = []
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            match = re.search(r"(http://127\.0\.0\.1:\d+/mcp)", line)
            if match:
                found.put(match.group(1))

    threading.Thread(target=read, daemon=True).start()
    try:
        url = found.get(timeout=30)
    except queue.Empty:
        proc.kill()
        raise AssertionError("HTTP server did not start: " + "".join(lines)) from None
    # the line is printed once the socket is bound; uvicorn starts listening a moment later
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    _wait_for(listening, 30, "the HTTP server to listen")
    return proc, url, lines


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_http_signal_with_a_call_in_flight_records_it_and_exits_0(fresh_sandbox_state, stall, tmp_path, signum):
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    proc, url, lines = _start_http(sandbox.manifest_path, audit, _env(tmp_path))
    answers: list[Any] = []
    signalled = 0.0
    try:
        try:
            async with Client(url, mode="legacy") as client:
                warm = await client.call_tool("subscription_list", {})
                answers.append(warm)
                stall(GROUPS_PATTERN, 4000)

                async def slow() -> None:
                    try:
                        answers.append(await client.call_tool("group_list", {"subscription": SUB_A}))
                    except Exception as exc:  # the connection may close before the answer is read
                        answers.append(exc)

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(slow)
                    await anyio.sleep(0.5)
                    signalled = time.monotonic()
                    proc.send_signal(signum)
                    with anyio.fail_after(10):
                        while len(answers) < 2:
                            await anyio.sleep(0.05)
        except Exception:
            if len(answers) < 2:  # closing the client after the server is gone may fail; nothing else may
                raise
        code = await anyio.to_thread.run_sync(lambda: proc.wait(timeout=15))
        took = time.monotonic() - signalled
        assert code == 0, "".join(lines)
        assert took < 7, took
        assert not answers[0].is_error
        answer = answers[1]
        if not isinstance(answer, Exception):
            assert answer.is_error and answer.structured_content["error"]["code"] == "ServerShuttingDown"
        [record] = _tool_records(audit, "group_list")
        assert record["status"] == "cancelled" and record["cancelled_by"] == "shutdown"
        assert "Traceback" not in "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


async def test_http_client_gone_mid_call_records_cancelled(fresh_sandbox_state, stall, tmp_path):
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    proc, url, lines = _start_http(sandbox.manifest_path, audit, _env(tmp_path))
    try:
        async with Client(url, mode="2026-07-28") as client:  # this protocol cancels by closing the stream
            assert not (await client.call_tool("subscription_list", {})).is_error
        stall(GROUPS_PATTERN, 3000)

        async def call() -> None:
            async with Client(url, mode="2026-07-28") as client:
                await client.call_tool("group_list", {"subscription": SUB_A})

        with anyio.move_on_after(0.8):  # the client goes away
            await call()
        records = await _async_wait_for(lambda: _tool_records(audit, "group_list"), 3, "the call's record")
        assert records[0]["status"] == "cancelled" and records[0]["cancelled_by"] == "client"
        assert records[0]["duration_ms"] < 3000
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await anyio.to_thread.run_sync(lambda: proc.wait(timeout=15)) == 0, "".join(lines)
