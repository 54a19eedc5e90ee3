"""Attacks on temporary access, against the sandbox through real SDK pipelines: what reaches Azure, what the audit says.

Each test starts a server (in process, the official MCP client) whose policy is read-only plus an
Elevation block, signed in as the sandbox's reader; the witness of what was sent is the sandbox's
request journal, the witness of what was decided is the audit log.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from access_helpers import (
    FakeWall, RESTART, approver, elevation_runtime, request_args, restart_args, restarts_sent, site,
)
from server_helpers import audit_records, error_of
from azure_agent_mcp.server.app import build_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _grant_records(tmp_path: Path, event: str | None = None) -> list[dict[str, Any]]:
    return [r for r in audit_records(tmp_path / "audit.jsonl", "grant") if event is None or r["event"] == event]


async def _granted(client: Any, manifest: dict[str, Any], **overrides: Any) -> str:
    answer = await client.call_tool("access_request", request_args(manifest, **overrides))
    assert not answer.is_error, answer.content[0].text
    return answer.structured_content["grant"]["id"]


async def test_an_expired_grant_is_not_used_nothing_is_sent(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state  # PIM activations are sandbox state: each test starts from the seed
    wall = FakeWall()
    runtime = elevation_runtime(sandbox, tmp_path, wall=wall)
    async with Client(build_server(runtime), elicitation_callback=approver()) as client:
        grant_id = await _granted(client, sandbox.manifest)
        since = sandbox.last_seq()
        used = await client.call_tool("arm_request", restart_args(sandbox.manifest))
        assert len(restarts_sent(sandbox, since)) == 1  # allowed locally by the grant: sent (Azure's RBAC answers)
        wall.advance(600)  # exactly the grant's end
        since = sandbox.last_seq()
        refused = await client.call_tool("arm_request", restart_args(sandbox.manifest))
    assert refused.is_error and error_of(refused)["code"] == "PolicyDenied"
    assert restarts_sent(sandbox, since) == []
    assert error_of(used).get("code") != "PolicyDenied"
    intents = [r for r in audit_records(tmp_path / "audit.jsonl", "intent") if r.get("operation") == RESTART]
    assert [r["grant"] for r in intents] == [grant_id] and grant_id in intents[0]["rule"]
    # every record of that request names the grant: its intent, its outcome, and its tool call's record
    outcomes = [r for r in audit_records(tmp_path / "audit.jsonl", "outcome") if r["request_id"] == intents[0]["request_id"]]
    assert [r["grant"] for r in outcomes] == [grant_id]
    calls = [r for r in audit_records(tmp_path / "audit.jsonl", "tool") if r.get("tool") == "arm_request"]
    assert calls[0]["grants"] == [grant_id] and "grants" not in calls[-1]
    assert [r["grant_id"] for r in _grant_records(tmp_path, "expired")] == [grant_id]
    # refused before the call ran (its plan was decided with the session's grants, none left): its record says why
    calls = [r for r in audit_records(tmp_path / "audit.jsonl", "tool") if r.get("tool") == "arm_request"]
    assert calls[-1]["decision"] == "deny" and calls[-1]["rule"] == "no Actions pattern matches"


async def test_a_grant_for_one_site_or_operation_does_not_open_another(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state  # PIM activations are sandbox state: each test starts from the seed
    runtime = elevation_runtime(fresh_sandbox_state, tmp_path)
    async with Client(build_server(runtime), elicitation_callback=approver()) as client:
        await _granted(client, sandbox.manifest)
        since = sandbox.last_seq()
        other_site = await client.call_tool("arm_request", restart_args(sandbox.manifest, "app-orders-canary"))
        stop = await client.call_tool("arm_request", {**restart_args(sandbox.manifest),
                                                      "path": site(sandbox.manifest) + "/stop"})
    for answer in (other_site, stop):
        assert answer.is_error and error_of(answer)["code"] == "PolicyDenied", answer.content[0].text
    sent = [e for e in sandbox.requests("arm", since=since) if e["method"] == "POST"]
    assert sent == []


async def test_a_grant_of_session_one_is_not_used_by_session_two(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state  # PIM activations are sandbox state: each test starts from the seed
    from azure_agent_mcp.callcontext import call_scope
    from azure_agent_mcp.identity import resolve_session
    from azure_agent_mcp.policy import PolicyDeniedError

    runtime = elevation_runtime(sandbox, tmp_path, session_id="elev-one")
    async with Client(build_server(runtime), elicitation_callback=approver()) as client:
        await _granted(client, sandbox.manifest)
    other = resolve_session(session_id="elev-two", ttl="8h", environ={})
    azure = runtime.azure_for(other)  # the same server, guard and grant book; another agent session
    since = sandbox.last_seq()
    with call_scope(session_id=other.id, tool="arm_request"), pytest.raises(PolicyDeniedError) as refused:
        azure.arm("POST", site(sandbox.manifest) + "/restart", "2022-03-01")
    assert refused.value.decision.rule == "no Actions pattern matches"
    assert restarts_sent(sandbox, since) == []
    runtime.close()


async def test_a_client_that_cannot_elicit_gets_no_grant(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state  # PIM activations are sandbox state: each test starts from the seed
    runtime = elevation_runtime(fresh_sandbox_state, tmp_path)
    async with Client(build_server(runtime)) as client:  # no elicitation callback: no elicitation capability
        answer = await client.call_tool("access_request", request_args(sandbox.manifest))
        listed = await client.call_tool("access_list", {})
    assert answer.is_error and error_of(answer)["code"] == "ConfirmationUnavailable"
    assert listed.structured_content["items"] == []
    assert _grant_records(tmp_path, "approved") == []


@pytest.mark.parametrize("answer", [{"action": "decline"}, {"action": "cancel"}, {"approve": False}])
async def test_declining_grants_nothing(fresh_sandbox_state, tmp_path, answer):
    sandbox = fresh_sandbox_state  # PIM activations are sandbox state: each test starts from the seed
    runtime = elevation_runtime(fresh_sandbox_state, tmp_path)
    callback = approver(action=answer.get("action", "accept"), approve=answer.get("approve", True))
    async with Client(build_server(runtime), elicitation_callback=callback) as client:
        result = await client.call_tool("access_request", request_args(sandbox.manifest))
        since = sandbox.last_seq()
        restart = await client.call_tool("arm_request", restart_args(sandbox.manifest))
    assert result.is_error and error_of(result)["code"] == "ConfirmationDeclined"
    assert error_of(restart)["code"] == "PolicyDenied" and restarts_sent(sandbox, since) == []
    assert _grant_records(tmp_path, "approved") == [] and len(_grant_records(tmp_path, "declined")) == 1


async def test_an_approval_cannot_be_replayed_into_a_second_grant(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state  # PIM activations are sandbox state: each test starts from the seed
    from azure_agent_mcp.callcontext import call_scope
    from azure_agent_mcp.tools.access import ApprovalMissing, access_request

    runtime = elevation_runtime(fresh_sandbox_state, tmp_path)
    asked: list[str] = []
    async with Client(build_server(runtime), elicitation_callback=approver(asked)) as client:
        grant_id = await _granted(client, sandbox.manifest)
        revoked = await client.call_tool("access_revoke", {"grant_id": grant_id})
        assert not revoked.is_error
    # the same arguments, claiming the approval again (as a replayed answer would): the question was consumed
    azure = runtime.azure_for(runtime.default_session)
    with call_scope(session_id=runtime.default_session.id, tool="access_request", extra={"elicited": True}):
        with pytest.raises(ApprovalMissing, match="an approval counts once"):
            access_request(azure, **request_args(sandbox.manifest))
    assert len(asked) == 1 and [r["grant_id"] for r in _grant_records(tmp_path, "approved")] == [grant_id]
    assert runtime.grants.active(runtime.default_session.id) == []
    runtime.close()


async def test_the_question_names_what_where_until_when_and_why(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state  # PIM activations are sandbox state: each test starts from the seed
    runtime = elevation_runtime(fresh_sandbox_state, tmp_path)
    asked: list[str] = []
    async with Client(build_server(runtime), elicitation_callback=approver(asked)) as client:
        answer = await client.call_tool("access_request", request_args(sandbox.manifest))
    grant = answer.structured_content["grant"]
    question = asked[0]
    assert f"grant {grant['id']}" in question and f"operation: {RESTART}" in question
    assert f"at: {site(sandbox.manifest)}" in question
    assert f"from {grant['start']} until {grant['end']} UTC (PT10M)" in question
    assert "reader@" in question and "justification: restart app-orders-prod" in question


async def test_a_pim_request_through_another_tool_is_refused_even_with_a_permit_pending(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state  # PIM activations are sandbox state: each test starts from the seed
    from azure_agent_mcp.access.grants import Permit

    runtime = elevation_runtime(fresh_sandbox_state, tmp_path)
    scope = site(sandbox.manifest).rsplit("/providers/", 1)[0]
    path = f"{scope}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{uuid.uuid4()}"
    body = {"properties": {"principalId": sandbox.manifest["users"][1]["oid"] if "oid" in sandbox.manifest["users"][1]
                           else "x", "roleDefinitionId": "de139f84-1756-47ae-9be6-808fbbe84772",
                           "requestType": "SelfActivate", "justification": "sneaky",
                           "scheduleInfo": {"expiration": {"type": "AfterDuration", "duration": "PT1H"}}}}
    azure = runtime.azure_for(runtime.default_session)
    # as if access_request were activating right now: the permit names its tool, so arm_request cannot use it
    runtime.grants.permit(Permit("g-x", runtime.default_session.id, "access_request", "PUT",
                                 azure.arm_url(path, "2020-10-01"), body, "activation"))
    since = sandbox.last_seq()
    async with Client(build_server(runtime), elicitation_callback=approver()) as client:
        answer = await client.call_tool("arm_request", {"method": "PUT", "path": path, "api_version": "2020-10-01",
                                                        "body": body})
    assert answer.is_error and error_of(answer)["code"] == "PolicyDenied"
    assert error_of(answer)["operation"] == "Microsoft.Authorization/roleAssignmentScheduleRequests/write"
    assert [e for e in sandbox.requests("arm", since=since) if "roleassignmentschedulerequests" in e["path"].lower()] == []
    assert len(runtime.grants._permits) == 1  # untouched: it was never the permit's request


async def test_tokens_and_justification_bytes_stay_out_of_the_audit_secrets(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state  # PIM activations are sandbox state: each test starts from the seed
    runtime = elevation_runtime(fresh_sandbox_state, tmp_path)
    async with Client(build_server(runtime), elicitation_callback=approver()) as client:
        await _granted(client, sandbox.manifest)
        await client.call_tool("arm_request", restart_args(sandbox.manifest))
    token = runtime.azure_for(runtime.default_session).credential.get_token(sandbox.environment().arm_scope).token
    raw = (tmp_path / "audit.jsonl").read_bytes()
    assert token.encode() not in raw and token.split(".")[2].encode() not in raw
    runtime.close()


async def test_the_guard_itself_refuses_an_expired_grant_between_plan_and_send(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state  # PIM activations are sandbox state: each test starts from the seed
    from azure_agent_mcp.callcontext import call_scope
    from azure_agent_mcp.policy import PolicyDeniedError

    wall = FakeWall()
    runtime = elevation_runtime(sandbox, tmp_path, wall=wall)
    async with Client(build_server(runtime), elicitation_callback=approver()) as client:
        grant_id = await _granted(client, sandbox.manifest, duration="PT5M")
    azure = runtime.azure_for(runtime.default_session)
    wall.advance(301)
    since = sandbox.last_seq()
    with call_scope(session_id=runtime.default_session.id, tool="arm_request"), pytest.raises(PolicyDeniedError):
        azure.arm("POST", site(sandbox.manifest) + "/restart", "2022-03-01")
    assert restarts_sent(sandbox, since) == []
    refused = [r for r in audit_records(tmp_path / "audit.jsonl", "refused") if r.get("operation") == RESTART]
    assert refused[-1]["decision"] == "deny" and "grant" not in refused[-1]
    assert [r["grant_id"] for r in _grant_records(tmp_path, "expired")] == [grant_id]
    runtime.close()


async def test_a_replayed_2026_07_28_answer_is_asked_anew_not_granted(fresh_sandbox_state, tmp_path):
    """On 2026-07-28 the answer rides the client's retry (input responses + request state): sending the same
    retry again, after its grant ended, meets a new question (a new grant id), never a second grant."""
    from mcp_types import ElicitResult, InputRequiredResult

    sandbox = fresh_sandbox_state
    runtime = elevation_runtime(sandbox, tmp_path)
    args = request_args(sandbox.manifest)
    async with Client(build_server(runtime), mode="2026-07-28", elicitation_callback=approver()) as client:
        asked = await client.session.call_tool("access_request", args, allow_input_required=True)
        assert isinstance(asked, InputRequiredResult)
        (key, question), = asked.input_requests.items()
        answer = {key: ElicitResult(action="accept", content={"approve": True})}
        granted = await client.session.call_tool("access_request", args, allow_input_required=True,
                                                 input_responses=answer, request_state=asked.request_state)
        assert not granted.is_error, granted.content[0].text
        grant_id = granted.structured_content["grant"]["id"]
        assert f"grant {grant_id}" in question.params.message
        await client.call_tool("access_revoke", {"grant_id": grant_id})
        replayed = await client.session.call_tool("access_request", args, allow_input_required=True,
                                                  input_responses=answer, request_state=asked.request_state)
    assert isinstance(replayed, InputRequiredResult)  # asked again: the old answer answers nothing
    (_, again), = replayed.input_requests.items()
    assert f"grant {grant_id}" not in again.params.message and "grant g-" in again.params.message
    assert runtime.grants.active(runtime.default_session.id) == []
    assert [r["grant_id"] for r in _grant_records(tmp_path, "approved")] == [grant_id]


async def test_policy_explain_and_whoami_tell_what_the_session_grant_allows(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    runtime = elevation_runtime(sandbox, tmp_path)
    async with Client(build_server(runtime), elicitation_callback=approver()) as client:
        before = await client.call_tool("policy_explain", {"operation": RESTART, "scope": site(sandbox.manifest)})
        grant_id = await _granted(client, sandbox.manifest)
        after = await client.call_tool("policy_explain", {"operation": RESTART, "scope": site(sandbox.manifest)})
        elsewhere = await client.call_tool("policy_explain", {"operation": RESTART,
                                                              "scope": site(sandbox.manifest, "app-orders-canary")})
        who = await client.call_tool("whoami", {})
    assert before.structured_content["effect"] == "deny"
    assert after.structured_content["effect"] == "allow" and grant_id in after.structured_content["rule"]
    assert elsewhere.structured_content["effect"] == "deny"
    assert [g["id"] for g in who.structured_content["grants"]] == [grant_id]
    assert 0 < who.structured_content["grants"][0]["remaining_seconds"] <= 600
