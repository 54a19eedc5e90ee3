"""A grant that ends early ends in Azure too (issue 14: "local grant and Azure activation start and end together").

Through ``serve`` against the sandbox, signed in as the reader (eligible for Website Contributor):
the server stopping (stdin closed, SIGTERM) and the agent session ending (MCP DELETE, idle eviction)
deactivate the grant's PIM activation, through the guard with a one-shot permit; a grant younger
than PIM's five-minute floor is reported as running to its end; a sandbox that does not answer
delays the stop by the short deadline only, and the audit says what happened. Witnesses: the
sandbox's PIM state and request journal, the audit log.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from access_helpers import app_group, approver, elevation_policy, reader_serve, request_args
from serve_helpers import HttpServe
from server_helpers import audit_records

pytestmark = pytest.mark.anyio
WEBSITE_CONTRIBUTOR = "de139f84-1756-47ae-9be6-808fbbe84772"
SCHEDULE_WRITE = "Microsoft.Authorization/roleAssignmentScheduleRequests/write"
LATENCY_MS = 8_000
"""A sandbox that does not answer: longer than the stop's 5 s deadline and the MCP client's 2 s before SIGTERM."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _stdio(sandbox: Any, tmp_path: Path, policy: Path, *extra: str) -> StdioServerParameters:
    return reader_serve(sandbox, tmp_path, policy, *extra, session="grant-ends")


def _http(sandbox: Any, tmp_path: Path, policy: Path, *extra: str) -> HttpServe:
    return HttpServe(sandbox, tmp_path / "audit.jsonl", tmp_path / "state", "--policy", str(policy), *extra,
                     env={"AZURE_AGENT_MCP_SANDBOX_USER": "reader"})


def _active(sandbox: Any) -> list[dict[str, Any]]:
    return [i for i in sandbox.pim()["instances"]
            if i["properties"]["roleDefinitionId"].lower().endswith(WEBSITE_CONTRIBUTOR)
            and i["properties"]["scope"].lower() == app_group(sandbox.manifest).lower()]


def _deactivations(sandbox: Any) -> list[dict[str, Any]]:
    return [r for r in sandbox.pim()["requests"] if r["properties"]["requestType"] == "SelfDeactivate"]


async def _let_the_late_request_land(faulted_at: float) -> None:
    """The delayed request still reaches the sandbox once its latency is over (Azure too may act late); wait for
    it here, so it lands in this test's sandbox state and not in the next test's."""
    import time

    import anyio

    await anyio.sleep(max(faulted_at + LATENCY_MS / 1000 + 2.0 - time.monotonic(), 0.0))


def _ended(tmp_path: Path) -> list[dict[str, Any]]:
    return [r for r in audit_records(tmp_path / "audit.jsonl", "grant") if r["event"] == "ended"]


def _schedule_writes(tmp_path: Path, grant_id: str) -> list[dict[str, Any]]:
    return [r for r in audit_records(tmp_path / "audit.jsonl", "intent")
            if r.get("operation") == SCHEDULE_WRITE and r.get("grant") == grant_id]


async def _grant(client: Any, manifest: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    answer = await client.call_tool("access_request", request_args(manifest, duration="PT30M", **overrides))
    assert not answer.is_error, answer.content[0].text
    grant = answer.structured_content["grant"]
    assert grant["pim"]["kind"] == "SelfActivate"
    return grant


async def test_stdin_closed_deactivates_a_grant_older_than_five_minutes_through_a_permit(fresh_sandbox_state,
                                                                                          tmp_path):
    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest)
    async with Client(_stdio(sandbox, tmp_path, policy), elicitation_callback=approver()) as client:
        grant = await _grant(client, sandbox.manifest)
        assert len(_active(sandbox)) == 1
        sandbox.advance_clock("PT6M")  # past PIM's floor: it may be deactivated now
    # the client closed stdin and the server stopped: Azure's side ended with the grant
    assert _active(sandbox) == []
    [deactivation] = _deactivations(sandbox)
    assert deactivation["properties"]["roleDefinitionId"].lower().endswith(WEBSITE_CONTRIBUTOR)
    ended = _ended(tmp_path)
    assert [(r["grant_id"], r["azure"], r["reason"]) for r in ended] == [(grant["id"], "deactivated",
                                                                          "the server stopped")]
    # the deactivation passed the guard by the grant's one-shot permit, named as the server's own end
    writes = _schedule_writes(tmp_path, grant["id"])
    assert [r["rule"].split(" of grant")[0] for r in writes] == ["Elevation PIM activation",
                                                                 "Elevation PIM deactivation"]
    assert writes[-1]["tool"] == "grant-end" and writes[-1]["session_id"] == "grant-ends"


async def test_a_young_grant_is_reported_as_running_to_its_end(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest)
    async with Client(_stdio(sandbox, tmp_path, policy), elicitation_callback=approver()) as client:
        grant = await _grant(client, sandbox.manifest)
        sandbox.advance_clock("PT2M")  # inside PIM's first five minutes
    assert len(_active(sandbox)) == 1  # PIM kept it: it ends by itself at the grant's end
    assert _active(sandbox)[0]["properties"]["endDateTime"].startswith(grant["end"][:16])
    [ended] = _ended(tmp_path)
    assert ended["grant_id"] == grant["id"] and ended["pim_code"] == "ActiveDurationTooShort"
    assert ended["azure"].startswith(f"runs to its end at {grant['end']}: PIM keeps an activation at least 5 minutes")
    # it was asked (and refused by Azure), not skipped
    assert len(_schedule_writes(tmp_path, grant["id"])) == 2


async def test_the_mcp_session_s_delete_ends_its_grant_in_azure_while_the_server_runs_on(fresh_sandbox_state,
                                                                                         tmp_path):
    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest)
    server = _http(sandbox, tmp_path, policy)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            async with Client(streamable_http_client(server.url, http_client=http), mode="legacy",
                              elicitation_callback=approver()) as client:
                grant = await _grant(client, sandbox.manifest)
                sandbox.advance_clock("PT6M")
        # the DELETE evicted the agent session; its grant ended off the request path
        for _ in range(200):
            if _ended(tmp_path):
                break
            import anyio

            await anyio.sleep(0.05)
        assert server.proc.poll() is None  # the server runs on
        assert _active(sandbox) == []
        [ended] = _ended(tmp_path)
        assert (ended["grant_id"], ended["azure"]) == (grant["id"], "deactivated")
        assert ended["reason"] == "the agent session ended with its MCP session (DELETE)"
    finally:
        assert server.terminate() == 0
    assert len(_ended(tmp_path)) == 1  # the stop found nothing more to end
    assert len(_deactivations(sandbox)) == 1


async def test_idle_eviction_ends_the_grant_in_azure(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest)
    server = _http(sandbox, tmp_path, policy, "--session-idle", "1s")
    try:
        headers = {"X-Agent-Session-Id": "grant-ends-idle"}  # a named session: a DELETE does not end it, idling does
        async with httpx.AsyncClient(timeout=30, headers=headers) as http:
            async with Client(streamable_http_client(server.url, http_client=http), mode="legacy",
                              elicitation_callback=approver()) as client:
                grant = await _grant(client, sandbox.manifest)
                sandbox.advance_clock("PT6M")
        import anyio

        for _ in range(400):
            if _ended(tmp_path):
                break
            await anyio.sleep(0.05)
        [ended] = _ended(tmp_path)
        assert (ended["grant_id"], ended["azure"]) == (grant["id"], "deactivated")
        assert ended["reason"].startswith("the agent session was evicted after being idle")
        assert _active(sandbox) == []
    finally:
        assert server.terminate() == 0


async def test_a_stop_stays_bounded_when_the_sandbox_does_not_answer_and_the_audit_says_so(fresh_sandbox_state,
                                                                                           tmp_path):
    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest)
    server = _http(sandbox, tmp_path, policy)
    try:
        async with httpx.AsyncClient(timeout=30, headers={"X-Agent-Session-Id": "grant-ends-slow"}) as http:
            async with Client(streamable_http_client(server.url, http_client=http), mode="legacy",
                              elicitation_callback=approver()) as client:
                grant = await _grant(client, sandbox.manifest)
        sandbox.advance_clock("PT6M")
        sandbox.add_fault("roleAssignmentScheduleRequests/", latency_ms=LATENCY_MS, count=10)  # Azure hangs
        faulted_at = time.monotonic()
    finally:
        code = server.terminate(timeout=45)
    assert code == 0
    [ended] = _ended(tmp_path)
    assert ended["grant_id"] == grant["id"] and ended["reason"] == "the server stopped"
    assert ended["azure"].startswith(f"runs to its end at {grant['end']}: Azure did not answer within 5 s")
    # the server had exited before the sandbox answered (it was still holding the request)
    assert _deactivations(sandbox) == [] and len(_active(sandbox)) == 1
    await _let_the_late_request_land(faulted_at)
    sandbox.clear_faults()


async def test_a_signal_during_the_stop_cuts_the_wait_short_and_the_audit_still_says_what_happened(
        fresh_sandbox_state, tmp_path):
    """The official client closes stdin, waits 2 s, then sends SIGTERM (then SIGKILL 2 s later): the signal ends
    the wait on Azure at once, so the server writes its records and exits before the kill."""
    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest)
    async with Client(_stdio(sandbox, tmp_path, policy), elicitation_callback=approver()) as client:
        grant = await _grant(client, sandbox.manifest)
        sandbox.advance_clock("PT6M")
        sandbox.add_fault("roleAssignmentScheduleRequests/", latency_ms=LATENCY_MS, count=10)
        faulted_at = time.monotonic()
    [ended] = _ended(tmp_path)
    assert ended["grant_id"] == grant["id"]
    assert ended["azure"].startswith(f"runs to its end at {grant['end']}: ")
    assert "told to stop at once" in ended["azure"] or "did not answer" in ended["azure"]
    # the audit was closed cleanly after it (its final checkpoint is the last record)
    # it was tried, through the guard, and nothing reached PIM: the activation runs to its end
    assert [r["rule"].split(" of grant")[0] for r in _schedule_writes(tmp_path, grant["id"])][-1] == \
        "Elevation PIM deactivation"
    assert len(_active(sandbox)) == 1 and _deactivations(sandbox) == []
    await _let_the_late_request_land(faulted_at)
    sandbox.clear_faults()


async def test_a_fixed_agent_identity_s_assignment_is_removed_by_its_blueprint_when_the_server_stops(
        fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    agent = sandbox.manifest["agent_identity"]["agent_identity_id"]
    policy = elevation_policy(tmp_path, sandbox.manifest)
    params = _stdio(sandbox, tmp_path, policy, "--credential", "agent-identity", "--session-ttl", "60m")
    async with Client(params, elicitation_callback=approver()) as client:
        answer = await client.call_tool("access_request", request_args(sandbox.manifest, duration="PT30M"))
        assert not answer.is_error, answer.content[0].text
        grant = answer.structured_content["grant"]
        sandbox.advance_clock("PT6M")
    assert grant["pim"]["kind"] == "AdminAssign"
    requests = [(r["properties"]["requestType"], r["properties"]["principalId"]) for r in sandbox.pim()["requests"]]
    assert requests == [("AdminAssign", agent), ("AdminRemove", agent)]
    assert not [i for i in sandbox.pim()["instances"] if i["properties"]["principalId"] == agent
                and i["properties"]["roleDefinitionId"].lower().endswith(WEBSITE_CONTRIBUTOR)]
    [ended] = _ended(tmp_path)
    assert (ended["grant_id"], ended["azure"]) == (grant["id"], "removed")
    writes = _schedule_writes(tmp_path, grant["id"])
    assert [r["rule"].split(" of grant")[0] for r in writes] == ["Elevation PIM assignment", "Elevation PIM removal"]
    assert writes[-1]["tool"] == "grant-end"


async def test_no_agent_can_call_the_server_s_own_end_as_a_tool(fresh_sandbox_state, tmp_path):
    """The permits of the server's own ends name the caller ``grant-end``, which is no tool an agent can call."""
    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest)
    async with Client(_stdio(sandbox, tmp_path, policy), elicitation_callback=approver()) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        answer = await client.call_tool("grant-end", {})
        listed = await client.call_tool("group_list", {})  # the server answers on, reads reach the sandbox
    assert "grant-end" not in names and answer.is_error and not listed.is_error
    assert sandbox.pim()["requests"] == []


async def test_the_log_says_when_azure_s_side_runs_on_and_no_token_reaches_log_or_audit(fresh_sandbox_state, tmp_path,
                                                                                       caplog):
    import logging

    from access_helpers import elevation_runtime
    from azure_agent_mcp.server.app import build_server

    sandbox = fresh_sandbox_state
    runtime = elevation_runtime(sandbox, tmp_path)
    async with Client(build_server(runtime), elicitation_callback=approver()) as client:
        grant = await _grant(client, sandbox.manifest)  # young: PIM will refuse to end it
    token = runtime.azure_for(runtime.default_entry).credential.get_token(sandbox.environment().arm_scope).token
    with caplog.at_level(logging.INFO, logger="azure_agent_mcp.access"):
        runtime.close()
    runtime.audit.close()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and grant["id"] in r.getMessage()]
    assert len(warned) == 1 and "runs to its end at" in warned[0] and "ActiveDurationTooShort" in warned[0]
    [ended] = _ended(tmp_path)
    assert ended["azure"].startswith(f"runs to its end at {grant['end']}: ") and ended["reason"] == "the server stopped"
    captured = (tmp_path / "audit.jsonl").read_bytes() + caplog.text.encode()
    assert token.encode() not in captured and token.split(".")[2].encode() not in captured
