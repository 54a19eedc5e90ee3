"""The server-management door (a fixed allowlist, audited) and the rule that says an identity is no longer used."""

from __future__ import annotations

import datetime
import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st
from server_helpers import audit_records

from azure_agent_mcp.access.ephemeral import (
    made_by,
    TAG,
    TAG_EXPIRES,
    TAG_PROCESS,
    EphemeralRole,
    leftover_reason,
    roles_of,
)
from azure_agent_mcp.access.management import ManagementRequestRefused, ManagementTransport, allowlist

SUB = "5a1db0c5-a000-4000-a000-00000000000a"
SCOPE = f"/subscriptions/{SUB}/resourceGroups/rg-prod-app"
GUID = "3c78cddc-f099-4309-aadb-6fe90b113980"


def _transport(sandbox, tmp_path):
    from azure.core.pipeline.transport import RequestsTransport

    from azure_agent_mcp.policy import AuditLog

    env = sandbox.environment()
    audit = AuditLog(tmp_path / "audit.jsonl")
    rules = allowlist(sandbox.manifest["graph_endpoint"], env.arm_endpoint, (SCOPE,))
    return ManagementTransport(RequestsTransport(connection_verify=env.connection_verify), rules, audit, "s-1"), audit


def _request(method: str, url: str):
    from azure.core.pipeline.transport import HttpRequest

    return HttpRequest(method, url)


@pytest.mark.parametrize("method, path", [
    ("GET", f"/subscriptions/{SUB}/resourcegroups"),  # an ordinary read: not the server's business here
    ("PUT", f"/subscriptions/{SUB}/resourceGroups/rg-prod-data/providers/Microsoft.Authorization/"
            f"roleAssignmentScheduleRequests/{GUID}"),  # PIM, but at a scope not configured
    ("PUT", f"{SCOPE}/providers/Microsoft.Authorization/roleAssignments/{GUID}"),  # a standing assignment
    ("PUT", f"{SCOPE}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{GUID}/../{GUID}"),
    ("POST", "/beta/applications"),  # Graph, but not agent identities
    ("DELETE", "/beta/users/" + GUID),
    ("PATCH", "/beta/servicePrincipals/microsoft.graph.agentIdentity"),
])
def test_outside_the_allowlist_nothing_is_sent_and_the_refusal_is_audited(fresh_sandbox_state, tmp_path, method, path):
    transport, audit = _transport(fresh_sandbox_state, tmp_path)
    since = fresh_sandbox_state.last_seq()
    with pytest.raises(ManagementRequestRefused):
        transport.send(_request(method, fresh_sandbox_state.manifest["arm_endpoint"] + path))
    audit.close()
    assert fresh_sandbox_state.requests(since=since) == []
    refused = audit_records(tmp_path / "audit.jsonl", "refused")
    assert len(refused) == 1 and refused[0]["door"] == "server-management" and refused[0]["decision"] == "deny"
    assert refused[0]["method"] == method and refused[0]["session_id"] == "s-1"
    assert not audit_records(tmp_path / "audit.jsonl", "intent")


def test_another_host_is_refused_even_on_an_allowed_path(fresh_sandbox_state, tmp_path):
    transport, audit = _transport(fresh_sandbox_state, tmp_path)
    with pytest.raises(ManagementRequestRefused):
        transport.send(_request("POST", "https://graph.example.com/beta/servicePrincipals/microsoft.graph.agentIdentity"))
    audit.close()


def test_an_allowed_request_has_its_intent_first_and_its_outcome(fresh_sandbox_state, tmp_path):
    transport, audit = _transport(fresh_sandbox_state, tmp_path)
    url = fresh_sandbox_state.manifest["graph_endpoint"] + "/beta/servicePrincipals/microsoft.graph.agentIdentity"
    response = transport.send(_request("GET", url))
    assert response.status_code == 401  # no token here: the point is only that it was sent, and recorded so
    audit.close()
    records = [r for r in audit_records(tmp_path / "audit.jsonl") if r.get("door") == "server-management"]
    assert [r["kind"] for r in records] == ["intent", "outcome"]
    assert records[0]["operation"] == "microsoft.graph/agentIdentities/read" and records[1]["status"] == 401
    sent = fresh_sandbox_state.requests(kind="graph")[-1]
    assert sent["correlation_id"] == records[0]["correlation_id"]


NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.timezone.utc)


def _tags(host: str, pid: int, expires: datetime.datetime | None) -> list[str]:
    tags = [TAG, f"{TAG_PROCESS}{host}/{pid}"]
    if expires is not None:
        tags.append(f"{TAG_EXPIRES}{expires.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    return tags


def test_leftover_rules():
    here = socket.gethostname()
    soon = NOW + datetime.timedelta(minutes=30)
    dead = lambda pid: False  # noqa: E731
    alive = lambda pid: True  # noqa: E731
    assert "is gone" in leftover_reason(_tags(here, 999999, soon), NOW, 600, alive=dead)
    assert leftover_reason(_tags(here, 999999, soon), NOW, 600, alive=alive) is None
    assert leftover_reason(_tags(here, os.getpid(), soon), NOW, 600, alive=dead) is None  # this very process
    assert leftover_reason(_tags("elsewhere", 1, soon), NOW, 600, alive=dead) is None  # can't know: lease runs
    assert leftover_reason(_tags("elsewhere", 1, NOW - datetime.timedelta(minutes=9)), NOW, 600) is None  # in grace
    assert "lease ended" in leftover_reason(_tags("elsewhere", 1, NOW - datetime.timedelta(minutes=11)), NOW, 600)
    assert "no lease" in leftover_reason([TAG, f"{TAG_PROCESS}elsewhere/1"], NOW, 600)


@given(minutes=st.integers(-10_000, 10_000), grace=st.integers(0, 100_000), other_host=st.booleans(),
       process_alive=st.booleans())
def test_a_running_lease_on_another_host_is_never_swept(minutes, grace, other_host, process_alive):
    """Whatever the numbers: an identity is swept only if its process is gone here or its lease+grace is over."""
    expires = NOW + datetime.timedelta(minutes=minutes)
    host = "elsewhere" if other_host else socket.gethostname()
    reason = leftover_reason(_tags(host, 424242, expires), NOW, grace, alive=lambda pid: process_alive)
    lease_over = NOW > expires + datetime.timedelta(seconds=grace)
    process_gone = not other_host and not process_alive
    assert (reason is not None) == (lease_over or process_gone)


def test_role_tags_round_trip():
    role = EphemeralRole.parse(f"Website Contributor@{SCOPE}/")
    assert role.scope == SCOPE and role.role_definition == "de139f84-1756-47ae-9be6-808fbbe84772"
    assert roles_of([TAG, role.tag, "azure-agent-mcp:role=junk"]) == [EphemeralRole(role.role_definition, SCOPE)]


BLUEPRINT = "0b1e5c1a-0000-4000-a000-0000000000b1"


@pytest.mark.parametrize("item, ours", [
    ({"id": "x", "tags": [TAG], "agentIdentityBlueprintId": BLUEPRINT}, True),
    ({"id": "x", "tags": [TAG], "agentIdentityBlueprintId": BLUEPRINT.upper()}, True),
    ({"id": "x", "tags": [], "agentIdentityBlueprintId": BLUEPRINT}, False),  # untagged: a person's, not ours
    ({"id": "x", "tags": [TAG + "x"], "agentIdentityBlueprintId": BLUEPRINT}, False),
    ({"id": "x", "tags": [TAG], "agentIdentityBlueprintId": "another"}, False),  # another blueprint's
    ({"id": "x", "tags": [TAG]}, False),
    ({"id": "x", "tags": TAG, "agentIdentityBlueprintId": BLUEPRINT}, False),  # not a list
])
def test_the_sweep_deletes_only_what_it_can_tell_is_its_own_whatever_graph_listed(item, ours):
    """The listing's filter is Graph's; a deletion is ours, so the sweep checks the tag and blueprint again."""
    assert made_by(item, BLUEPRINT) is ours
