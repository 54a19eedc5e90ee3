"""Temporary access through ``serve`` over stdio against the sandbox, signed in as the reader.

The flows of issue 14: a PIM-backed grant (activation, use, expiry when the sandbox clock passes
its end), revoke (PIM deactivation), a local-only grant, and PIM's refusals (approval, MFA,
maximum duration) leaving no grant. Outcomes are read where they land: the sandbox's PIM state
and request journal, the audit log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters

from access_helpers import (
    RESTART,
    app_group,
    approver,
    elevation_policy,
    reader_serve,
    request_args,
    restart_args,
    restarts_sent,
    site,
)
from server_helpers import audit_records, error_of

pytestmark = pytest.mark.anyio
WEBSITE_CONTRIBUTOR = "de139f84-1756-47ae-9be6-808fbbe84772"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _serve(sandbox: Any, tmp_path: Path, policy: Path, *extra: str) -> StdioServerParameters:
    return reader_serve(sandbox, tmp_path, policy, *extra, session="elev-serve")


def _active_website_contributor(sandbox: Any) -> list[dict[str, Any]]:
    return [i for i in sandbox.pim()["instances"]
            if i["properties"]["roleDefinitionId"].lower().endswith(WEBSITE_CONTRIBUTOR)
            and i["properties"]["scope"].lower() == app_group(sandbox.manifest).lower()]


def _reader_restart(sandbox: Any, sandbox_tokens: Any) -> httpx.Response:
    """The same restart straight at the sandbox with the reader's own token: Azure's RBAC decides alone."""
    token = sandbox_tokens.user_token("reader", session="elev-direct")
    url = sandbox.manifest["arm_endpoint"].rstrip("/") + site(sandbox.manifest) + "/restart?api-version=2022-03-01"
    with httpx.Client(verify=sandbox.manifest["ca_bundle"], trust_env=False) as client:
        return client.post(url, headers={"Authorization": f"Bearer {token}"})


def _grants(tmp_path: Path) -> list[tuple[str, str | None]]:
    return [(r["event"], r.get("grant_id")) for r in audit_records(tmp_path / "audit.jsonl", "grant")]


async def test_pim_backed_grant_activates_is_used_and_expires_with_the_sandbox_clock(fresh_sandbox_state, tmp_path,
                                                                                       sandbox_tokens):
    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest)
    assert _reader_restart(sandbox, sandbox_tokens).status_code == 403  # the reader alone cannot restart
    async with Client(_serve(sandbox, tmp_path, policy), elicitation_callback=approver()) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"access_request", "access_list", "access_revoke"} <= names
        granted = await client.call_tool("access_request", request_args(sandbox.manifest))
        assert not granted.is_error, granted.content[0].text
        grant = granted.structured_content["grant"]
        assert grant["pim"]["role"] == "Website Contributor" and grant["pim"]["kind"] == "SelfActivate"
        active = _active_website_contributor(sandbox)
        assert len(active) == 1 and active[0]["properties"]["endDateTime"].startswith(grant["end"][:16])
        since = sandbox.last_seq()
        restarted = await client.call_tool("arm_request", restart_args(sandbox.manifest))
        assert not restarted.is_error and restarted.structured_content["status"] == 200, restarted.content[0].text
        assert [e["status"] for e in restarts_sent(sandbox, since)] == [200]
        who = await client.call_tool("whoami", {})
        assert [g["id"] for g in who.structured_content["grants"]] == [grant["id"]]

        sandbox.advance_clock("PT11M")  # past the grant's end, on Azure's clock only
        listed = await client.call_tool("access_list", {})  # Azure's answer carries its Date: the grant is over
        assert listed.structured_content["items"] == []
        since = sandbox.last_seq()
        refused = await client.call_tool("arm_request", restart_args(sandbox.manifest))
    assert refused.is_error and error_of(refused)["code"] == "PolicyDenied"
    assert restarts_sent(sandbox, since) == []  # refused locally: nothing sent
    assert _active_website_contributor(sandbox) == []  # and PIM ended the activation at its end
    direct = _reader_restart(sandbox, sandbox_tokens)
    assert direct.status_code == 403 and direct.json()["error"]["code"] == "AuthorizationFailed"
    assert _grants(tmp_path) == [("requested", grant["id"]), ("approved", grant["id"]), ("expired", grant["id"])]
    used = [r for r in audit_records(tmp_path / "audit.jsonl", "intent") if r.get("grant") == grant["id"]]
    assert [r["operation"] for r in used] == ["Microsoft.Authorization/roleAssignmentScheduleRequests/write", RESTART]


async def test_revoke_deactivates_the_pim_role_and_ends_the_grant(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest)
    async with Client(_serve(sandbox, tmp_path, policy), elicitation_callback=approver()) as client:
        granted = await client.call_tool("access_request", request_args(sandbox.manifest, duration="PT30M"))
        grant_id = granted.structured_content["grant"]["id"]
        sandbox.advance_clock("PT6M")  # PIM deactivates an activation only after 5 minutes
        revoked = await client.call_tool("access_revoke", {"grant_id": grant_id})
        assert not revoked.is_error and revoked.structured_content["pim_deactivated"] is True, revoked.content[0].text
        since = sandbox.last_seq()
        refused = await client.call_tool("arm_request", restart_args(sandbox.manifest))
    assert error_of(refused)["code"] == "PolicyDenied" and restarts_sent(sandbox, since) == []
    assert _active_website_contributor(sandbox) == []
    assert any(r["properties"]["requestType"] == "SelfDeactivate" for r in sandbox.pim()["requests"])
    assert ("revoked", grant_id) in _grants(tmp_path)


async def test_a_local_grant_without_eligibility_widens_only_the_local_policy(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest, Roles=["Reader"])  # no eligible role to activate
    async with Client(_serve(sandbox, tmp_path, policy), elicitation_callback=approver()) as client:
        granted = await client.call_tool("access_request", request_args(sandbox.manifest))
        since = sandbox.last_seq()
        restarted = await client.call_tool("arm_request", restart_args(sandbox.manifest))
    assert not granted.is_error and "pim" not in granted.structured_content["grant"]
    assert sandbox.pim()["requests"] == []
    # allowed locally, so sent; Azure's own RBAC refuses the reader
    assert error_of(restarted)["code"] == "AuthorizationFailed"
    assert [e["status"] for e in restarts_sent(sandbox, since)] == [403]


SECRET_METADATA = "Microsoft.KeyVault/vaults/secrets/readMetadata/action"  # a secret-bearing one is never asked for


@pytest.mark.parametrize(("roles", "target", "operation", "duration", "max_duration", "words"), [
    (["Contributor"], "/providers/Microsoft.Web/sites/app-orders-prod", RESTART, "PT10M", "PT1H",
     "requires an approver's approval"),
    (["Key Vault Secrets User"], "/providers/Microsoft.KeyVault/vaults/kv-sandbox-prod", SECRET_METADATA, "PT10M", "PT1H",
     "requires a Conditional Access authentication context"),
    (["Website Contributor"], "/providers/Microsoft.Web/sites/app-orders-prod", RESTART, "PT90M", "PT2H",
     "over the maximum activation duration"),
])
async def test_a_pim_refusal_leaves_no_grant_and_says_what_the_pim_policy_requires(
        fresh_sandbox_state, tmp_path, roles, target, operation, duration, max_duration, words):
    sandbox = fresh_sandbox_state
    group = app_group(sandbox.manifest)
    policy = elevation_policy(tmp_path, sandbox.manifest, Roles=roles, MaxDuration=max_duration, Scopes=[group],
                              Operations=[operation])
    async with Client(_serve(sandbox, tmp_path, policy), elicitation_callback=approver()) as client:
        answer = await client.call_tool("access_request", request_args(sandbox.manifest, scope=group + target,
                                                                       duration=duration, operations=[operation]))
        listed = await client.call_tool("access_list", {})
    error = error_of(answer)
    assert answer.is_error and error["code"] == "PimActivationFailed" and words in error["message"], answer.content[0].text
    assert listed.structured_content["items"] == []
    assert [e for e, _ in _grants(tmp_path)] == ["requested"]
    assert all(r["properties"]["status"] != "PendingApproval" for r in sandbox.pim()["requests"])


async def test_an_agent_identity_gets_a_time_bound_assignment_from_its_blueprint(fresh_sandbox_state, tmp_path):
    """Service principals cannot self-activate (Microsoft: eligible assignments are for users only): the
    ephemeral identity's blueprint gives it a time-bound active assignment (AdminAssign) for the grant's period."""
    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest)
    params = _serve(sandbox, tmp_path, policy, "--credential", "agent-identity", "--ephemeral-agent",
                    "--session-ttl", "30m")
    async with Client(params, elicitation_callback=approver()) as client:
        granted = await client.call_tool("access_request", request_args(sandbox.manifest))
        assert not granted.is_error, granted.content[0].text
        grant = granted.structured_content["grant"]
        who = (await client.call_tool("whoami", {})).structured_content
        agent = who["credential"]["agent_identity_id"]
        since = sandbox.last_seq()
        restarted = await client.call_tool("arm_request", restart_args(sandbox.manifest))
        assert not restarted.is_error, restarted.content[0].text
        assert [e["status"] for e in restarts_sent(sandbox, since)] == [200]
        sandbox.advance_clock("PT6M")
        revoked = await client.call_tool("access_revoke", {"grant_id": grant["id"]})
        assert revoked.structured_content["pim_deactivated"] is True, revoked.content[0].text
    assert grant["pim"]["kind"] == "AdminAssign" and grant["pim"]["role"] == "Website Contributor"
    kinds = [(r["properties"]["requestType"], r["properties"]["principalId"]) for r in sandbox.pim()["requests"]]
    assert ("AdminAssign", agent) in kinds and ("AdminRemove", agent) in kinds
    permitted = [r for r in audit_records(tmp_path / "audit.jsonl", "intent") if r.get("grant") == grant["id"]
                 and r["operation"] == "Microsoft.Authorization/roleAssignmentScheduleRequests/write"]
    assert [r["rule"].split(" of grant")[0] for r in permitted] == ["Elevation PIM assignment", "Elevation PIM removal"]


async def test_a_fixed_agent_identity_gets_its_time_bound_assignment_from_the_blueprint_this_server_holds(
        fresh_sandbox_state, tmp_path):
    """``--credential agent-identity`` without --ephemeral-agent: the seeded agent identity's blueprint (whose
    credential the server holds) assigns and removes it, exactly as for an ephemeral identity."""
    sandbox = fresh_sandbox_state
    agent = sandbox.manifest["agent_identity"]["agent_identity_id"]
    policy = elevation_policy(tmp_path, sandbox.manifest)
    params = _serve(sandbox, tmp_path, policy, "--credential", "agent-identity", "--session-ttl", "30m")
    async with Client(params, elicitation_callback=approver()) as client:
        since = sandbox.last_seq()
        refused = await client.call_tool("arm_request", restart_args(sandbox.manifest))
        assert refused.is_error and restarts_sent(sandbox, since) == []  # read-only: nothing sent before the grant
        granted = await client.call_tool("access_request", request_args(sandbox.manifest))
        assert not granted.is_error, granted.content[0].text
        grant = granted.structured_content["grant"]
        restarted = await client.call_tool("arm_request", restart_args(sandbox.manifest))
        assert not restarted.is_error, restarted.content[0].text
        sent = restarts_sent(sandbox, since)
        assert [e["status"] for e in sent] == [200]
        sandbox.advance_clock("PT6M")
        revoked = await client.call_tool("access_revoke", {"grant_id": grant["id"]})
        assert revoked.structured_content["pim_deactivated"] is True, revoked.content[0].text
    assert grant["pim"]["kind"] == "AdminAssign"
    requests = [(r["properties"]["requestType"], r["properties"]["principalId"]) for r in sandbox.pim()["requests"]]
    assert requests == [("AdminAssign", agent), ("AdminRemove", agent)]
    # the assignment is gone in Azure too: the same restart with the agent identity's own standing is refused
    assert not [i for i in sandbox.pim()["instances"] if i["properties"]["principalId"] == agent
                and i["properties"]["roleDefinitionId"].lower().endswith(WEBSITE_CONTRIBUTOR)]


async def test_the_sidecar_path_refuses_elevation_for_an_agent_identity_naming_why(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest)
    params = _serve(sandbox, tmp_path, policy, "--credential", "sidecar", "--session-ttl", "30m")
    async with Client(params, elicitation_callback=approver()) as client:
        refused = await client.call_tool("access_request", request_args(sandbox.manifest))
        restarted = await client.call_tool("arm_request", restart_args(sandbox.manifest))
    assert refused.is_error and "sidecar" in refused.content[0].text, refused.content[0].text
    assert restarted.is_error  # no grant was made
    assert sandbox.pim()["requests"] == []


async def test_azure_s_activation_ends_with_the_grant_even_after_a_slow_approval(fresh_sandbox_state, tmp_path):
    """The grant's period starts when it is asked; PIM starts when it is sent. The activation is asked to end at
    the grant's end instant, so Azure never holds the role after the local grant is over."""
    import datetime as dt

    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest)
    async with Client(_serve(sandbox, tmp_path, policy), elicitation_callback=approver(think=2.5)) as client:
        granted = await client.call_tool("access_request", request_args(sandbox.manifest))
        assert not granted.is_error, granted.content[0].text
        grant = granted.structured_content["grant"]
        active = _active_website_contributor(sandbox)

    def moment(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")[:19] + "+00:00")

    assert len(active) == 1
    azure_end = moment(active[0]["properties"]["endDateTime"])
    azure_start = moment(active[0]["properties"]["startDateTime"])
    local_end = moment(grant["end"])
    assert abs((azure_end - local_end).total_seconds()) <= 1, (azure_end, local_end)
    assert (azure_start - moment(grant["start"])).total_seconds() >= 2  # PIM started late; it still ends on time
