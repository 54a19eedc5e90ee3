"""Faults the store must survive without lying: a full disk, a read-only or foreign path, a deleted
file, a torn tail, failed writes and fsyncs. Each must raise ``AuditUnavailable`` with the path and
the cause, never leave a torn record, and recover by itself once the fault is gone.

Real faults where the machine allows them: a small tmpfs for a full disk, a read-only remount
(root ignores permission bits, so mode 0555 would prove nothing), a subprocess as ``nobody`` for
"Permission denied". Each is skipped, with the reason, where mounting or switching users is not
permitted.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from audit_helpers import fill, isolated_state, records  # noqa: F401
from mounts import run, tmpfs
from azure_agent_mcp.policy import AuditLog, AuditUnavailable, verify_audit
from azure_agent_mcp.policy import audit_commit, audit_writer

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIxMjM0NTY3OCJ9.c2lnbmF0dXJlc2lnbmF0dXJl"


def _remount(where: Path, mode: str) -> None:
    done = run("mount", "-o", f"remount,{mode}", str(where))
    if done.returncode != 0:
        pytest.skip(f"cannot remount {mode} here ({done.stderr.strip()})")


def _ends_clean(path: Path) -> None:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "a torn record was left behind"
    for line in data.splitlines():
        json.loads(line)


# -- disk full ----------------------------------------------------------------------------------


def test_disk_full_on_a_small_tmpfs_leaves_no_torn_record_and_recovers(tmp_path):
    with tmpfs(tmp_path / "small", "64k") as mount:
        filler = mount / "filler"
        filler.write_bytes(b"x" * 16 * 1024)
        path = mount / "audit.jsonl"
        log = AuditLog(path, checkpoint_every=10**6, checkpoint_seconds=3600)
        written = 0
        with pytest.raises(AuditUnavailable) as caught:
            for i in range(1000):
                log.append({"kind": "request", "n": i, "pad": "p" * 900})
                written += 1
        error = caught.value
        assert error.cause == "No space left on device" and error.path == str(path)
        assert str(path) in str(error) and "No space left on device" in str(error)
        assert written > 10
        _ends_clean(path)
        with pytest.raises(AuditUnavailable):  # still full: still refused, still clean
            log.append({"kind": "request", "n": "again", "pad": "p" * 900})
        _ends_clean(path)

        filler.unlink()  # space comes back: the next append works, nobody restarted anything
        stored = log.append({"kind": "request", "n": "after", "pad": "p" * 900})
        assert stored["seq"] == written + 1
        log.close()
        result = verify_audit([path])
        assert result.ok, result.problem
        assert result.records == written + 1 and result.closed
        assert [r["n"] for r in records(path)][-1] == "after"


def test_a_short_write_is_cut_back_before_the_error(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append({"kind": "request", "n": 1})
    size = path.stat().st_size
    real_write = os.write

    def half(fd, data):
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(audit_writer.os, "write", half)
    with pytest.raises(AuditUnavailable) as caught:
        log.append({"kind": "request", "n": 2, "pad": "q" * 400})
    assert caught.value.cause == "No space left on device"
    assert path.stat().st_size == size
    monkeypatch.setattr(audit_writer.os, "write", real_write)
    assert log.append({"kind": "request", "n": 3})["seq"] == 2
    log.close()
    assert verify_audit([path]).ok


def test_a_failed_fsync_fails_the_durable_append_and_the_next_one_recovers(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append({"kind": "request", "n": 1})
    real_fsync = os.fsync
    failures = [OSError(errno.EIO, "Input/output error")]

    def flaky(fd):
        if failures:
            raise failures.pop()
        return real_fsync(fd)

    monkeypatch.setattr(audit_commit.os, "fsync", flaky)
    with pytest.raises(AuditUnavailable) as caught:
        log.append({"kind": "request", "n": 2})
    assert caught.value.cause == "Input/output error" and caught.value.doing == "fsync"
    assert log.append({"kind": "request", "n": 3})["seq"] == 3
    log.close()
    assert verify_audit([path]).ok


def test_errors_name_the_path_and_cause_but_never_the_record(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append({"kind": "tool"})

    def refuse(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit_writer.os, "write", refuse)
    with pytest.raises(AuditUnavailable) as caught:
        log.append({"kind": "request", "note": f"Bearer {JWT}", "secret_value": "hunter2-very-secret"})
    message = str(caught.value)
    assert JWT not in message and "hunter2" not in message
    assert message == f"audit log unavailable: cannot write {path}: No space left on device"


# -- read-only, directory, permission --------------------------------------------------------------


def test_a_read_only_file_system_refuses_at_start_with_the_cause(tmp_path):
    with tmpfs(tmp_path / "ro", "1m") as mount:
        _remount(mount, "ro")
        log = AuditLog(mount / "audit.jsonl")
        with pytest.raises(AuditUnavailable) as caught:
            log.check_writable()
        assert caught.value.cause == "Read-only file system"
        assert caught.value.path.startswith(str(mount / "audit.jsonl"))
        with pytest.raises(AuditUnavailable):
            log.append({"kind": "tool"})


def test_the_directory_turning_read_only_under_a_running_writer_and_back(tmp_path):
    """A read-only file system mounted over the log's directory while the writer runs.

    (Remounting the writer's own file system read-only is refused while it holds files open for
    writing: "mount point is busy". Shadowing the directory gives the same view to the writer:
    the path now answers "Read-only file system".)
    """
    directory = tmp_path / "logs"
    path = directory / "audit.jsonl"
    log = AuditLog(path)
    log.append({"kind": "request", "n": 1})
    with tmpfs(directory, "1m"):
        _remount(directory, "ro")
        with pytest.raises(AuditUnavailable) as caught:
            log.append({"kind": "request", "n": 2})
        assert caught.value.cause == "Read-only file system" and caught.value.path == str(path)
    assert log.append({"kind": "request", "n": 3})["seq"] == 2  # writable again: recovered, no gap
    log.close()
    result = verify_audit([path])
    assert result.ok and result.records == 2 and result.closed


def test_a_directory_as_the_log_path(tmp_path):
    path = tmp_path / "audit-dir"
    path.mkdir()
    with pytest.raises(AuditUnavailable) as caught:
        AuditLog.open(path)
    assert (caught.value.path, caught.value.cause) == (str(path), "is a directory")
    assert str(caught.value) == f"audit log unavailable: cannot write {path}: is a directory"


def test_serve_refuses_to_start_on_an_audit_it_cannot_write(tmp_path):
    path = tmp_path / "audit-dir"
    path.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_AGENT_MCP_")}
    env["AZURE_AGENT_MCP_STATE_DIR"] = str(tmp_path / "state")
    done = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "serve", "--audit-log", str(path)],
                          capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "refusing to start" in done.stderr and str(path) in done.stderr and "is a directory" in done.stderr


def test_permission_denied(tmp_path):
    """Root ignores mode bits, so the child runs as root without CAP_DAC_OVERRIDE (setpriv)."""
    if not hasattr(os, "getuid") or os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop the capability that ignores permission bits")
    locked = tmp_path / "root-only"
    locked.mkdir()
    os.chmod(locked, 0o555)
    script = (
        "import sys\n"
        "from azure_agent_mcp.policy import AuditLog, AuditUnavailable\n"
        "try:\n"
        "    AuditLog.open(sys.argv[1], key_path=sys.argv[2])\n"
        "except AuditUnavailable as exc:\n"
        "    print(exc.path)\n"
        "    print(exc.cause)\n"
    )
    drop = "-dac_override,-dac_read_search"
    done = subprocess.run(["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", "--",
                           sys.executable, "-c", script, str(locked / "audit.jsonl"), str(tmp_path / "key.pem")],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and not done.stdout:
        pytest.skip(f"setpriv did not run here: {done.stderr.strip()[-200:]}")
    failed_path, cause = done.stdout.strip().splitlines()
    assert cause == "Permission denied" and failed_path.startswith(str(locked / "audit.jsonl")), done.stderr


# -- deleted, replaced, torn -----------------------------------------------------------------------


def test_a_log_deleted_under_a_running_writer_is_not_a_silent_new_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(3):
        log.append({"kind": "request", "n": i})
    path.unlink()
    stored = log.append({"kind": "request", "n": 3})
    assert stored["seq"] == 5  # seq 4 is the gap record
    gap, after = records(path)
    assert gap["kind"] == "gap" and gap["reason"] == "missing" and (gap["seq"], gap["expected_seq"]) == (4, 3)
    assert gap["prev_hash"] == log.head[1] or after["prev_hash"] == gap["hash"]
    log.close()
    result = verify_audit([path])
    assert not result.ok and (result.first_bad_line, result.bad_seq) == (1, 4)
    assert "deleted while a writer ran" in result.problem and "records seq 1..3 are missing" in result.problem


def test_a_log_replaced_under_a_running_writer(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(3):
        log.append({"kind": "request", "n": i})
    path.unlink()
    path.write_text("")
    log.append({"kind": "request", "n": 3})
    gap = records(path)[0]
    assert gap["kind"] == "gap" and gap["reason"] == "replaced"
    log.close()
    assert "replaced by another file" in verify_audit([path]).problem


def test_a_log_truncated_under_a_running_writer(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(4):
        log.append({"kind": "request", "n": i})
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n")
    log.append({"kind": "request", "n": 4})
    assert [r["kind"] for r in records(path)] == ["request", "gap", "request"]
    assert records(path)[1]["reason"] == "truncated"
    log.close()
    result = verify_audit([path])
    assert not result.ok and "records seq 2..4 are missing" in result.problem


def test_a_torn_tail_is_reported_precisely_then_repaired_on_open(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 3)
    with path.open("ab") as handle:
        handle.write(b'{"kind":"request","n":')
    before = verify_audit([path])
    assert not before.ok and before.records == 3 and before.torn_tail_bytes == 22
    assert (before.first_bad_line, before.bad_seq) == (4, None)
    assert "a torn tail of 22 bytes after 3 good records" in before.problem and "incomplete" in before.problem

    log = AuditLog(path)
    stored = log.append({"kind": "request", "n": "next"})
    repair = records(path)[3]
    assert repair["kind"] == "repair" and repair["dropped_bytes"] == 22 and repair["seq"] == 4
    assert len(repair["dropped_sha256"]) == 64 and stored["seq"] == 5
    log.close()
    after = verify_audit([path])
    assert after.ok and after.repairs == 1 and after.closed
    assert any("repaired" in note for note in after.notes)


def test_a_tail_of_zeros_after_a_power_cut_is_a_torn_tail_too(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 2)
    with path.open("ab") as handle:
        handle.write(b"\0" * 500 + b"\n" + b"\0" * 20)
    result = verify_audit([path])
    assert not result.ok and "torn tail of 521 bytes after 2 good records" in result.problem
    with AuditLog(path) as log:
        log.append({"kind": "tool"})
    assert [r["kind"] for r in records(path)][-2:] == ["repair", "tool"]
    assert verify_audit([path]).ok


def test_a_foreign_last_line_is_refused_not_truncated(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text('{"not": "an audit record"}\n')
    with pytest.raises(AuditUnavailable) as caught:
        AuditLog(path).append({"kind": "tool"})
    assert "not an audit record" in caught.value.cause
    assert path.read_text() == '{"not": "an audit record"}\n'


# -- keys and anchors ----------------------------------------------------------------------------------


def test_the_signing_key_is_created_0600_in_the_state_dir(tmp_path, isolated_state):
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append({"kind": "tool"})
    key = isolated_state / "audit-signing-key.pem"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    assert log.key_path == key
    assert b"PRIVATE KEY" not in path.with_name("audit.jsonl.pub").read_bytes()


def test_another_key_for_an_existing_log_is_refused(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 2, key_path=tmp_path / "first.pem")
    with pytest.raises(AuditUnavailable) as caught:
        AuditLog(path, key_path=tmp_path / "second.pem").append({"kind": "tool"})
    assert "signed by key" in caught.value.cause and "--audit-key" in caught.value.cause
    assert verify_audit([path]).ok


def test_an_unwritable_anchor_fails_the_start(tmp_path):
    anchor = tmp_path / "anchor-dir"
    anchor.mkdir()
    with pytest.raises(AuditUnavailable) as caught:
        AuditLog.open(tmp_path / "audit.jsonl", anchor_path=anchor)
    assert (caught.value.path, caught.value.cause) == (str(anchor), "is a directory")


def test_serve_builds_the_audit_from_its_flags(tmp_path):
    from azure_agent_mcp.cli import build_parser
    from azure_agent_mcp.server.serve import open_audit

    path, key, anchor = tmp_path / "logs" / "audit.jsonl", tmp_path / "keys" / "k.pem", tmp_path / "other" / "a.anchor"
    args = build_parser().parse_args(["serve", "--audit-log", str(path), "--audit-retain", "2",
                                      "--audit-key", str(key), "--audit-anchor", str(anchor)])
    log = open_audit(args)
    assert (log.retain, log.anchor_path, log.key_path) == (2, anchor, key)
    assert anchor.exists() and key.exists() and path.exists()  # opened at start, before any call
    log.close()
    with pytest.raises(SystemExit) as usage:
        build_parser().parse_args(["serve", "--audit-retain", "-1"])
    assert usage.value.code == 2
