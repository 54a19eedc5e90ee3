"""Each tamper class on a log that `serve` wrote, checked by `azure-agent-mcp audit verify --json`.

One server run over stdio makes real calls against the session sandbox (allowed reads, a call the
policy refuses, a local tool), then stops cleanly on EOF: ``audit.close()`` signs the final
checkpoint into ``audit.jsonl.anchor``. Each test tampers with its own copy of the log and its
companions, as someone who can write the log directory but does not hold the signing key would
(hashes recomputed, files renamed), and `audit verify` must exit 1 naming the problem precisely
(file, line, seq, what). Untouched, it exits 0.

The copies live outside pytest's base temp directory on purpose: the suite-wide "decided == sent"
check reads every audit log under it, and a second copy of the same intents would count twice.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit_helpers import edit_lines, forged, rechain
from serve_helpers import StdioServe, new_session, text_of, verify
from server_helpers import audit_records

COMPANIONS = (".anchor", ".pub")


@pytest.fixture(scope="module")
def served(sandbox, tmp_path_factory) -> dict[str, Any]:
    """The log of one clean server run: a few reads, one refusal, one local tool; closed on EOF."""
    base = tmp_path_factory.mktemp("served")
    audit = base / "audit.jsonl"
    subscription = sandbox.manifest["subscriptions"][0]
    subscription = subscription["id"] if isinstance(subscription, dict) else subscription
    with StdioServe(sandbox, audit, base / "state", session=new_session("tamper")) as server:
        for tool in ("group_list", "resource_list", "group_list", "resource_list"):
            assert not server.call(tool).get("isError")
        group = f"/subscriptions/{subscription}/resourceGroups/rg-prod-app"
        refused = server.call("resource_delete", {"resource_id": group})
        assert refused.get("isError") and text_of(refused).startswith("PolicyDenied"), refused
        assert not server.call("whoami").get("isError")
        assert server.close() == 0
    records = audit_records(audit)
    anchor = [json.loads(line) for line in audit.with_name("audit.jsonl.anchor").read_text().splitlines()]
    assert anchor[-1]["event"] == "final" and anchor[-1]["seq"] == records[-1]["seq"]
    return {"path": audit, "records": records, "anchor": anchor}


@pytest.fixture
def copy(served) -> Iterator[Path]:
    """This test's own copy of the served log and its companions (see the module docstring for where)."""
    scratch = Path(tempfile.mkdtemp(prefix="audit-tamper-"))
    try:
        source: Path = served["path"]
        target = scratch / source.name
        shutil.copy2(source, target)
        for suffix in COMPANIONS:
            shutil.copy2(source.with_name(source.name + suffix), target.with_name(target.name + suffix))
        yield target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _broken(path: Path) -> dict[str, Any]:
    code, result = verify(path)
    assert code == 1 and result["ok"] is False, result
    return result


def test_untouched_the_served_log_verifies_closed_and_signed(copy, served):
    code, result = verify(copy)
    last = served["records"][-1]["seq"]
    assert code == 0 and result["ok"], result
    assert result["records"] == last == len(served["records"]) and result["genesis"]
    assert result["anchored"] and result["closed"] and result["unanchored"] == 0
    assert result["last_checkpoint_seq"] == last and result["checkpoints"] == len(served["anchor"])
    assert result["key_fingerprint"].startswith("SHA256:") and result["key_fingerprint"] == served["anchor"][-1]["key"]
    kinds = {r["kind"] for r in served["records"]}
    assert {"intent", "outcome", "tool"} <= kinds
    assert sum(r["kind"] == "tool" for r in served["records"]) == 6  # one record per call


def test_tail_truncated(copy, served):
    last = served["records"][-1]["seq"]
    edit_lines(copy, lambda lines: lines[:-3])
    result = _broken(copy)
    assert (result["first_bad_file"], result["first_bad_line"], result["bad_seq"]) == (str(copy), last - 2, last - 2)
    assert f"the log ends at seq {last - 3}" in result["problem"]
    assert f"records {last - 2}..{last} were removed" in result["problem"]
    assert result["records"] == last - 3


def test_forged_append_after_the_clean_stop(copy, served):
    last = served["records"][-1]
    intent = next(r for r in served["records"] if r["kind"] == "intent")
    forgery = forged(last, kind="intent", method="DELETE", path=intent["path"] + "/rg-prod-app",
                     operation="Microsoft.Resources/subscriptions/resourceGroups/delete", scope=intent["scope"],
                     correlation_id=intent["correlation_id"])
    with copy.open("a") as handle:
        handle.write(forgery + "\n")
    result = _broken(copy)
    assert (result["first_bad_line"], result["bad_seq"]) == (last["seq"] + 1, last["seq"] + 1)
    assert "appended after the log was closed" in result["problem"]
    assert f"final checkpoint at seq {last['seq']}" in result["problem"] and "forged append" in result["problem"]


def test_a_refusal_rewritten_as_allowed_and_the_chain_recomputed(copy, served):
    records = served["records"]
    index = next(i for i, r in enumerate(records) if r["kind"] == "tool" and r.get("decision") == "deny")
    seq = records[index]["seq"]

    def rewrite(lines: list[str]) -> list[str]:
        record = json.loads(lines[index])
        assert record["tool"] == "resource_delete"
        record.update(decision="allow", status="ok")
        for hidden in ("error_code", "rule"):
            record.pop(hidden, None)
        lines[index] = json.dumps(record)
        return lines[:index] + rechain(lines[index:], start_prev=records[index - 1]["hash"])

    edit_lines(copy, rewrite)
    code, chain_only = verify(copy, "--chain-only")
    assert code == 0 and chain_only["ok"], chain_only  # the attacker's chain is perfect...
    result = _broken(copy)  # ...but the signed checkpoints say otherwise
    attested = sorted(entry["seq"] for entry in served["anchor"])
    upper = min(s for s in attested if s >= seq)
    lower = max(s for s in attested if s < seq)
    assert (result["first_bad_file"], result["first_bad_line"], result["bad_seq"]) == (str(copy), upper, upper)
    assert f"a record in seq {lower + 1}..{upper} was rewritten and the chain recomputed" in result["problem"]


def test_the_file_emptied(copy, served):
    last = served["records"][-1]["seq"]
    copy.write_bytes(b"")
    result = _broken(copy)
    assert result["records"] == 0 and result["bad_seq"] == 1
    assert f"records 1..{last} were removed" in result["problem"]


def test_head_records_removed(copy, served):
    edit_lines(copy, lambda lines: lines[4:])
    result = _broken(copy)
    assert (result["first_bad_file"], result["first_bad_line"], result["bad_seq"]) == (str(copy), 1, 5)
    assert "the chain starts at seq 5 without its predecessor" in result["problem"]
    assert "no retention seal" in result["problem"]


def test_fake_rotation_head_removed_and_the_rest_renamed_as_rotated(copy, served):
    lines = copy.read_text().splitlines()
    rotated = copy.with_name(copy.name + ".1")
    rotated.write_text("".join(line + "\n" for line in lines[3:9]))
    copy.write_text("".join(line + "\n" for line in lines[9:]))
    result = _broken(copy)
    assert (result["first_bad_file"], result["first_bad_line"], result["bad_seq"]) == (str(rotated), 1, 4)
    assert "without its predecessor" in result["problem"] and "no retention seal" in result["problem"]
    assert result["files"] == [str(rotated), str(copy)]


def test_the_file_deleted(copy, served):
    last = served["records"][-1]["seq"]
    copy.unlink()
    result = _broken(copy)
    assert f"the log file {copy} does not exist" in result["problem"]
    assert f"records 1..{last} were removed" in result["problem"]
    done = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "audit", "verify", str(copy)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"audit BROKEN at {copy}" in done.stderr and "does not exist" in done.stderr
