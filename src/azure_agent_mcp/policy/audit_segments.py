"""The files of one audit log and how to read their ends.

A log at ``audit.jsonl`` is the current segment plus rotated segments ``audit.jsonl.1`` (newest)
... ``audit.jsonl.N`` (oldest), and companions whose names start with the log's file name, so
they move, list and back up with it: ``.lock`` (the writers' mutex), ``.anchor`` (signed
checkpoints, unless put elsewhere), ``.pub`` (the key that verifies them), ``.live.<id>`` (one per
running writer). Only the ``.N`` segments hold records.

The tail readers here are what lets a writer start after a crash: a torn tail (a last line
without its newline, or lines that are not JSON, such as the zeros a power cut can leave) is
found and measured, never guessed at.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CHUNK = 64 * 1024
MAX_TORN_BYTES = 1024 * 1024  # more than this after the last good record is not a torn write
ROTATED = re.compile(r"\.\d+$")


def rotated_path(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def companion(path: Path, suffix: str) -> Path:
    """``audit.jsonl`` + ``suffix`` (``.anchor``, ``.pub``, ``.lock``), in the same directory."""
    return path.with_name(path.name + suffix)


def audit_files(path: str | Path) -> list[Path]:
    """The segments of one log, oldest first: ``path.N`` ... ``path.1``, then ``path``."""
    base = Path(path)
    older: list[Path] = []
    index = 1
    while rotated_path(base, index).exists():
        older.append(rotated_path(base, index))
        index += 1
    return [*reversed(older), base]


def read_at(fd: int, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` (lseek + read: os.pread is not on Windows)."""
    os.lseek(fd, offset, os.SEEK_SET)
    chunks = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _as_record(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Tail:
    """The end of a segment: where its last good line ends, that line as JSON, and what follows it."""

    good_end: int
    last: dict[str, Any] | None
    torn_bytes: int  # after good_end: an incomplete line and/or lines that are not JSON


def _scan(data: bytes, start: int, size: int) -> Tail | None:
    """The last JSON line in ``data`` (bytes ``start``..``size``), or None when it may begin earlier."""
    end = len(data)
    if not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        if cut < 0:
            return Tail(0, None, size) if start == 0 else None
        end = cut + 1
    while end > 0:
        if size - (start + end) > MAX_TORN_BYTES:
            raise ValueError(f"{size - (start + end)} bytes after the last complete record are not JSON")
        cut = data.rfind(b"\n", 0, end - 1)
        if cut < 0 and start > 0:
            return None
        record = _as_record(data[cut + 1 : end - 1])
        if record is not None:
            return Tail(start + end, record, size - (start + end))
        end = cut + 1
    return Tail(0, None, size)


def read_tail(fd: int, size: int) -> Tail:
    """Find the last complete JSON line of an open segment of ``size`` bytes.

    Stops at the first line, from the end, that is a JSON object. Raises ``ValueError`` when more
    than ``MAX_TORN_BYTES`` follow it: that is damage, not a torn write, and is left to
    ``audit verify`` and a person.
    """
    if size == 0:
        return Tail(0, None, 0)
    window = min(size, _CHUNK)
    while True:
        start = size - window
        found = _scan(read_at(fd, start, window), start, size)
        if found is not None:
            return found
        if window >= 4 * MAX_TORN_BYTES:
            raise ValueError(f"no complete record in the last {window} bytes")
        window = min(size, window * 4)


def tail_of(path: Path) -> Tail | None:
    """``read_tail`` of the file at ``path`` (None when it does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return None
    try:
        return read_tail(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def first_record(path: Path) -> dict[str, Any] | None:
    """The first line of a segment as JSON (None when empty, missing or not JSON)."""
    try:
        with path.open("rb") as handle:
            return _as_record(handle.readline())
    except OSError:
        return None
