"""Rotation by size and explicit retention, without losing the story of what was dropped.

Rotation renames ``audit.jsonl`` to ``audit.jsonl.1`` (older ones shift up); the new file's first
record chains to the last record of the old one. Retention keeps ``retain`` rotated segments.
Before a segment is deleted, a ``seal`` record naming its first and last seq and hashes goes
into the surviving chain (and is fsynced), so ``audit verify`` can say "N segments retired by
retention" and still refuse a chain that starts mid-way without a seal covering the gap (head
records removed, or the rest renamed to look rotated).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from azure_agent_mcp.policy.audit_records import GENESIS
from azure_agent_mcp.policy.audit_segments import first_record, rotated_path, tail_of

_SEAL_SCAN = 16  # seals are written right after a rotation: they are among a segment's first lines


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file durable (POSIX; Windows cannot open directories and needs no such step)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def shift(path: Path) -> None:
    """``path.K`` -> ``path.K+1`` (newest last), then ``path`` -> ``path.1``."""
    index = 1
    while rotated_path(path, index).exists():
        index += 1
    for source in range(index - 1, 0, -1):
        os.replace(rotated_path(path, source), rotated_path(path, source + 1))
    os.replace(path, rotated_path(path, 1))


def beyond_retention(path: Path, retain: int) -> list[Path]:
    """The rotated segments past ``retain``, oldest first."""
    index = retain + 1
    found = []
    while rotated_path(path, index).exists():
        found.append(rotated_path(path, index))
        index += 1
    return list(reversed(found))


def _leading_seals(segment: Path) -> list[dict[str, Any]]:
    seals = []
    try:
        with segment.open("rb") as handle:
            for _ in range(_SEAL_SCAN):
                line = handle.readline()
                if not line:
                    break
                try:
                    record = json.loads(line)
                except ValueError:
                    break
                if isinstance(record, dict) and record.get("kind") == "seal":
                    seals.append(record)
    except OSError:
        pass
    return seals


def seal_body(segment: Path, newer: list[Path]) -> dict[str, Any] | None:
    """The ``seal`` record for retiring ``segment`` (None when it holds no records: nothing to seal).

    ``newer`` are the segments that survive it, oldest first: the seal that covered
    ``segment``'s own predecessor is at the start of one of them (or of ``segment``), and its
    running totals carry over, so the newest seal always says how much retention has dropped.
    """
    first = first_record(segment)
    last_tail = tail_of(segment)
    last = last_tail.last if last_tail is not None else None
    if first is None or last is None or "seq" not in first or "seq" not in last:
        return None
    body: dict[str, Any] = {
        "kind": "seal",
        "reason": "retention",
        "segment": segment.name,
        "first_seq": first["seq"],
        "first_hash": first.get("hash"),
        "first_prev_hash": first.get("prev_hash"),
        "last_seq": last["seq"],
        "last_hash": last.get("hash"),
        "records": last["seq"] - first["seq"] + 1,
        "bytes": last_tail.good_end if last_tail is not None else None,
    }
    if first.get("prev_hash") == GENESIS:
        body["retired_segments"], body["retired_from_seq"] = 1, first["seq"]
        return body
    for candidate in (segment, *newer):
        for previous in _leading_seals(candidate):
            if previous.get("last_seq") == first["seq"] - 1 and previous.get("last_hash") == first.get("prev_hash"):
                body["retired_segments"] = int(previous.get("retired_segments") or 1) + 1
                body["retired_from_seq"] = previous.get("retired_from_seq")
                return body
    body["retired_segments"], body["retired_from_seq"] = 1, None  # what came before is not known here
    return body
