"""What `audit verify` says about a log the writer repaired: which record did it, and what was dropped."""

from __future__ import annotations

from audit_helpers import fill, isolated_state, records  # noqa: F401
from azure_agent_mcp.policy import AuditLog, verify_audit


def test_each_repair_is_named_with_its_seq_and_the_bytes_dropped(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 3)
    with path.open("ab") as handle:
        handle.write(b'{"kind":"request","n":')
    with AuditLog(path) as log:
        log.append({"kind": "tool"})
    with path.open("ab") as handle:
        handle.write(b'{"kind":"to')
    with AuditLog(path) as log:
        log.append({"kind": "tool"})
    first, second = (r for r in records(path) if r["kind"] == "repair")
    result = verify_audit([path])
    assert result.ok and result.repairs == 2
    (note,) = [n for n in result.notes if "repaired" in n]
    assert note.startswith("2 torn tail(s) repaired by the writer (repair records): ")
    assert f"seq {first['seq']}: 22 bytes of an incomplete record dropped ({path} line 4)" in note
    assert f"seq {second['seq']}: 11 bytes of an incomplete record dropped" in note
