"""`serve --ephemeral-agent --ephemeral-role ...`: the fresh identity holds only time-bound roles (PIM AdminAssign
ending with its session), they stop granting on the sandbox clock, and no role outlives the identity —
neither on a clean stop nor after a crash."""

from __future__ import annotations

from ephemeral_helpers import Graph
from serve_helpers import StdioServe, text_of
from server_helpers import audit_records
from test_ephemeral_agent import EPHEMERAL, ephemeral_events, wait_until

WEBSITE_CONTRIBUTOR = "de139f84-1756-47ae-9be6-808fbbe84772"


def _group(sandbox) -> str:
    return f"/subscriptions/{sandbox.manifest['subscriptions'][0]['id']}/resourceGroups/rg-prod-app"


def _flags(sandbox, *extra: str) -> tuple[str, ...]:
    return (*EPHEMERAL, "--ephemeral-role", f"Website Contributor@{_group(sandbox)}", "--policy", "unrestricted",
            "--session-ttl", "30m", *extra)


def _restart(server, sandbox) -> dict:
    return server.call("arm_request", {"method": "POST", "api_version": "2023-12-01",
                                       "path": f"{_group(sandbox)}/providers/Microsoft.Web/sites/app-orders-prod/restart"})


def _roles_of(sandbox, principal: str) -> list:
    return [a for a in sandbox.state.world.role_assignments if a.principal_id == principal]


def test_time_bound_roles_through_serve(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    with StdioServe(sandbox, audit, tmp_path / "state", *_flags(sandbox)) as server:
        restarted = _restart(server, sandbox)
        assert not restarted.get("isError"), text_of(restarted)
        agent_id = server.call("whoami", {})["structuredContent"]["credential"]["agent_identity_id"]
        held = _roles_of(sandbox, agent_id)
        # exactly one assignment, time-bound, ending with the session (30 minutes from its start)
        assert [(a.role_definition_id, a.scope.lower()) for a in held] == [(WEBSITE_CONTRIBUTOR, _group(sandbox).lower())]
        assert held[0].end is not None and 29 * 60 <= held[0].end - held[0].start <= 30 * 60
        assigned = next(e for e in ephemeral_events(audit) if e["event"] == "assigned")
        assert assigned["agent_identity_id"] == agent_id and assigned["role"] == WEBSITE_CONTRIBUTOR

        sandbox.advance_clock("PT31M")  # past the assignment's end: the sandbox's RBAC refuses, same token
        refused = _restart(server, sandbox)
        assert refused.get("isError") and "AuthorizationFailed" in text_of(refused)
        assert server.close() == 0
    assert _roles_of(sandbox, agent_id) == [] and Graph(sandbox).ephemeral() == []
    # the PIM requests passed the allowlist, audited, each one answered
    puts = [r for r in audit_records(audit, "intent") if r.get("door") == "server-management" and r["method"] == "PUT"]
    assert puts and all(r["operation"] == "Microsoft.Authorization/roleAssignmentScheduleRequests/write" for r in puts)
    assert all(r.get("session_id") == server.session for r in puts)


def test_a_clean_stop_removes_the_roles_before_their_end(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    with StdioServe(sandbox, audit, tmp_path / "state", *_flags(sandbox)) as server:
        agent_id = server.call("whoami", {})["structuredContent"]["credential"]["agent_identity_id"]
        assert len(_roles_of(sandbox, agent_id)) == 1
        since = sandbox.last_seq()
        assert server.close() == 0
    removal = [e for e in sandbox.requests(kind="arm", since=since) if "roleAssignmentScheduleRequests" in e["path"]]
    assert [(e["method"], e["status"]) for e in removal] == [("PUT", 201)]  # the AdminRemove
    assert _roles_of(sandbox, agent_id) == []
    deleted = next(e for e in ephemeral_events(audit) if e["event"] == "deleted")
    assert deleted["assignments_removed"] == 1 and deleted["reason"] == "the session ended"


def test_crash_leftovers_lose_their_roles_too(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    first = StdioServe(sandbox, audit, tmp_path / "state", *_flags(sandbox))
    leftover = first.call("whoami", {})["structuredContent"]["credential"]["agent_identity_id"]
    first.kill()
    assert len(_roles_of(sandbox, leftover)) == 1
    with StdioServe(sandbox, audit, tmp_path / "state", *_flags(sandbox)) as second:
        wait_until(lambda: [e for e in ephemeral_events(audit) if e["event"] == "sweep"][1:], "the sweep")
        assert _roles_of(sandbox, leftover) == []
        assert leftover not in {a["id"] for a in Graph(sandbox).ephemeral()}
        assert second.close() == 0


def test_a_refused_assignment_leaves_no_identity(fresh_sandbox_state, tmp_path):
    """The blueprint may not assign at rg-prod-data: the tool call says why, and the identity made for it is gone."""
    sandbox = fresh_sandbox_state
    data = f"/subscriptions/{sandbox.manifest['subscriptions'][0]['id']}/resourceGroups/rg-prod-data"
    audit = tmp_path / "audit.jsonl"
    with StdioServe(sandbox, audit, tmp_path / "state", *EPHEMERAL, "--ephemeral-role", f"Reader@{data}",
                    "--session-ttl", "30m") as server:
        answer = server.call("group_list", {})
        assert answer.get("isError")
        text = text_of(answer)
        assert "AuthorizationFailed" in text and "roleAssignments/write" in text and "rg-prod-data" in text, text
        assert Graph(sandbox).ephemeral() == []
        assert server.alive()
        assert server.close() == 0
    events = [e["event"] for e in ephemeral_events(audit)]
    assert events[:4] == ["sweep", "created", "assign-failed", "deleted"]
