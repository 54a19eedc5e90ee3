"""`serve --credential agent-identity --ephemeral-agent` against the sandbox: a fresh agent identity per
session, used for its tokens, deleted at its end; a crashed server's leftovers removed at the next start;
the server's Graph requests audited through the fixed allowlist; no token byte anywhere it writes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ephemeral_helpers import EPHEMERAL_TAG, Graph
from serve_helpers import SERVE, StdioServe, serve_env, text_of, verify
from server_helpers import audit_records

EPHEMERAL = ("--credential", "agent-identity", "--ephemeral-agent")


def wait_until(condition, what: str, timeout: float = 60.0):
    """Poll ``condition`` until it is truthy (a bound on waiting, never an assertion about speed)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def ephemeral_events(audit: Path) -> list[dict]:
    return [r for r in audit_records(audit, "ephemeral")]


def management(audit: Path) -> list[dict]:
    return [r for r in audit_records(audit) if r.get("door") == "server-management"]


def test_create_use_delete(fresh_sandbox_state, tmp_path):
    sandbox = fresh_sandbox_state
    graph = Graph(sandbox)
    audit = tmp_path / "audit.jsonl"
    assert graph.ephemeral() == []  # before: nothing of ours in the directory
    since = sandbox.last_seq()
    with StdioServe(sandbox, audit, tmp_path / "state", *EPHEMERAL) as server:
        who = server.call("whoami", {})
        assert not who.get("isError"), text_of(who)
        credential = who["structuredContent"]["credential"]
        agent_id = credential["agent_identity_id"]
        assert agent_id != sandbox.manifest["agent_identity"]["agent_identity_id"]  # a new one, not the seeded
        assert who["structuredContent"]["principal"]["appid"] == agent_id
        # during: Graph holds exactly this identity, tagged with this process and session, sponsored by the operator
        held = graph.ephemeral()
        assert [a["id"] for a in held] == [agent_id]
        tags = held[0]["tags"]
        assert EPHEMERAL_TAG in tags
        assert f"azure-agent-mcp:session={server.session}" in tags
        assert f"azure-agent-mcp:process={__import__('socket').gethostname()}/{server.proc.pid}" in tags
        sponsors = graph.send("GET", f"/beta/servicePrincipals/{agent_id}?$expand=sponsors", graph.token()).json()
        assert sponsors["sponsors"] == [{"@odata.type": "#microsoft.graph.user", "id": graph.developer}]
        # the session's ARM requests carry the new identity's tokens
        server.call("group_list", {})
        arm = sandbox.requests(kind="arm", since=since)
        assert arm and {r["token_claims"]["appid"] for r in arm} == {agent_id}
        grants = [r for r in sandbox.requests(kind="token", since=since) if r.get("fmi_path")]
        assert grants and {g["fmi_path"] for g in grants} == {agent_id}
        assert server.close() == 0
    # after: gone from Graph, and the audit tells the story in order
    assert graph.ephemeral() == []
    events = [(e["event"], e.get("agent_identity_id")) for e in ephemeral_events(audit)]
    assert events == [("sweep", None), ("created", agent_id), ("deleted", agent_id)]
    doors = [(r["kind"], r.get("method"), r.get("operation")) for r in management(audit) if r["kind"] != "outcome"]
    assert doors == [("intent", "GET", "microsoft.graph/agentIdentities/read"),
                     ("intent", "POST", "microsoft.graph/agentIdentities/create"),
                     ("intent", "DELETE", "microsoft.graph/agentIdentities/delete")]
    graph_requests = [r for r in sandbox.requests(kind="graph", since=since)  # the server's, not this test's
                      if (r.get("user_agent") or "").startswith("azure-agent-mcp")]
    assert [(r["method"], r["status"]) for r in graph_requests] == [("GET", 200), ("POST", 201), ("DELETE", 204)]
    assert all(r["caller_appid"] == graph.blueprint_id for r in graph_requests)
    _no_secret_bytes(sandbox, audit.read_bytes() + server.stderr_path.read_bytes(), since)
    code, report = verify(audit)
    assert code == 0, report  # the management and lifecycle records are links of the same hash chain


def test_an_expired_session_loses_its_identity(fresh_sandbox_state, tmp_path):
    """No roles, a 12 s session (over HTTP a session starts with its first request, not with the process): at
    its end the timer deletes the identity, and the session gets no more tokens."""
    import httpx
    from http_raw import call, result_of
    from serve_helpers import HttpServe

    sandbox = fresh_sandbox_state
    graph = Graph(sandbox)
    audit = tmp_path / "audit.jsonl"
    server = HttpServe(sandbox, audit, tmp_path / "state", *EPHEMERAL, "--session-ttl", "12s")
    try:
        with httpx.Client(timeout=60, trust_env=False) as http:
            who = result_of(call(http, server.url, "whoami", session="short"))["structuredContent"]
            agent_id = who["credential"]["agent_identity_id"]
            assert [a["id"] for a in graph.ephemeral()] == [agent_id]
            wait_until(lambda: not graph.ephemeral(), "the expired session's identity to be deleted", timeout=60)
            deleted = next(e for e in ephemeral_events(audit) if e["event"] == "deleted")
            assert deleted["reason"] == "its session expired" and deleted["agent_identity_id"] == agent_id
            after = result_of(call(http, server.url, "group_list", session="short"))
            assert after.get("isError") and "expired" in text_of(after)
        assert server.terminate() == 0
    finally:
        server.kill()
    assert [e["event"] for e in ephemeral_events(audit)].count("created") == 1  # no second identity was made


def test_crash_clean_up(fresh_sandbox_state, tmp_path):
    """kill -9 leaves the identity behind; the next start finds it (its process is gone) and removes it."""
    sandbox = fresh_sandbox_state
    graph = Graph(sandbox)
    audit = tmp_path / "audit.jsonl"
    first = StdioServe(sandbox, audit, tmp_path / "state", *EPHEMERAL)
    who = first.call("whoami", {})
    leftover = who["structuredContent"]["credential"]["agent_identity_id"]
    first.kill()  # SIGKILL: no handler, no clean-up
    assert [a["id"] for a in graph.ephemeral()] == [leftover]

    # someone else's live identity (another host, lease running) must survive the sweep
    foreign = graph.send("POST", "/beta/servicePrincipals/microsoft.graph.agentIdentity", graph.token(), json=graph.body(
        tags=[EPHEMERAL_TAG, "azure-agent-mcp:process=elsewhere/1", "azure-agent-mcp:expires=2999-01-01T00:00:00Z"]))
    assert foreign.status_code == 201
    with StdioServe(sandbox, audit, tmp_path / "state", *EPHEMERAL) as second:
        swept = wait_until(lambda: [e for e in ephemeral_events(audit) if e["event"] == "sweep"][1:], "the sweep")
        assert swept[0]["removed"] == 1
        remaining = {a["id"] for a in graph.ephemeral()}
        assert leftover not in remaining and foreign.json()["id"] in remaining
        reason = next(e for e in ephemeral_events(audit) if e["event"] == "swept")
        assert reason["agent_identity_id"] == leftover and "is gone" in reason["reason"]
        assert second.close() == 0
    assert {a["id"] for a in graph.ephemeral()} == {foreign.json()["id"]}


def test_an_expired_lease_is_swept_whoever_made_it(fresh_sandbox_state, tmp_path):
    """A leftover of another host whose session ended longer ago than the grace period is removed too."""
    sandbox = fresh_sandbox_state
    graph = Graph(sandbox)
    old = graph.send("POST", "/beta/servicePrincipals/microsoft.graph.agentIdentity", graph.token(), json=graph.body(
        tags=[EPHEMERAL_TAG, "azure-agent-mcp:process=elsewhere/1", "azure-agent-mcp:expires=2020-01-01T00:00:00Z"]))
    untagged = graph.send("POST", "/beta/servicePrincipals/microsoft.graph.agentIdentity", graph.token(),
                          json=graph.body(tags=["someone-elses"]))
    audit = tmp_path / "audit.jsonl"
    with StdioServe(sandbox, audit, tmp_path / "state", *EPHEMERAL, "--ephemeral-grace", "1m") as server:
        wait_until(lambda: [e for e in ephemeral_events(audit) if e["event"] == "sweep"], "the sweep")
        assert server.close() == 0
    listed = graph.send("GET", "/beta/servicePrincipals/microsoft.graph.agentIdentity", graph.token()).json()["value"]
    ids = {a["id"] for a in listed}
    assert old.json()["id"] not in ids and untagged.json()["id"] in ids  # never touches what it did not tag


@pytest.mark.parametrize("flags, message", [
    (("--ephemeral-role", "Reader@/subscriptions/x"), "only apply with --ephemeral-agent"),
    (("--ephemeral-agent",), "--credential agent-identity"),
    ((*EPHEMERAL, "--agent-identity-id", "5a1db0c5-a9e0-4000-a000-000000000a11"), "give one or the other"),
    ((*EPHEMERAL, "--session-ttl", "0"), "--session-ttl other than 0"),
    ((*EPHEMERAL, "--ephemeral-role", "Janitor@/subscriptions/5a1db0c5-a000-4000-a000-00000000000a"), "unknown role"),
    ((*EPHEMERAL, "--ephemeral-role", "Reader@/resourceGroups/x"), "ARM scope under a subscription"),
    ((*EPHEMERAL, "--ephemeral-sponsor", "operator"), "--ephemeral-sponsor"),
])
def test_bad_flags_refuse_to_start_naming_the_problem(sandbox, tmp_path, flags, message):
    done = subprocess.run([*SERVE, "--sandbox", str(sandbox.manifest_path), "--audit-log", str(tmp_path / "a.jsonl"),
                           *flags], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env=serve_env(tmp_path / "state"))
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert message in done.stderr


def test_whoami_refuses_ephemeral(sandbox, tmp_path):
    done = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "whoami", "--sandbox", str(sandbox.manifest_path),
                           *EPHEMERAL], capture_output=True, text=True, timeout=60, env=serve_env(tmp_path / "state"))
    assert done.returncode == 2 and "works with `serve` only" in done.stderr


def _no_secret_bytes(sandbox, captured: bytes, since: int) -> None:
    """No token the sandbox issued since ``since``, no blueprint secret, in what the server wrote."""
    secret = sandbox.manifest["agent_identity"]["blueprint_client_secret"].encode()
    assert secret not in captured
    issued = [r for r in sandbox.requests(kind="token", since=since) if r.get("issued_uti")]
    assert issued
    assert b"eyJ" not in captured  # no JWT (its base64url header) in any captured byte


def test_over_http_each_agent_session_has_its_own_identity_and_eviction_deletes_it(fresh_sandbox_state, tmp_path):
    import httpx
    from http_raw import call, result_of
    from serve_helpers import HttpServe

    sandbox = fresh_sandbox_state
    graph = Graph(sandbox)
    audit = tmp_path / "audit.jsonl"
    server = HttpServe(sandbox, audit, tmp_path / "state", *EPHEMERAL, "--max-sessions", "1")
    try:
        with httpx.Client(timeout=60, trust_env=False) as http:
            first = result_of(call(http, server.url, "whoami", session="chat-a"))["structuredContent"]
            first_id = first["credential"]["agent_identity_id"]
            assert [a["id"] for a in graph.ephemeral()] == [first_id]
            second = result_of(call(http, server.url, "whoami", session="chat-b"))["structuredContent"]
            second_id = second["credential"]["agent_identity_id"]
            assert second_id != first_id and second["principal"]["appid"] == second_id
            # the cap evicted chat-a (idle): its identity goes with it
            wait_until(lambda: [a["id"] for a in graph.ephemeral()] == [second_id], "chat-a's identity to go")
            tags = next(a for a in graph.ephemeral())["tags"]
            assert "azure-agent-mcp:session=chat-b" in tags
        assert server.terminate() == 0
    finally:
        server.kill()
    assert graph.ephemeral() == []
    deleted = {e["agent_identity_id"]: e["reason"] for e in ephemeral_events(audit) if e["event"] == "deleted"}
    assert set(deleted) == {first_id, second_id}


@pytest.mark.parametrize("method, path", [
    ("POST", "/beta/servicePrincipals/microsoft.graph.agentIdentity"),
    ("DELETE", "/beta/servicePrincipals/{agent}/microsoft.graph.agentIdentity"),
    ("PUT", "{group}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/3c78cddc-f099-4309-aadb-6fe90b113980"),
])
def test_the_agent_cannot_use_the_servers_door(fresh_sandbox_state, tmp_path, method, path):
    """What the server may do for its identities, the agent may not: its requests pass its own guard and its own
    token, so making identities, deleting its identity or assigning itself roles goes nowhere."""
    sandbox = fresh_sandbox_state
    graph = Graph(sandbox)
    group = f"/subscriptions/{sandbox.manifest['subscriptions'][0]['id']}/resourceGroups/rg-prod-app"
    audit = tmp_path / "audit.jsonl"
    with StdioServe(sandbox, audit, tmp_path / "state", *EPHEMERAL, "--policy", "unrestricted",
                    "--dangerously-skip-confirmation") as server:
        agent_id = server.call("whoami", {})["structuredContent"]["credential"]["agent_identity_id"]
        since = sandbox.last_seq()
        body = {"properties": {"principalId": agent_id, "requestType": "AdminAssign",
                               "roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/"
                                                   "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"}}
        answer = server.call("arm_request", {"method": method, "path": path.format(agent=agent_id, group=group),
                                             "api_version": "2020-10-01", "body": body if method == "PUT" else None})
        assert answer.get("isError"), text_of(answer)
        assert [a["id"] for a in graph.ephemeral()] == [agent_id]  # nothing made, nothing deleted
        assert not [a for a in sandbox.state.world.role_assignments if a.principal_id == agent_id]
        created = [r for r in sandbox.requests(kind="graph", since=since) if r["method"] == "POST" and r["status"] == 201]
        assert created == []
        assert server.close() == 0
