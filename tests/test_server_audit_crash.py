"""kill -9 under load: every request that reached Azure has its intent record, whatever the timing.

`serve --transport http --port 0` on loopback; 8 MCP clients, each with its own agent session
(``X-Agent-Session-Id``: one prefix for this test, so the sandbox's log, which reads the session
from each token's claims, tells exactly which requests came from this server), call
``resource_list`` and ``group_list`` back to back. Mid-load, with calls in flight, the server gets
SIGKILL: no handler, no close, no final checkpoint. Just before it, the sandbox starts holding
``resource_list`` requests for 400 ms (a latency fault), so some requests are on the wire, received
but unanswered, when the server dies. Then, for EVERY ARM request the sandbox
received from those sessions, the audit holds an intent record with the same correlation id,
method and path (the sandbox's ``raw_path``, byte for byte, == the intent's ``path``).

Then serve starts again on the same log: a torn tail, if the kill left one, is repaired, and
`audit verify` accepts the chain across both runs once the second one stopped cleanly.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from serve_helpers import HttpServe, StdioServe, new_session, sent, unaudited, verify
from server_helpers import audit_records

pytestmark = pytest.mark.anyio

CLIENTS = 8
CALLS_PER_CLIENT = 400  # bounded: the kill comes long before
KILL_AFTER_CALLS = 200  # answered calls across all clients before the kill
KILL_DEADLINE = 30.0  # seconds: kill anyway if the load is slower than that
HOLD_MS = 400  # the sandbox holds resource_list requests this long just before the kill


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_kill_9_under_load_leaves_no_request_without_its_intent(sandbox, tmp_path: Path):
    audit = tmp_path / "audit.jsonl"
    prefix = new_session("kill9")
    since = sandbox.last_seq()
    server = HttpServe(sandbox, audit, tmp_path / "state")
    answered = 0
    interrupted = 0
    failures: list[BaseException] = []  # anything that went wrong before the kill is a failure, not the kill
    loaded = anyio.Event()
    killed = anyio.Event()

    async def client(index: int) -> None:
        nonlocal answered, interrupted
        headers = {"X-Agent-Session-Id": f"{prefix}-{index}"}
        try:
            async with httpx.AsyncClient(headers=headers, timeout=30) as http:
                async with Client(streamable_http_client(server.url, http_client=http), mode="legacy") as mcp:
                    for n in range(CALLS_PER_CLIENT):
                        result = await mcp.call_tool("resource_list" if (n + index) % 2 else "group_list", {})
                        assert not result.is_error, result.content
                        answered += 1
                        if answered >= KILL_AFTER_CALLS:
                            loaded.set()
        except Exception as exc:  # the server died under this client, mid-call or between calls
            if not killed.is_set():
                failures.append(exc)
            interrupted += 1

    killed_at = None
    try:
        async with anyio.create_task_group() as group:
            for index in range(CLIENTS):
                group.start_soon(client, index)
            with anyio.move_on_after(KILL_DEADLINE):
                await loaded.wait()
            answered_before_kill = answered
            sandbox.add_fault(path="/resources$", latency_ms=HOLD_MS, count=4 * CLIENTS)
            await anyio.sleep(HOLD_MS / 2000)
            killed.set()
            server.kill()  # SIGKILL, calls in flight, some of their requests held by the sandbox
            killed_at = time.time()
            with anyio.move_on_after(10):  # the clients notice and end; then stop waiting for them
                while interrupted < CLIENTS:
                    await anyio.sleep(0.05)
            group.cancel_scope.cancel()
        await anyio.sleep(HOLD_MS / 1000 + 0.2)  # the held requests are answered (to no one) and logged
    finally:
        server.kill()
        sandbox.clear_faults()
    assert not failures, f"calls failed before the kill: {failures[:3]}"
    assert killed_at is not None and answered_before_kill >= KILL_AFTER_CALLS, \
        f"the load never built up ({answered_before_kill} calls)"
    assert interrupted == CLIENTS, "a client finished its loop before the kill: the kill was not under load"

    requests = sent(sandbox, since, prefix=prefix)
    sessions = {r["token_session"] for r in requests}
    assert len(sessions) == CLIENTS, sessions
    assert len(requests) >= KILL_AFTER_CALLS
    missing = unaudited(requests, audit)
    assert missing == [], (f"{len(missing)} of {len(requests)} requests reached the sandbox without an intent record: "
                           + "; ".join(f"{r['method']} {r['raw_path']} ({r['correlation_id']})" for r in missing[:5]))
    intents = audit_records(audit, "intent")
    assert {i["correlation_id"] for i in intents} >= {r["correlation_id"] for r in requests}
    answered_ids = {o["request_id"] for o in audit_records(audit, "outcome")}
    in_flight_intents = [i for i in intents if i["request_id"] not in answered_ids]
    assert len(intents) >= len(requests)
    received = {r["correlation_id"] for r in requests}
    assert any(i["correlation_id"] in received for i in in_flight_intents), \
        "no request was on the wire at the kill: the sandbox received none whose intent has no outcome"

    # the killed writer: the chain verifies as far as it goes (open, not closed), or ends in a torn tail
    code, killed = verify(audit)
    torn = killed.get("torn_tail_bytes") or 0
    if torn:
        assert code == 1 and f"a torn tail of {torn} bytes" in killed["problem"], killed
    else:
        assert code == 0 and killed["ok"] and not killed["closed"], killed
    records_before = len(audit_records(audit))

    # serve again on the same log: it repairs what the kill left and continues the chain
    with StdioServe(sandbox, audit, tmp_path / "state", session=new_session("kill9-restart")) as again:
        after_since = sandbox.last_seq()
        result = again.call("group_list")
        assert not result.get("isError"), result
        assert unaudited(sent(sandbox, after_since, session=again.session), audit) == []
        assert again.close() == 0
    code, final = verify(audit)
    assert code == 0 and final["ok"] and final["closed"], final
    assert final["repairs"] == (1 if torn else 0)
    assert final["records"] >= records_before + 3  # the restart's intent, outcome and tool record at least
    kinds = [r["kind"] for r in audit_records(audit)]
    assert "gap" not in kinds  # a crash loses no record that reached the file
    print(f"\nkill -9: {len(requests)} requests from {CLIENTS} sessions, {answered_before_kill} calls answered "
          f"before the kill, {len(in_flight_intents)} intent(s) with no outcome (in flight), torn tail {torn} bytes; "
          "all audited")
