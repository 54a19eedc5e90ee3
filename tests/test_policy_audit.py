"""The audit trail: hash chain, 0600, rotation across files, concurrent writers, chain-level tamper detection.

Tampering by someone who can recompute the chain (the anchor's job) is in test_policy_audit_tamper.py;
disk faults in test_policy_audit_faults.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from audit_helpers import fill, isolated_state, records  # noqa: F401 - isolated_state is an autouse fixture
from azure_agent_mcp.policy import AuditLog, verify_audit
from azure_agent_mcp.policy.audit import GENESIS, audit_files, record_hash

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIxMjM0NTY3OCJ9.c2lnbmF0dXJlc2lnbmF0dXJl"
STORAGE_KEY = "K1a2b3c4d5e6f7g8h9i0j1k2l3m4n5o6p7q8r9s0t1u2v3w4x5y6z7A8B9C0D1E2F3G4H5I6J7K8L9M0N1O2==" 


_records = records
_fill = fill


def test_records_are_chained_and_the_file_is_private(tmp_path):
    path = tmp_path / "state" / "audit.jsonl"
    log = AuditLog(path)
    first = log.append({"kind": "tool", "tool": "subscription_list", "arguments": {}})
    second = log.append({"kind": "request", "operation": "Microsoft.Resources/subscriptions/read", "seq": 99, "hash": "x"})
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["prev_hash"] == GENESIS and second["prev_hash"] == first["hash"]
    assert second["hash"] == record_hash(second) and len(second["hash"]) == 64
    assert first["time"].endswith("+00:00")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _records(path) == [first, second]
    result = verify_audit([path])
    assert result.ok and result.records == 2 and result.anchored and result.genesis
    assert (result.first_seq, result.last_seq) == (1, 2)


def test_a_new_log_object_continues_the_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    _fill(path, 3)
    record = AuditLog(path).append({"kind": "tool"})
    assert record["seq"] == 4
    assert verify_audit([path]).ok


def test_secret_looking_arguments_and_tokens_are_redacted(tmp_path):
    path = tmp_path / "audit.jsonl"
    stored = AuditLog(path).append({
        "kind": "tool",
        "arguments": {
            "vault": "kv-prod", "name": "db-password", "secret_name": "api", "password": "hunter2",
            "client_secret": "abc", "token": "t0k3n", "connectionString": "Server=x;Password=p4ss",
            "body": {"properties": {"adminPassword": "s3cret", "location": "eastus"}},
            "note": f"Bearer {JWT}", "key_material": STORAGE_KEY, "settings": ["DefaultEndpointsProtocol=https;AccountKey=abc=="],
        },
        "error": f"failed with token {JWT}",
    })
    text = path.read_text()
    for secret in ("hunter2", "t0k3n", "p4ss", "s3cret", JWT, STORAGE_KEY, "AccountKey=abc"):
        assert secret not in text
    args = stored["arguments"]
    assert args["vault"] == "kv-prod" and args["name"] == "db-password" and args["secret_name"] == "api"
    assert args["body"]["properties"]["location"] == "eastus"
    assert stored["error"] == "***REDACTED***"
    assert verify_audit([path]).ok


def test_rotation_keeps_the_chain_across_files(tmp_path):
    path = tmp_path / "audit.jsonl"
    _fill(path, 60, max_bytes=2048, retain=20)
    files = audit_files(path)
    assert len(files) > 3
    assert all(f.stat().st_size <= 2048 for f in files)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    first_of_current = json.loads(path.read_text().splitlines()[0])
    last_of_previous = json.loads(files[-2].read_text().splitlines()[-1])
    assert first_of_current["prev_hash"] == last_of_previous["hash"]
    assert first_of_current["seq"] == last_of_previous["seq"] + 1
    result = verify_audit([path])  # rotated siblings are included automatically
    assert result.ok and result.records == 60 and result.anchored and result.genesis
    assert result.retired_segments == 0
    assert verify_audit([str(f) for f in files]).records == 60


def test_retention_seals_what_it_drops_and_verify_says_so(tmp_path):
    path = tmp_path / "audit.jsonl"
    _fill(path, 60, max_bytes=2048, retain=2)
    assert len(audit_files(path)) == 3  # two rotated segments and the current one
    result = verify_audit([path])
    assert result.ok and not result.genesis and result.records < 60 and result.last_seq > 60
    assert result.retired_segments >= 2 and result.retired_seqs[0] == 1
    assert result.retired_seqs[1] == result.first_seq - 1
    seals = [r for r in _records(path) if r["kind"] == "seal"]
    newest = max(seals, key=lambda r: r["seq"])
    assert newest["last_seq"] == result.first_seq - 1 and newest["retired_segments"] == result.retired_segments
    assert {"first_seq", "first_hash", "last_seq", "last_hash", "segment", "records"} <= set(newest)


def _tamper(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def _altered(lines):
    record = json.loads(lines[2])
    record["status"] = 500
    lines[2] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return lines


@pytest.mark.parametrize(("edit", "line", "seq", "problem"), [
    (_altered, 3, 3, "altered"),
    (lambda lines: lines[:2] + lines[3:], 3, 4, "deleted"),
    (lambda lines: lines[:1] + [lines[2], lines[1]] + lines[3:], 2, 3, "reordered"),
    (lambda lines: [lines[0]] * 2 + lines[1:], 2, 1, "prev_hash"),
    (lambda lines: lines[1:], 1, 2, "starts at seq 2 without its predecessor"),
    (lambda lines: lines[:3] + ["not json"] + lines[3:], 4, None, "not a JSON record"),
])
def test_tampering_is_detected_and_located(tmp_path, edit, line, seq, problem):
    path = tmp_path / "audit.jsonl"
    _fill(path, 6)
    _tamper(path, edit)
    result = verify_audit([path])
    assert not result.ok
    assert (result.first_bad_file, result.first_bad_line, result.bad_seq) == (str(path), line, seq)
    assert problem in result.problem


def test_truncated_rotation_file_is_detected(tmp_path):
    path = tmp_path / "audit.jsonl"
    _fill(path, 40, max_bytes=2048, retain=20)
    previous = audit_files(path)[-2]
    _tamper(previous, lambda lines: lines[:-1])
    result = verify_audit([path])
    assert not result.ok
    assert result.first_bad_file == str(path) and result.first_bad_line == 1
    assert "truncated" in result.problem


def test_deleted_rotation_files_are_detected(tmp_path):
    path = tmp_path / "audit.jsonl"
    _fill(path, 40, max_bytes=2048, retain=20)
    for old in audit_files(path)[:-1]:
        old.unlink()
    result = verify_audit([path])
    assert not result.ok and result.first_bad_line == 1 and "without its predecessor" in result.problem


def test_half_written_last_line_is_detected(tmp_path):
    path = tmp_path / "audit.jsonl"
    _fill(path, 3)
    data = path.read_bytes()
    path.write_bytes(data[:-20])
    result = verify_audit([path])
    assert not result.ok and result.first_bad_line == 3 and "incomplete" in result.problem


def test_concurrent_threads_and_processes_do_not_interleave(tmp_path):
    path = tmp_path / "audit.jsonl"
    writer = (
        "import sys\n"
        "from azure_agent_mcp.policy import AuditLog\n"
        "log = AuditLog(sys.argv[1], max_bytes=16384, retain=50)\n"
        "for i in range(40):\n"
        "    log.append({'kind': 'request', 'writer': 'process', 'pid_n': i, 'pad': 'x' * 200})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(path)]) for _ in range(2)]
    log = AuditLog(path, max_bytes=16384, retain=50)

    def work(n: int) -> None:
        for i in range(40):
            log.append({"kind": "request", "writer": f"thread-{n}", "i": i, "pad": "y" * 200})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(timeout=60) == 0 for p in procs)
    log.close()
    result = verify_audit([path])
    assert result.ok, result
    assert result.records == 200 and (result.first_seq, result.last_seq) == (1, 200)
    assert result.closed  # the last writer to close wrote the final checkpoint
    assert len(audit_files(path)) > 2  # rotation happened while several writers were appending
    writers = [r["writer"] for r in _records(path)]
    assert writers.count("process") == 80


def test_existing_world_readable_file_is_tightened(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.touch()
    os.chmod(path, 0o644)
    AuditLog(path).append({"kind": "tool"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
