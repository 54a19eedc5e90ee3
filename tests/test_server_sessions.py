"""Agent session lifecycle against the sandbox: eviction by idle time and by cap closes what a session
held and the next call starts it anew; a session with a call in flight is never taken; a full busy
server answers 503; an MCP DELETE ends its state; file descriptors stay flat over many sessions."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from http_raw import call, result_of
from serve_helpers import HttpServe
from server_helpers import audit_records, make_runtime

LEGACY = "2025-06-18"


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _session_records(audit: Path) -> list[dict[str, Any]]:
    return audit_records(audit, "session") if audit.exists() else []


def _token_requests(sandbox: Any, session: str, since: int) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests(kind="token", since=since)
            if session in (r.get("client_session_body") or "", r.get("client_session_query") or "")]


def _arm_requests(sandbox: Any, session: str, since: int) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests(kind="arm", since=since) if r.get("token_session") == session]


class TrackedCredential:
    """The session's real credential, recording whether the runtime closed it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.closed = False
        self.session = inner.session

    @property
    def provider(self) -> Any:
        return self.inner.provider

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return self.inner.get_token(*scopes, **kwargs)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        return self.inner.get_token_info(*scopes, options=options)

    def close(self) -> None:
        self.closed = True
        self.inner.close()


# -- in-process: what eviction closes -----------------------------------------------------------------


def _runtime(sandbox: Any, tmp_path: Path, **options: Any) -> tuple[Any, list[TrackedCredential]]:
    from azure_agent_mcp.identity import build_credential

    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl", transport="http", **options)
    built: list[TrackedCredential] = []
    env = sandbox.environment()

    def factory(session: Any) -> Any:
        built.append(TrackedCredential(build_credential("sandbox", env, session)))
        return built[-1]

    runtime._credential_factory = factory
    return runtime, built


def _group_list(runtime: Any, session: str) -> tuple[Any, list[str]]:
    entry = runtime.begin_call({"X-Agent-Session-Id": session})
    try:
        azure = runtime.azure_for(entry)
        names = [g.name for g in azure.resources(runtime.env.default_subscription).resource_groups.list()]
    finally:
        runtime.end_call(entry)
    return azure, names


def test_the_cap_evicts_the_oldest_session_closing_its_clients_and_credential(sandbox, tmp_path):
    runtime, built = _runtime(sandbox, tmp_path, max_sessions=2)
    try:
        since = sandbox.last_seq()
        first, names = _group_list(runtime, "cap-a")
        assert names and first.credential.inner.session.id == "cap-a"
        _group_list(runtime, "cap-b")
        assert len(runtime.sessions) == 2  # the server's own session is not counted
        _group_list(runtime, "cap-c")  # no room for a third: cap-a, the least recently used, goes
        assert runtime.settle_evictions()
        assert "cap-a" not in runtime.sessions and "cap-b" in runtime.sessions and "cap-c" in runtime.sessions
        assert built[0].closed and not built[1].closed and not built[2].closed
        assert first._resource_clients == {}, "the evicted session's SDK clients were not closed"
        assert not runtime.pool.closed, "closing one session's clients closed the shared pool"
        # the others still send through the shared pool
        assert _group_list(runtime, "cap-b")[1] == names
        records = _session_records(tmp_path / "audit.jsonl")
        assert [(r["session_id"], r["reason"]) for r in records] == [("cap-a", "cap")]
        assert records[0]["event"] == "evicted" and records[0]["calls"] == 1
        # named again: a new session with the same id, a new credential, a new token from Entra
        assert len(_token_requests(sandbox, "cap-a", since)) == 1
        again, _ = _group_list(runtime, "cap-a")
        assert again is not first and again.credential is built[-1] and not built[-1].closed
        assert len(_token_requests(sandbox, "cap-a", since)) == 2, "the evicted session's tokens were kept"
        assert len(_arm_requests(sandbox, "cap-a", since)) == 2
    finally:
        runtime.close()
    assert all(c.closed for c in built) and runtime.pool is not None


def test_a_session_with_a_call_in_flight_is_never_evicted_by_idle_time_or_cap(sandbox, tmp_path):
    from azure_agent_mcp.server.sessions import SessionLimitReached

    runtime, built = _runtime(sandbox, tmp_path, max_sessions=1, session_idle="1s")
    try:
        busy = runtime.begin_call({"X-Agent-Session-Id": "busy-1"})
        runtime.azure_for(busy)
        later = [0.0]
        runtime.sessions._clock = lambda: time.monotonic() + later[0]
        later[0] = 3600  # an hour later, the call still running
        assert runtime.sessions.sweep() == 0
        with pytest.raises(SessionLimitReached) as refused:
            runtime.begin_call({"X-Agent-Session-Id": "busy-2"})
        assert "--max-sessions" in str(refused.value)
        assert not runtime.admits({"X-Agent-Session-Id": "busy-2"}) and runtime.admits({"X-Agent-Session-Id": "busy-1"})
        assert runtime.settle_evictions() and not built[0].closed
        runtime.end_call(busy)
        assert runtime.sessions.sweep() == 0  # idle time counts from the end of its call
        later[0] += 2
        assert runtime.sessions.sweep() == 1
        assert runtime.settle_evictions() and built[0].closed
        assert [r["reason"] for r in _session_records(tmp_path / "audit.jsonl")] == ["idle"]
    finally:
        runtime.close()


# -- through serve over HTTP ----------------------------------------------------------------------------


@pytest.fixture
def http_serve(fresh_sandbox_state, tmp_path):
    started: list[HttpServe] = []

    def start(*extra: str) -> HttpServe:
        server = HttpServe(fresh_sandbox_state, tmp_path / "audit.jsonl", tmp_path / "state", *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(timeout=20)
            except Exception:
                server.kill()


def _client(sandbox: Any) -> httpx.Client:
    return httpx.Client(timeout=60, trust_env=False)


def test_idle_sessions_are_evicted_and_the_next_call_starts_them_again(http_serve, fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    server = http_serve("--session-idle", "1s")
    since = sandbox.last_seq()
    with _client(sandbox) as http:
        first = result_of(call(http, server.url, "group_list", session="idle-1"))
        assert not first.get("isError"), first
        records = _wait_for(lambda: [r for r in _session_records(server.audit) if r["session_id"] == "idle-1"],
                            30, "the idle session's eviction record")
        assert records[0]["reason"] == "idle" and records[0]["idle_seconds"] >= 1
        second = result_of(call(http, server.url, "group_list", session="idle-1"))
        assert second["structuredContent"]["items"] == first["structuredContent"]["items"]
    # the same id again, with a new credential: it asked Entra for a token again, tagged the same
    assert len(_token_requests(sandbox, "idle-1", since)) == 2
    assert len(_arm_requests(sandbox, "idle-1", since)) == 2


def test_a_full_server_with_every_session_busy_answers_503_and_keeps_serving(http_serve, fresh_sandbox_state):
    sandbox = fresh_sandbox_state
    server = http_serve("--max-sessions", "2")
    with _client(sandbox) as http:
        for session in ("busy-1", "busy-2"):
            assert not result_of(call(http, server.url, "group_list", session=session)).get("isError")
        sandbox.add_fault("/resourcegroups$", latency_ms=4000, count=2)
        answers: dict[str, Any] = {}

        def slow(session: str) -> None:
            with httpx.Client(timeout=60, trust_env=False) as own:
                answers[session] = call(own, server.url, "group_list", session=session)

        threads = [threading.Thread(target=slow, args=(s,)) for s in ("busy-1", "busy-2")]
        for thread in threads:
            thread.start()
        # both stalled requests reached the sandbox: both sessions have a call in flight
        _wait_for(lambda: not sandbox._admin("GET", "/faults")["value"], 30, "the two calls to reach the sandbox")
        refused = call(http, server.url, "group_list", session="third")
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "2"
        error = refused.json()["error"]
        assert error["data"]["code"] == "SessionLimitReached"
        assert error["data"]["max_sessions"] == 2 and error["data"]["flag"] == "--max-sessions"
        assert "--max-sessions" in error["message"] and "Traceback" not in refused.text
        # a session the server holds is still served meanwhile
        who = result_of(call(http, server.url, "whoami", session="busy-1"))
        assert who["structuredContent"]["session"]["id"] == "busy-1"
        for thread in threads:
            thread.join(30)
        assert all(not result_of(answers[s]).get("isError") for s in ("busy-1", "busy-2"))
        # the calls are over: the least recently used session makes room
        assert not result_of(call(http, server.url, "group_list", session="third")).get("isError")
    records = _wait_for(lambda: _session_records(server.audit), 10, "the cap eviction record")
    assert len(records) == 1 and records[0]["reason"] == "cap" and records[0]["session_id"] in ("busy-1", "busy-2")
    assert server.proc.poll() is None


def _legacy_session(http: httpx.Client, url: str, headers: dict[str, str] | None = None) -> str:
    base = {"Accept": "application/json, text/event-stream", **(headers or {})}
    opened = http.post(url, headers=base, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "raw-legacy", "version": "0"}}})
    assert opened.status_code == 200, opened.text
    mcp_session = opened.headers["mcp-session-id"]
    notified = http.post(url, headers={**base, "Mcp-Session-Id": mcp_session, "MCP-Protocol-Version": LEGACY},
                         json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert notified.status_code == 202, notified.text
    return mcp_session


def _legacy_call(http: httpx.Client, url: str, mcp_session: str, tool: str, headers: dict[str, str] | None = None) -> Any:
    answer = http.post(url, headers={"Accept": "application/json, text/event-stream", "Mcp-Session-Id": mcp_session,
                                     "MCP-Protocol-Version": LEGACY, **(headers or {})},
                       json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
    assert answer.status_code == 200, answer.text
    text = answer.text
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:") and '"id":2' in line.replace(" ", ""))
    return json.loads(text)["result"]


def _delete(http: httpx.Client, url: str, mcp_session: str) -> None:
    done = http.delete(url, headers={"Mcp-Session-Id": mcp_session, "MCP-Protocol-Version": LEGACY})
    assert done.status_code == 200, done.text


def test_mcp_delete_ends_the_mapping_and_the_agent_session_no_other_mcp_session_uses(http_serve, fresh_sandbox_state):
    server = http_serve()
    with _client(fresh_sandbox_state) as http:
        own = _legacy_session(http, server.url)
        generated = _legacy_call(http, server.url, own, "whoami")["structuredContent"]["session"]["id"]
        assert _legacy_call(http, server.url, own, "whoami")["structuredContent"]["session"]["id"] == generated
        _delete(http, server.url, own)
        records = _wait_for(lambda: _session_records(server.audit), 10, "the ended session's record")
        assert [(r["session_id"], r["reason"]) for r in records] == [(generated, "mcp-session-ended")]

        # an agent session the client named (the host's chat session) outlives the MCP sessions that used it
        named = {"X-Agent-Session-Id": "shared-by-two"}
        first, second = _legacy_session(http, server.url), _legacy_session(http, server.url)
        for mcp_session in (first, second):
            assert _legacy_call(http, server.url, mcp_session, "whoami", named)["structuredContent"]["session"]["id"] \
                == "shared-by-two"
        _delete(http, server.url, first)
        _delete(http, server.url, second)
        time.sleep(0.3)  # nothing to wait for: the named agent session must still be there
        assert [r["session_id"] for r in _session_records(server.audit)] == [generated]
        third = _legacy_session(http, server.url)
        assert _legacy_call(http, server.url, third, "whoami", named)["structuredContent"]["session"]["id"] \
            == "shared-by-two"
        assert [r["session_id"] for r in _session_records(server.audit)] == [generated]
        # the ended MCP session is gone at the SDK too
        gone = http.post(server.url, headers={"Accept": "application/json, text/event-stream", "Mcp-Session-Id": own,
                                              "MCP-Protocol-Version": LEGACY},
                         json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
        assert gone.status_code == 404


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_open_files_do_not_grow_with_the_number_of_sessions(http_serve, fresh_sandbox_state):
    server = http_serve()
    with _client(fresh_sandbox_state) as http:
        for n in range(8):  # warm: imports, the pool's first connections, the audit's files
            assert not result_of(call(http, server.url, "group_list", session=f"fd-warm-{n}")).get("isError")
        before = _open_fds(server.proc.pid)
        for n in range(60):
            assert not result_of(call(http, server.url, "group_list", session=f"fd-{n}")).get("isError")
        after = _open_fds(server.proc.pid)
    # a pool per session left a socket per session behind (60 more); one shared pool leaves none
    assert after <= before + 4, f"{before} open files after 8 sessions, {after} after 68"


def test_a_callers_session_evicted_mid_call_comes_back_on_behalf_of_the_same_caller(sandbox, tmp_path):
    """An evicted session named again (here: by a call that still holds its old entry) starts anew with a
    credential of its caller's, never the server's own; and a runtime that serves callers builds no
    credential of the server's for a session of nobody."""
    from azure_agent_mcp.identity import resolve_session
    from azure_agent_mcp.server.callers import Caller

    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl", transport="http", max_sessions=1)
    built: list[tuple[str, str]] = []

    def server_own(session: Any) -> Any:
        built.append(("server", session.id))
        return object()

    def on_behalf_of(session: Any, assertion: Any) -> Any:
        built.append(("caller", session.id))
        return object()

    runtime._credential_factory = server_own
    runtime._caller_credential_factory = on_behalf_of
    alice, bob = Caller(tid="t", oid="alice"), Caller(tid="t", oid="bob")
    try:
        stale = runtime.session_entry({"X-Agent-Session-Id": "alice-1"}, alice)
        runtime.session_entry({"X-Agent-Session-Id": "bob-1"}, bob)  # the cap is 1: alice's is evicted
        assert runtime.settle_evictions()
        assert stale.closed
        again = runtime.azure_for(stale)
        assert again.caller == alice.describe()
        assert built == [("caller", "alice-1")], built
        with pytest.raises(RuntimeError, match="on-behalf-of"):
            runtime.azure_for(resolve_session(session_id="nobodys-1", ttl="1h", environ={}))
        assert ("server", "nobodys-1") not in built
    finally:
        runtime.close()


def test_the_503_gate_counts_a_callers_own_sessions_as_theirs(sandbox, tmp_path):
    """At the cap with every session busy, a caller's request for its own live session is admitted and
    another caller's new one is not: the gate decides with the caller the resource server authenticated."""
    from azure_agent_mcp.server.callers import Caller

    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl", transport="http", max_sessions=1)
    runtime._caller_credential_factory = lambda session, assertion: object()
    alice, bob = Caller(tid="t", oid="alice"), Caller(tid="t", oid="bob")
    try:
        busy = runtime.begin_call({"Mcp-Session-Id": "mcp-a"}, alice)  # held: a call in flight
        assert runtime.admits({"Mcp-Session-Id": "mcp-a"}, alice)
        assert not runtime.admits({"Mcp-Session-Id": "mcp-b"}, bob)
        assert not runtime.admits({"X-Agent-Session-Id": "bobs-own"}, bob)
        runtime.end_call(busy)
        assert runtime.admits({"Mcp-Session-Id": "mcp-b"}, bob)  # alice's is idle now: it can make room
    finally:
        runtime.close()
