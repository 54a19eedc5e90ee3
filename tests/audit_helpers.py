"""Shared by the audit store's tests: an isolated state dir (the signing key lives there), fills, edits."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from azure_agent_mcp.policy import AuditLog
from azure_agent_mcp.policy.audit import audit_files, record_hash


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The default signing key goes to this test's own state dir, never the user's."""
    state = tmp_path / "state-dir"
    monkeypatch.setenv("AZURE_AGENT_MCP_STATE_DIR", str(state))
    yield state


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in audit_files(path) if f.exists() for line in f.read_text().splitlines() if line]


def fill(path: Path, count: int, *, close: bool = True, **options: Any) -> AuditLog:
    """``count`` request records; closed (final checkpoint) unless ``close=False``."""
    log = AuditLog(path, **options)
    for i in range(count):
        log.append({"kind": "request", "operation": "Microsoft.Example/widgets/read", "n": i, "status": 200})
    if close:
        log.close()
    return log


def edit_lines(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    lines = path.read_text().splitlines()
    kept = edit(lines)
    path.write_text("".join(line + "\n" for line in kept))


def rechain(lines: list[str], start_prev: str | None = None) -> list[str]:
    """Recompute every hash after an edit, as an attacker who can write the file would."""
    out = []
    prev = start_prev
    for line in lines:
        record = json.loads(line)
        if prev is not None:
            record["prev_hash"] = prev
        record["hash"] = record_hash(record)
        prev = record["hash"]
        out.append(json.dumps(record, sort_keys=True, separators=(",", ":")))
    return out


def forged(after: dict[str, Any], **fields: Any) -> str:
    """A record that chains correctly after ``after`` (what a forger with write access produces)."""
    record = {"kind": "request", "operation": "Microsoft.Example/widgets/delete", "decision": "allow", **fields,
              "time": after["time"], "seq": after["seq"] + 1, "prev_hash": after["hash"]}
    record["hash"] = record_hash(record)
    return json.dumps(record, sort_keys=True, separators=(",", ":"))
