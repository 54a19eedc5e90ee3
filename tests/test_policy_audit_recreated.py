"""A log recreated after an error is not mistaken for the file the writer had (inode reuse).

After an error the writer forgets the file it held and, on the next append, compares the file the
path names with the one it dropped (device and inode). Closed, a deleted file's inode is free, and
ext4 or tmpfs hand the same number to the next file created: a log deleted, or replaced by a
directory, during the error would look like the same file and its missing records like records
"lost after a failed fsync". The writer keeps a descriptor on the dropped file until it has
compared, so the number cannot be reused meanwhile.
"""

from __future__ import annotations

import pytest

from audit_helpers import isolated_state, records  # noqa: F401
from azure_agent_mcp.policy import AuditLog, AuditUnavailable, verify_audit


def test_a_log_replaced_by_a_directory_during_an_error_then_recreated_is_a_deletion(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(3):
        log.append({"kind": "request", "n": i})
    path.unlink()
    path.mkdir()
    with pytest.raises(AuditUnavailable) as caught:
        log.append({"kind": "request", "n": "refused"})
    assert caught.value.cause == "is a directory"
    path.rmdir()
    stored = log.append({"kind": "request", "n": "after"})
    gap = records(path)[0]
    assert gap["kind"] == "gap" and gap["reason"] == "missing", gap
    assert (gap["seq"], gap["expected_seq"], stored["seq"]) == (4, 3, 5)
    log.close()
    result = verify_audit([path])
    assert not result.ok and "deleted while a writer ran" in result.problem


def test_the_same_file_back_after_an_error_continues_without_a_gap(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append({"kind": "request", "n": 1})
    moved = tmp_path / "aside.jsonl"
    path.rename(moved)
    path.mkdir()
    with pytest.raises(AuditUnavailable):
        log.append({"kind": "request", "n": "refused"})
    path.rmdir()
    moved.rename(path)  # the very file the writer had: nothing is missing
    assert log.append({"kind": "request", "n": 2})["seq"] == 2
    log.close()
    assert [r["kind"] for r in records(path)] == ["request", "request"]
    assert verify_audit([path]).ok
