"""Tampering by someone who can rewrite the log and recompute its chain: each class must fail verify.

The attacker here has write access to the log directory but not the signing key. Every edit is
made the way that attacker would make it (hashes recomputed, files renamed), and verify must say
precisely what it found: which seq, which file and line, which checkpoint contradicts it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit_helpers import edit_lines, fill, forged, isolated_state, rechain, records  # noqa: F401
from azure_agent_mcp.policy import AuditLog, verify_audit
from azure_agent_mcp.policy.audit import GENESIS, audit_files
from azure_agent_mcp.policy.audit_checkpoints import signed_bytes

ANCHOR = ".anchor"


def _anchor(path: Path) -> Path:
    return path.with_name(path.name + ANCHOR)


def _broken(path: Path, **kwargs):
    result = verify_audit([path], **kwargs)
    assert not result.ok, result
    return result


def test_an_untouched_closed_log_is_intact_and_closed(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 5)
    result = verify_audit([path])
    assert result.ok and result.anchored and result.closed and result.unanchored == 0
    assert result.checkpoints == 2 and result.last_checkpoint_seq == 5  # open at 0, final at 5
    assert result.key_fingerprint.startswith("SHA256:")
    assert result.public_key == str(path.with_name("audit.jsonl.pub"))


def test_tail_truncated(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 10)
    edit_lines(path, lambda lines: lines[:7])
    result = _broken(path)
    assert (result.first_bad_file, result.first_bad_line, result.bad_seq) == (str(path), 8, 8)
    assert "the log ends at seq 7" in result.problem and "records 8..10 were removed" in result.problem
    assert result.records == 7


def test_tail_truncated_under_a_running_writer_is_caught_by_a_periodic_checkpoint(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = fill(path, 12, close=False, checkpoint_every=5)  # checkpoints at seq 5 and 10
    edit_lines(path, lambda lines: lines[:8])
    result = _broken(path)
    assert result.bad_seq == 9 and "attests seq 10" in result.problem
    log.close()


def test_forged_append_after_the_final_checkpoint(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 5)
    last = records(path)[-1]
    with path.open("a") as handle:
        handle.write(forged(last, scope="/subscriptions/x") + "\n")
    result = _broken(path)
    assert (result.first_bad_line, result.bad_seq) == (6, 6)
    assert "appended after the log was closed" in result.problem and "final checkpoint at seq 5" in result.problem


def test_a_writer_reopening_a_log_with_a_forged_tail_does_not_launder_it(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 5)
    with path.open("a") as handle:
        handle.write(forged(records(path)[-1]) + "\n")
    fill(path, 2)  # the next server start and stop
    result = _broken(path)
    kinds = [r["kind"] for r in records(path)]
    assert kinds[6] == "gap" and records(path)[6]["reason"] == "foreign"
    assert result.bad_seq == 7 and "not the audit writer's" in result.problem


def test_a_record_rewritten_and_the_chain_recomputed(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 8, checkpoint_every=4)  # checkpoints at 4 and the final at 8

    def rewrite(lines):
        record = json.loads(lines[5])
        record["status"], record["decision"] = 200, "allow"
        record["operation"] = "Microsoft.Example/widgets/read"  # hide what it was
        lines[5] = json.dumps(record)
        return lines[:5] + rechain(lines[5:], start_prev=json.loads(lines[4])["hash"])

    edit_lines(path, rewrite)
    assert verify_audit([path], chain_only=True).ok  # the chain alone cannot tell
    result = _broken(path)
    assert (result.first_bad_file, result.first_bad_line, result.bad_seq) == (str(path), 8, 8)
    assert "a record in seq 5..8 was rewritten and the chain recomputed" in result.problem


def test_the_file_emptied(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 5)
    path.write_bytes(b"")
    result = _broken(path)
    assert result.records == 0 and result.bad_seq == 1
    assert "records 1..5 were removed" in result.problem


def test_the_file_replaced_by_a_fresh_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 5)
    first = records(path)[0]
    path.write_text(json.dumps(first, sort_keys=True, separators=(",", ":")) + "\n")
    result = _broken(path)
    assert "records 2..5 were removed" in result.problem


def test_head_records_removed(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 6)
    edit_lines(path, lambda lines: lines[2:])
    result = _broken(path)
    assert (result.first_bad_line, result.bad_seq) == (1, 3)
    assert "without its predecessor" in result.problem and "no retention seal" in result.problem


def test_head_records_removed_and_the_rest_renumbered_from_genesis(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 6)

    def renumber(lines):
        kept = [json.loads(line) for line in lines[2:]]
        for seq, record in enumerate(kept, start=1):
            record["seq"] = seq
        kept[0]["prev_hash"] = GENESIS
        return rechain([json.dumps(r) for r in kept])

    edit_lines(path, renumber)
    assert verify_audit([path], chain_only=True).ok
    result = _broken(path)
    assert "attests seq 6" in result.problem


def test_fake_rotation_head_removed_and_the_rest_renamed_as_rotated(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 30)
    lines = path.read_text().splitlines()
    rotated = path.with_name("audit.jsonl.1")
    rotated.write_text("".join(line + "\n" for line in lines[10:20]))
    path.write_text("".join(line + "\n" for line in lines[20:]))
    result = _broken(path)
    assert (result.first_bad_file, result.first_bad_line, result.bad_seq) == (str(rotated), 1, 11)
    assert "without its predecessor" in result.problem


def test_fake_rotation_with_a_forged_seal(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 30)
    lines = path.read_text().splitlines()
    tenth, eleventh = json.loads(lines[9]), json.loads(lines[10])
    seal = {"kind": "seal", "reason": "retention", "segment": "audit.jsonl.2", "first_seq": 1, "last_seq": 10,
            "last_hash": tenth["hash"], "first_prev_hash": GENESIS, "retired_segments": 1, "retired_from_seq": 1}
    shifted = [json.loads(line) for line in lines[20:]]
    seal.update(time=shifted[0]["time"], seq=21, prev_hash="")
    for record in shifted:
        record["seq"] += 1
    forged_tail = rechain([json.dumps(seal), *(json.dumps(r) for r in shifted)],
                          start_prev=json.loads(lines[19])["hash"])
    path.with_name("audit.jsonl.1").write_text("".join(line + "\n" for line in lines[10:20]))
    path.write_text("".join(line + "\n" for line in forged_tail))
    assert eleventh["prev_hash"] == tenth["hash"]
    assert verify_audit([path], chain_only=True).ok  # the chain and the seal agree...
    result = _broken(path)  # ...but the final checkpoint (seq 30) was signed before the seal existed
    assert "was rewritten and the chain recomputed" in result.problem and result.bad_seq == 30


def test_the_file_deleted(tmp_path, capsys):
    from azure_agent_mcp.cli import main

    path = tmp_path / "audit.jsonl"
    fill(path, 5)
    path.unlink()
    result = _broken(path)
    assert f"the log file {path} does not exist" in result.problem and "records 1..5 were removed" in result.problem
    assert main(["audit", "verify", str(path)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["audit", "verify", "--json", str(path)]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_a_checkpoint_whose_signature_does_not_verify(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 8)
    edit_lines(path, lambda lines: lines[:6])
    final = json.loads(_anchor(path).read_text().splitlines()[-1])
    final["seq"], final["hash"] = 6, records(path)[-1]["hash"]  # make the checkpoint agree with the truncation
    edit_lines(_anchor(path), lambda lines: [*lines[:-1], json.dumps(final)])
    result = _broken(path)
    assert result.first_bad_file == str(_anchor(path)) and result.first_bad_line == 2
    assert "the signature does not verify" in result.problem


def test_an_anchor_re_signed_with_the_attackers_key_fails_against_the_operators_public_key(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 8)
    kept_copy = tmp_path / "operator-copy.pub"
    kept_copy.write_bytes(path.with_name("audit.jsonl.pub").read_bytes())
    edit_lines(path, lambda lines: lines[:6])
    attacker = Ed25519PrivateKey.generate()
    raw = attacker.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    from azure_agent_mcp.policy.audit_checkpoints import entry_hash
    from azure_agent_mcp.policy.audit_keys import fingerprint

    entries = [json.loads(line) for line in _anchor(path).read_text().splitlines()]
    entries[-1].update(seq=6, hash=records(path)[-1]["hash"])
    prev = GENESIS
    for entry in entries:
        entry.update(key=fingerprint(raw), prev=prev)
        entry["sig"] = base64.b64encode(attacker.sign(signed_bytes(entry))).decode()
        prev = entry_hash(entry)
    _anchor(path).write_text("".join(json.dumps(e) + "\n" for e in entries))
    path.with_name("audit.jsonl.pub").write_bytes(attacker.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    fooled = verify_audit([path])
    assert fooled.ok and fooled.key_fingerprint == fingerprint(raw)  # why verify prints the fingerprint
    result = _broken(path, public_key=kept_copy)
    assert "signed by key" in result.problem and "not by the public key given" in result.problem


def test_anchor_entries_removed_from_the_middle(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 9, checkpoint_every=3)
    edit_lines(_anchor(path), lambda lines: [lines[0], *lines[2:]])
    result = _broken(path)
    assert result.first_bad_line == 2 and "does not follow the entry before it" in result.problem


def test_a_missing_anchor_fails_unless_chain_only(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 3)
    _anchor(path).unlink()
    result = _broken(path)
    assert result.problem.startswith("no anchor:")
    assert verify_audit([path], chain_only=True).ok


def test_records_changed_while_no_writer_ran_are_caught_at_the_next_open(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 6)
    edit_lines(path, lambda lines: lines[:4])  # removed while the server was stopped
    fill(path, 2)  # the next start: the writer finds the log behind its anchor and says so
    kinds = [r["kind"] for r in records(path)]
    assert kinds[4] == "gap" and records(path)[4]["reason"] == "behind_anchor"
    result = _broken(path)
    assert "records up to seq 6 are missing" in result.problem or "vanished" in result.problem


def test_verify_reads_an_anchor_elsewhere(tmp_path):
    path = tmp_path / "logs" / "audit.jsonl"
    anchor = tmp_path / "elsewhere" / "checkpoints.anchor"
    log = AuditLog(path, anchor_path=anchor)
    log.append({"kind": "tool"})
    log.close()
    assert not path.with_name("audit.jsonl.anchor").exists()
    assert not verify_audit([path]).ok
    result = verify_audit([path], anchor=anchor)
    assert result.ok and result.closed and result.anchor == str(anchor)


def test_cli_prints_the_fingerprint_and_the_state(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 4)
    done = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "audit", "verify", str(path)],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert "4 records" in done.stdout and "SHA256:" in done.stdout and "closed cleanly" in done.stdout
    edit_lines(path, lambda lines: lines[:2])
    done = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "audit", "verify", "--json", str(path)],
                          capture_output=True, text=True, timeout=60)
    data = json.loads(done.stdout)
    assert done.returncode == 1 and data["ok"] is False and data["key_fingerprint"].startswith("SHA256:")
    assert "records 3..4 were removed" in data["problem"]


def test_retired_segments_do_not_count_as_tampering_but_a_segment_deleted_without_a_seal_does(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 80, max_bytes=2048, retain=3)
    intact = verify_audit([path])
    assert intact.ok and intact.retired_segments > 0
    oldest = audit_files(path)[0]
    oldest.unlink()  # retention never deletes without sealing first; this does
    result = _broken(path)
    assert "without its predecessor" in result.problem and "no retention seal" in result.problem
