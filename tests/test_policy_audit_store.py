"""The store's contract: bounded records, one fsync per call, group commit, checkpoints, close.

Counts, not clocks: fsyncs are counted (with the background flush parked or fsync slowed down on
purpose), and anything that happens "within N seconds" is polled for with a generous deadline.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from audit_helpers import fill, isolated_state, records  # noqa: F401
from azure_agent_mcp.policy import AuditLog, AuditUnavailable, verify_audit
from azure_agent_mcp.policy import audit_commit, audit_writer
from azure_agent_mcp.policy.audit import RECORD_LIMIT, audit_files


def _anchor_entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.with_name(path.name + ".anchor").read_text().splitlines()]


def _eventually(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- bounded records -----------------------------------------------------------------------------------


def test_an_oversized_value_is_kept_as_size_and_hash(tmp_path):
    path = tmp_path / "audit.jsonl"
    template = {"resources": [{"name": f"r{i}", "properties": f"plain words for resource {i} " * 4} for i in range(400)]}
    body = {"properties": {"template": template, "mode": "Incremental"}, "location": "eastus"}
    with AuditLog(path) as log:
        stored = log.append({"kind": "tool", "tool": "arm_request", "arguments": {"method": "PUT", "body": body}})
    line = path.read_bytes().splitlines()[0]
    assert len(line) + 1 <= RECORD_LIMIT
    # the smallest part that alone makes room: the template's resource list, not all the arguments
    assert stored["bounded"] == ["arguments.body.properties.template.resources"]
    placeholder = stored["arguments"]["body"]["properties"]["template"]["resources"]
    canonical = json.dumps(template["resources"], sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert placeholder == {"digest": "sha256", "size": len(canonical), "sha256": hashlib.sha256(canonical).hexdigest()}
    assert stored["arguments"]["body"]["properties"]["mode"] == "Incremental"  # the rest is kept
    assert stored["arguments"]["method"] == "PUT" and stored["tool"] == "arm_request"
    assert verify_audit([path]).ok


def test_largest_values_go_first_until_the_record_fits(tmp_path):
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        stored = log.append({"kind": "request", "a": "x" * 12000, "b": "y" * 9000, "c": "z" * 500, "d": "keep"})
    assert stored["bounded"] == ["a"] and stored["b"] == "y" * 9000 and stored["d"] == "keep"
    assert stored["a"] == {"digest": "sha256", "size": 12000, "sha256": hashlib.sha256(b"x" * 12000).hexdigest()}


def test_thousands_of_small_fields_still_fit(tmp_path):
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        stored = log.append({"kind": "request", **{f"k{i}": i for i in range(5000)}})
    assert stored["kind"] == "request" and stored["bounded"] == ["*"] and "oversized" in stored
    assert all(len(line) + 1 <= RECORD_LIMIT for line in path.read_bytes().splitlines())


def test_two_oversized_calls_do_not_rotate_the_history_away(tmp_path):
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, max_bytes=64 * 1024, retain=1) as log:
        for i in range(20):
            log.append({"kind": "request", "n": i})
        for _ in range(2):
            stored = log.append({"kind": "tool", "tool": "arm_request",
                                 "arguments": {"body": {"description": "a long text " * 200_000}}})
            assert stored["bounded"] == ["arguments.body.description"]
    assert audit_files(path) == [path]  # 22 small records: nothing rotated, nothing retired
    result = verify_audit([path])
    assert result.ok and result.records == 22 and result.genesis


# -- durability and fsyncs -------------------------------------------------------------------------------


def test_a_tool_call_costs_one_fsync(tmp_path, monkeypatch):
    """Intent durable; outcome and tool record ride on the next fsync."""
    monkeypatch.setattr(audit_writer, "FLUSH_INTERVAL", 3600.0)  # park the background flush
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, checkpoint_every=10**6, checkpoint_seconds=3600)
    log.check_writable()
    before = log.fsyncs
    for call in range(20):
        intent = log.append({"kind": "intent", "call": call})
        log.append({"kind": "outcome", "call": call, "intent_seq": intent["seq"], "status": 200}, durable=False)
        log.append({"kind": "tool", "call": call, "status": "ok"}, durable=False)
    assert log.fsyncs - before == 20
    assert len(path.read_text().splitlines()) == 60  # the non-durable records are written at once
    log.close()
    assert verify_audit([path]).ok


def test_concurrent_durable_appends_share_fsyncs(tmp_path, monkeypatch):
    real_fsync = os.fsync
    starts: list[int] = []
    log: AuditLog | None = None

    def slow_fsync(fd):
        starts.append(log._writer.commit.written if log else 0)  # noqa: SLF001 - what this fsync covers
        time.sleep(0.005)  # a slow disk: the others queue up behind the leader
        real_fsync(fd)

    monkeypatch.setattr(audit_commit.os, "fsync", slow_fsync)
    monkeypatch.setattr(audit_writer, "FLUSH_INTERVAL", 3600.0)
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, checkpoint_every=10**6, checkpoint_seconds=3600)
    log.check_writable()
    before = log.fsyncs
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                log.append({"kind": "intent", "thread": n, "i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    shared = log.fsyncs - before
    assert shared <= 200 // 2, f"{shared} fsyncs for 200 durable appends: no group commit"
    assert max(starts) == log._writer.commit.written  # noqa: SLF001 - the last fsync covered every write
    log.close()
    result = verify_audit([path])
    assert result.ok and result.records == 200


def test_non_durable_records_are_flushed_in_the_background(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append({"kind": "tool"}, durable=False)
    assert _eventually(lambda: not log._writer.commit.pending(), timeout=10)  # noqa: SLF001
    log.close()


def test_flush_makes_everything_durable(tmp_path, monkeypatch):
    monkeypatch.setattr(audit_writer, "FLUSH_INTERVAL", 3600.0)
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append({"kind": "tool"}, durable=False)
    assert log._writer.commit.pending()  # noqa: SLF001
    log.flush()
    assert not log._writer.commit.pending()  # noqa: SLF001
    log.close()


# -- checkpoints and close ----------------------------------------------------------------------------------


def test_checkpoints_every_n_records(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 25, checkpoint_every=10)
    entries = _anchor_entries(path)
    assert [(e["event"], e["seq"]) for e in entries] == [("open", 0), ("checkpoint", 10), ("checkpoint", 20),
                                                          ("final", 25)]
    assert all(e["key"].startswith("SHA256:") and e["sig"] for e in entries)


def test_checkpoints_every_s_seconds_while_records_are_written(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, checkpoint_seconds=0.2)
    log.append({"kind": "tool"})
    assert _eventually(lambda: any(e["event"] == "checkpoint" and e["seq"] == 1 for e in _anchor_entries(path)))
    count = len(_anchor_entries(path))
    time.sleep(0.6)  # nothing written meanwhile: no new checkpoint (not a timing assertion on the store's speed)
    assert len(_anchor_entries(path)) == count
    log.close()


def test_checkpoint_on_demand_and_close_is_final(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append({"kind": "tool"})
    entry = log.checkpoint()
    assert entry["event"] == "checkpoint" and entry["seq"] == 1
    log.close()
    log.close()  # idempotent
    assert _anchor_entries(path)[-1]["event"] == "final"
    with pytest.raises(AuditUnavailable) as caught:
        log.append({"kind": "tool"})
    assert "closed" in caught.value.cause


def test_only_the_last_writer_to_close_writes_the_final_checkpoint(tmp_path):
    path = tmp_path / "audit.jsonl"
    first, second = AuditLog(path), AuditLog(path)
    first.append({"kind": "tool", "writer": 1})
    second.append({"kind": "tool", "writer": 2})
    first.close()
    assert _anchor_entries(path)[-1]["event"] == "close"
    second.append({"kind": "tool", "writer": 2})
    assert verify_audit([path]).ok  # records after the first writer's close are the second writer's
    second.close()
    assert _anchor_entries(path)[-1]["event"] == "final"
    result = verify_audit([path])
    assert result.ok and result.closed and result.records == 3


def test_a_log_object_that_is_dropped_is_closed_in_the_background(tmp_path):
    path = tmp_path / "audit.jsonl"
    AuditLog(path).append({"kind": "tool"})
    assert _eventually(lambda: _anchor_entries(path)[-1]["event"] == "final")


def test_a_closed_log_reopens_with_a_matching_open_checkpoint(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 3)
    fill(path, 2)
    events = [(e["event"], e["seq"]) for e in _anchor_entries(path)]
    assert events == [("open", 0), ("final", 3), ("open", 3), ("final", 5)]
    assert verify_audit([path]).ok


# -- rotation and retention -----------------------------------------------------------------------------------


def test_retain_zero_keeps_only_the_current_segment_and_seals_the_rest(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 40, max_bytes=2048, retain=0)
    assert audit_files(path) == [path]
    result = verify_audit([path])
    assert result.ok and result.retired_segments >= 3 and result.retired_seqs[0] == 1
    first = records(path)[0]
    assert first["kind"] == "seal" and first["last_seq"] == first["seq"] - 1


def test_rotated_segments_are_private_and_bounded(tmp_path):
    path = tmp_path / "audit.jsonl"
    fill(path, 60, max_bytes=4096, retain=3)
    for segment in audit_files(path):
        assert (segment.stat().st_mode & 0o777) == 0o600
        assert segment.stat().st_size <= 4096
    assert len(audit_files(path)) == 4


def test_an_oversized_secret_under_a_secret_name_is_redacted_not_hashed(tmp_path):
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        stored = log.append({"kind": "tool", "arguments": {"password": "pass phrase " * 3000, "name": "db"}})
    assert stored["arguments"] == {"password": "***REDACTED***", "name": "db"}
    assert "pass phrase" not in path.read_text()


# -- the secret scans' fast path -----------------------------------------------------------------------

SECRETS = [
    "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc==",
    "https://a.blob.core.windows.net/c?sv=2024&sig=AbCd%2F",
    "eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIxMjM0NTY3OCJ9.c2lnbmF0dXJl",
    "EYJHBGCIOIJSUZI1NIJ9.EYJVAWQIOIIXMJM0NTY3OCJ9.sig",
    "Server=x;Password=p4ss",
    "pwd=hunter2",
]


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("wrap", ["{}", "note: {}", "\n{}", "{}\t", "é {} é", "\\{}", "[{}]", "\"{}\""])
def test_the_fast_path_never_skips_a_secret_the_full_scan_would_hide(secret, wrap):
    """One search of the record's JSON text stands in for a search of each string; never weaker."""
    from azure_agent_mcp.policy.audit_records import prepare
    from azure_agent_mcp.policy.redaction import scrub_strings

    value = wrap.format(secret)
    for record in ({"kind": "request", "error": value}, {"kind": "request", "list": ["ok", value]},
                   {"kind": "request", "nested": {"deep": {"x": value}}}):
        assert prepare(record) == scrub_strings(json.loads(json.dumps(record)))
        assert secret not in json.dumps(prepare(record))


def test_the_fast_path_agrees_with_the_full_scan_on_arbitrary_strings():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from azure_agent_mcp.policy.audit_records import prepare
    from azure_agent_mcp.policy.redaction import scrub_strings

    pieces = st.sampled_from(["AccountKey=", "Password=", "pwd=", "?sig=", "&sig=", "eyJ", "eyj", "EYJ", ".", "=",
                              "abcdefgh", "12345678", "-", "_", ";", " ", "\n", "\\", "é", "\"", "x"])
    strings = st.lists(pieces, max_size=12).map("".join)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(strings, min_size=1, max_size=4))
    def check(values):
        record = {"kind": "request", **{f"f{i}": v for i, v in enumerate(values)}}
        assert prepare(record) == scrub_strings(json.loads(json.dumps(record)))

    check()
