"""Red team: temporary access must never hand an agent a secret-bearing operation.

The secret-bearing catalog is an explicit Deny in the built-in profiles, which no grant lifts. A
custom policy need not carry those Denies: there, the refusal of ``Microsoft.Web/sites/config/list/action``
(an app's settings, with its connection strings) reads "no Actions pattern matches", which is a
refusal a grant may lift. An Elevation block with a wildcard (``Microsoft.Web/*``) or a role whose
actions include it (Website Contributor: ``Microsoft.Web/sites/*``) would then let one approval
open secret values to the agent.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from access_helpers import app_group, approver, elevation_runtime, site
from server_helpers import error_of
from azure_agent_mcp.access.grants import Grant, GrantBook
from azure_agent_mcp.policy import parse_policy
from azure_agent_mcp.policy.catalog import secret_bearing
from azure_agent_mcp.policy.effects import Effect
from azure_agent_mcp.policy.engine import decide
from azure_agent_mcp.server.app import build_server

pytestmark = pytest.mark.anyio
SETTINGS = "Microsoft.Web/sites/config/list/action"
SUB = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-prod-app"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _custom_policy(tmp_path: Path, manifest: dict[str, Any]) -> Path:
    path = tmp_path / "custom.json"
    path.write_text(json.dumps({"Name": "custom reader", "Actions": ["*/read"], "Elevation": {
        "MaxDuration": "PT1H", "Operations": ["Microsoft.Web/*"], "Scopes": [app_group(manifest)]}}))
    return path


async def test_access_request_refuses_a_secret_bearing_operation_even_when_elevation_matches_it(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state  # a PIM activation would be sandbox state
    asked: list[str] = []
    runtime = elevation_runtime(sandbox, tmp_path, policy=_custom_policy(tmp_path, sandbox.manifest))
    async with Client(build_server(runtime), elicitation_callback=approver(asked)) as client:
        answer = await client.call_tool("access_request", {
            "operations": [SETTINGS], "scope": site(sandbox.manifest), "duration": "PT10M",
            "justification": "read the app settings"})
        since = sandbox.last_seq()
        listed = await client.call_tool("arm_request", {"method": "POST", "api_version": "2022-03-01",
                                                        "path": site(sandbox.manifest) + "/config/appsettings/list"})
    assert answer.is_error and error_of(answer)["code"] == "AccessRequestRefused", answer.content[0].text
    assert "secret" in answer.content[0].text.lower()
    assert asked == []  # nobody was asked to approve what must never be granted
    assert listed.is_error and error_of(listed)["code"] == "PolicyDenied"
    assert [e for e in sandbox.requests("arm", since=since) if e["method"] == "POST"] == []
    runtime.close()


def test_no_grant_lifts_a_secret_bearing_operation_whatever_the_policy_says():
    """A role grant (Website Contributor's Microsoft.Web/sites/*) under a policy without the catalog's Denies."""
    policy = parse_policy({"Name": "custom", "Actions": ["*/read"]}, source="test")
    book = GrantBook()
    now = time.time()
    book.add(Grant("g-1", "s-1", SUB, now, now + 600, "why", actions=("Microsoft.Web/sites/*",), role="Website Contributor",
                   data_actions=("Microsoft.KeyVault/vaults/secrets/*",)))
    scope = SUB + "/providers/Microsoft.Web/sites/app-orders-prod"
    restart = book.widen("s-1", decide(policy, "Microsoft.Web/sites/restart/action", scope))[0]
    assert restart.effect is Effect.ALLOW  # the grant works for what it is for
    for operation, data in ((SETTINGS, False), ("Microsoft.Web/sites/publishxml/action", False),
                            ("Microsoft.KeyVault/vaults/secrets/getSecret/action", True)):
        assert secret_bearing(operation), operation
        decision = decide(policy, operation, scope, data_action=data)
        assert decision.effect is Effect.DENY
        assert book.widen("s-1", decision)[0].effect is Effect.DENY, operation


@pytest.mark.parametrize("justification", [
    "restart after the config change\n  at: /subscriptions/x/resourceGroups/rg-dev (dev only)",
    "restart\r  operation: Microsoft.Web/sites/read",
    "restart\u2028  at: rg-dev",  # a line separator renders as a new line too
    "restart \u202egnp.ved-gr\u202c",  # a right-to-left override makes the text read otherwise
    "restart \x1b[2K\x1b[1Aapproved scope: rg-dev",  # terminal escapes rewrite what was shown
])
async def test_a_justification_cannot_forge_lines_of_the_approval_question(fresh_sandbox_state, tmp_path, justification):
    """The justification is the agent's text inside the human's question: it must not add or hide lines."""
    from access_helpers import request_args

    sandbox = fresh_sandbox_state
    asked: list[str] = []
    runtime = elevation_runtime(sandbox, tmp_path)
    async with Client(build_server(runtime), elicitation_callback=approver(asked)) as client:
        answer = await client.call_tool("access_request", request_args(sandbox.manifest, justification=justification))
    runtime.close()
    assert asked == [], asked
    assert answer.is_error and error_of(answer)["code"] == "AccessRequestRefused", answer.content[0].text
    assert "justification" in answer.content[0].text


async def test_two_concurrent_overlapping_requests_make_one_grant(fresh_sandbox_state, tmp_path):
    """Both pass the overlap check before either grant exists (the tool looks for a PIM eligibility in
    between): approved together, they must still leave one grant, the other refused as overlapping."""
    import anyio
    from access_helpers import elevation_policy, request_args

    sandbox = fresh_sandbox_state
    policy = elevation_policy(tmp_path, sandbox.manifest, Roles=["Reader"])  # no eligibility: local grants only
    runtime = elevation_runtime(sandbox, tmp_path, policy=policy)
    answers: list[Any] = [None, None]
    async with Client(build_server(runtime), elicitation_callback=approver(think=0.3)) as client:
        async def ask(index: int) -> None:
            answers[index] = await client.call_tool("access_request", request_args(
                sandbox.manifest, justification=f"restart app-orders-prod, reason {index}"))

        async with anyio.create_task_group() as group:
            group.start_soon(ask, 0)
            group.start_soon(ask, 1)
        listed = await client.call_tool("access_list", {})
    runtime.close()
    assert len(listed.structured_content["items"]) == 1, listed.structured_content
    refused = [a for a in answers if a.is_error]
    assert len(refused) == 1 and "overlaps" in refused[0].content[0].text, [a.content[0].text for a in answers]
