"""The audit's faults through `serve`, over stdio, against the session sandbox, while the server runs.

For each fault a real tool call that would reach ARM (``group_list`` under the default read-only
policy) is made while the fault is there, then again once it is gone. The sandbox's own request
log (filtered by the server's agent session, which the sandbox reads from the token's claims) is
the witness of what was sent; the audit file is the witness of what was recorded:

- while the intent record cannot be written, NO request reaches the sandbox, and the tool result
  is ``AuditUnavailable`` naming the log's path and the cause and saying nothing was sent;
- the server keeps serving (``tools/list`` answers; the process is alive);
- once the fault is cleared the next call succeeds and every request it sent has an intent record
  with its correlation id and the path exactly as the sandbox received it (recovery, no restart).

Real faults: a small tmpfs filled up, a read-only file system mounted over the log's directory,
the file deleted, the path turned into a directory, a torn tail left by an earlier run. Tests that
need mounts skip with the reason where mounting is impossible.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from serve_helpers import (
    StdioServe,
    error_of,
    fill_up,
    new_session,
    read_only_over,
    sent,
    serve_command,
    serve_env,
    text_of,
    tmpfs,
    tool_records,
    unaudited,
    verify,
)
from server_helpers import audit_records

TOOL = "group_list"  # GET /subscriptions/{s}/resourcegroups: one ARM request per call


def _succeeds_and_is_audited(server: StdioServe, sandbox: Any, audit: Path) -> list[dict[str, Any]]:
    """A call that reached ARM, every request of it audited (intent: correlation id, method, path as sent)."""
    since = sandbox.last_seq()
    result = server.call(TOOL)
    assert not result.get("isError"), text_of(result)
    requests = sent(sandbox, since, session=server.session)
    assert requests, "the call sent nothing to the sandbox"
    assert unaudited(requests, audit) == [], "requests reached the sandbox without an intent record"
    correlations = {r["correlation_id"] for r in requests}
    assert len(correlations) == 1
    (tool,) = tool_records(audit, correlations.pop())
    assert tool["status"] == "ok" and tool["tool"] == TOOL
    return requests


def _refused_and_nothing_sent(server: StdioServe, sandbox: Any, audit: Path, cause: str) -> dict[str, Any]:
    """While the intent cannot be written: AuditUnavailable (path, cause, nothing sent), no request out."""
    intents_before = len(audit_records(audit, "intent")) if audit.is_file() else 0
    since = sandbox.last_seq()
    result = server.call(TOOL)
    assert sent(sandbox, since, session=server.session) == [], "a request left without its intent record"
    assert result.get("isError") is True
    error = error_of(result)
    assert error["code"] == "AuditUnavailable", result
    message = error["message"]
    assert f"cannot write {audit}: {cause}" in message, message
    assert "Nothing more of this call was sent to Azure" in message and "no request leaves without" in message
    assert str(audit) in error["hint"] and "keeps running" in error["hint"]
    assert text_of(result).startswith("AuditUnavailable: ")
    if audit.is_file():
        assert len(audit_records(audit, "intent")) == intents_before, "an intent was recorded for a refused call"
    return result


def _keeps_serving(server: StdioServe) -> None:
    assert server.alive()
    assert TOOL in server.tools()


def _stopped_cleanly(server: StdioServe) -> None:
    assert server.close() == 0, server.stderr()


# -- disk full -----------------------------------------------------------------------------------------


def test_disk_full_on_a_small_tmpfs_sends_nothing_then_recovers_when_space_returns(sandbox, tmp_path):
    """The log on a 256 KiB tmpfs; a filler file takes the rest while the server runs.

    The anchor is kept on another file system (``--audit-anchor``) so that the fault is precisely
    the log's: a checkpoint falling due during the fault would otherwise name the anchor instead.
    A file's last page on tmpfs is already allocated, so the first calls after the fill may still
    fit in its slack; calls are made until one is refused (each of them audited if it sent anything).
    """
    with tmpfs(tmp_path / "small", "256k") as mount:
        audit = mount / "audit.jsonl"
        anchor = tmp_path / "anchor" / "audit.anchor"
        with StdioServe(sandbox, audit, tmp_path / "state", "--audit-anchor", str(anchor),
                        session=new_session("disk-full")) as server:
            _succeeds_and_is_audited(server, sandbox, audit)
            filler = fill_up(mount)
            since = sandbox.last_seq()
            refused = None
            for _ in range(20):
                before = sandbox.last_seq()
                result = server.call(TOOL)
                if result.get("isError") and not sent(sandbox, before, session=server.session):
                    refused = result
                    break
            assert refused is not None, "the full disk never refused an intent record"
            assert unaudited(sent(sandbox, since, session=server.session), audit) == []
            assert "No space left on device" in error_of(refused)["message"]
            # still full: refused again, precisely, and nothing is sent
            for _ in range(2):
                _refused_and_nothing_sent(server, sandbox, audit, "No space left on device")
            _keeps_serving(server)

            filler.unlink()  # space comes back: the next call works, nobody restarted anything
            _succeeds_and_is_audited(server, sandbox, audit)
            _succeeds_and_is_audited(server, sandbox, audit)
            _stopped_cleanly(server)
        code, result = verify(audit, "--anchor", str(anchor))
        assert code == 0 and result["ok"] and result["closed"], result  # no torn record, no gap: the chain held
        assert all(line.endswith(b"}") for line in audit.read_bytes().splitlines())


# -- read-only directory ------------------------------------------------------------------------------


def test_a_read_only_file_system_over_the_log_directory_sends_nothing_then_recovers(sandbox, tmp_path):
    directory = tmp_path / "logs"
    audit = directory / "audit.jsonl"
    with StdioServe(sandbox, audit, tmp_path / "state", session=new_session("read-only")) as server:
        _succeeds_and_is_audited(server, sandbox, audit)
        records_before = len(audit_records(audit))
        with read_only_over(directory):
            for _ in range(2):
                _refused_and_nothing_sent(server, sandbox, audit, "Read-only file system")
            _keeps_serving(server)
        assert len(audit_records(audit)) == records_before  # nothing was written anywhere meanwhile
        _succeeds_and_is_audited(server, sandbox, audit)
        _stopped_cleanly(server)
    code, result = verify(audit)
    assert code == 0 and result["ok"] and result["closed"], result
    kinds = [r["kind"] for r in audit_records(audit)]
    assert "gap" not in kinds and "repair" not in kinds  # the same file, continued: nothing lost


# -- the file deleted, the path a directory ---------------------------------------------------------------


def test_the_log_deleted_under_the_server_is_a_recorded_gap_not_a_silent_new_chain(sandbox, tmp_path):
    """Deleting the log does not stop the audit (the writer recreates the file), so the call goes on;
    but the new file opens with a ``gap`` record, and verify names the deletion and the lost seqs."""
    audit = tmp_path / "audit.jsonl"
    with StdioServe(sandbox, audit, tmp_path / "state", session=new_session("deleted")) as server:
        _succeeds_and_is_audited(server, sandbox, audit)
        _succeeds_and_is_audited(server, sandbox, audit)
        lost = audit_records(audit)
        audit.unlink()
        requests = _succeeds_and_is_audited(server, sandbox, audit)  # its intent is in the new file
        _stopped_cleanly(server)
    gap = audit_records(audit)[0]
    assert gap["kind"] == "gap" and gap["reason"] == "missing", gap
    assert (gap["expected_seq"], gap["expected_hash"]) == (lost[-1]["seq"], lost[-1]["hash"])
    assert gap["prev_hash"] == lost[-1]["hash"] and gap["seq"] == lost[-1]["seq"] + 1  # the chain goes on
    assert any(i["correlation_id"] == requests[0]["correlation_id"] for i in audit_records(audit, "intent"))
    code, result = verify(audit)
    assert code == 1 and not result["ok"]
    assert (result["first_bad_line"], result["bad_seq"]) == (1, gap["seq"])
    assert "deleted while a writer ran" in result["problem"]
    assert f"records seq 1..{lost[-1]['seq']} are missing" in result["problem"]


def test_the_log_path_turned_into_a_directory_under_the_server_sends_nothing_then_recovers(sandbox, tmp_path):
    audit = tmp_path / "audit.jsonl"
    with StdioServe(sandbox, audit, tmp_path / "state", session=new_session("dir-path")) as server:
        _succeeds_and_is_audited(server, sandbox, audit)
        lost = audit_records(audit)
        audit.unlink()
        audit.mkdir()
        for _ in range(2):
            _refused_and_nothing_sent(server, sandbox, audit, "is a directory")
        _keeps_serving(server)
        audit.rmdir()
        _succeeds_and_is_audited(server, sandbox, audit)
        _stopped_cleanly(server)
    gap = audit_records(audit)[0]
    assert gap["kind"] == "gap" and gap["reason"] == "missing", gap
    assert gap["expected_seq"] == lost[-1]["seq"] and gap["prev_hash"] == lost[-1]["hash"]
    code, result = verify(audit)
    assert code == 1 and "deleted while a writer ran" in result["problem"], result


def test_serve_refuses_to_start_on_a_directory_as_the_audit_path(sandbox, tmp_path):
    audit = tmp_path / "audit-dir"
    audit.mkdir()
    session = new_session("refuse-start")
    since = sandbox.last_seq()
    done = subprocess.run(serve_command(sandbox, audit), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=serve_env(tmp_path / "state", COPILOT_AGENT_SESSION_ID=session))
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert "refusing to start" in done.stderr and f"cannot write {audit}: is a directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert sent(sandbox, since, session=session) == []
    assert list(audit.iterdir()) == []


# -- a torn tail left by an earlier run ---------------------------------------------------------------------


def test_a_torn_tail_left_by_an_earlier_run_is_repaired_at_start_and_verify_says_what(sandbox, tmp_path):
    audit = tmp_path / "audit.jsonl"
    with StdioServe(sandbox, audit, tmp_path / "state", session=new_session("torn-1")) as server:
        for _ in range(3):
            _succeeds_and_is_audited(server, sandbox, audit)
        _stopped_cleanly(server)
    good = audit_records(audit)
    # what a crash in the middle of an append leaves: the first part of a record, no newline
    torn = json.dumps({**good[-1], "seq": good[-1]["seq"] + 1}, sort_keys=True).encode()[:173]
    with audit.open("ab") as handle:
        handle.write(torn)

    code, before = verify(audit)
    assert code == 1 and not before["ok"]
    assert before["torn_tail_bytes"] == len(torn) and before["records"] == len(good)
    assert (before["first_bad_line"], before["bad_seq"]) == (len(good) + 1, None)
    assert f"a torn tail of {len(torn)} bytes after {len(good)} good records" in before["problem"]

    with StdioServe(sandbox, audit, tmp_path / "state", session=new_session("torn-2")) as server:
        repair = audit_records(audit)[len(good)]  # repaired at start, before any call
        assert repair["kind"] == "repair" and repair["seq"] == good[-1]["seq"] + 1
        assert repair["dropped_bytes"] == len(torn)
        assert repair["dropped_sha256"] == hashlib.sha256(torn).hexdigest()
        assert repair["prev_hash"] == good[-1]["hash"]
        _succeeds_and_is_audited(server, sandbox, audit)
        _stopped_cleanly(server)
    assert "torn tail" in server.stderr()  # the operator is told at start, too

    code, after = verify(audit)
    assert code == 0 and after["ok"] and after["closed"], after
    assert after["repairs"] == 1
    notes = " ".join(after["notes"])
    assert f"seq {repair['seq']}" in notes and f"{len(torn)} bytes" in notes, notes
