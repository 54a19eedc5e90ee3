"""The audit trail: JSON lines, hash-chained, fsynced, rotated without breaking the chain.

Each record gets ``time``, ``seq``, ``prev_hash`` and ``hash`` = SHA-256 of the record's canonical
JSON (sorted keys, no whitespace, without ``hash``). Changing, deleting or reordering any record
breaks the chain at that point, and ``verify_audit`` names the file and line.

Writers in several threads and processes (two servers sharing a state directory) append to one
chain: each append takes an exclusive ``flock`` on a side lock file, reads the last record's hash,
appends, flushes and fsyncs, then releases. Rotation (size-based) renames ``audit.jsonl`` to
``audit.jsonl.1`` (and so on) under the same lock; the first record of the new file chains to
the last record of the old one.

Arguments that look secret are redacted before hashing, and every string is checked for tokens
and connection strings: the audit must never become the place a secret leaks to.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from azure_agent_mcp.policy.redaction import redact_arguments, scrub_strings

GENESIS = "0" * 64
_ROTATED = re.compile(r"\.\d+$")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5
_TAIL_CHUNK = 64 * 1024


class AuditError(Exception):
    """The audit log could not be written (the caller decides whether that is fatal)."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return [_jsonable(v) for v in sorted(value, key=repr)] if isinstance(value, (set, frozenset)) else list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return str(value)


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes the hash covers: the record without ``hash``, sorted keys, compact separators."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def rotated_path(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def audit_files(path: str | Path) -> list[Path]:
    """The files of one log, oldest first: ``path.N`` ... ``path.1``, then ``path``."""
    base = Path(path)
    older: list[Path] = []
    index = 1
    while rotated_path(base, index).exists():
        older.append(rotated_path(base, index))
        index += 1
    return [*reversed(older), base]


def _last_line(handle: Any, size: int) -> bytes | None:
    """The last complete line of an open binary file (None when empty)."""
    if size == 0:
        return None
    position = size
    buffer = b""
    while position > 0:
        step = min(_TAIL_CHUNK, position)
        position -= step
        handle.seek(position)
        buffer = handle.read(step) + buffer
        stripped = buffer.rstrip(b"\n")
        cut = stripped.rfind(b"\n")
        if cut >= 0:
            return stripped[cut + 1 :]
    stripped = buffer.rstrip(b"\n")
    return stripped or None


def _identity(stat: os.stat_result) -> tuple[int, ...]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class AuditLog:
    """Append-only, hash-chained JSON lines at ``path`` (mode 0600), safe across threads and processes."""

    def __init__(self, path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> None:
        if max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024")
        if backups < 1:
            raise ValueError("backups must be at least 1")
        self.path = Path(path).expanduser()
        self.max_bytes = max_bytes
        self.backups = backups
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()
        # (device, inode, size) of the file when we last appended, and the chain head it had then:
        # lets the common case skip re-reading the tail; any other writer changes the size.
        self._head: tuple[tuple[int, ...], int, str] | None = None

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write one record; return it as stored (with time, seq, prev_hash, hash)."""
        prepared = self._prepare(record)
        with self._thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                return self._append_locked(prepared)
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
                os.close(lock_fd)

    def _prepare(self, record: dict[str, Any]) -> dict[str, Any]:
        data = json.loads(json.dumps(record, default=_jsonable))
        if not isinstance(data, dict):
            raise TypeError("an audit record must be a dict")
        for reserved in ("time", "seq", "prev_hash", "hash"):
            data.pop(reserved, None)
        if "arguments" in data:
            data["arguments"] = redact_arguments(data["arguments"])
        return scrub_strings(data)

    def _append_locked(self, data: dict[str, Any]) -> dict[str, Any]:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            stat = os.fstat(fd)
            if stat.st_mode & 0o077 and stat.st_uid == os.getuid():
                os.fchmod(fd, 0o600)
            seq, prev = self._chain_head(fd, stat)
            data = {
                **data,
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "seq": seq + 1,
                "prev_hash": prev,
            }
            data["hash"] = record_hash(data)
            line = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
            if stat.st_size > 0 and stat.st_size + len(line) > self.max_bytes:
                os.close(fd)
                fd = -1
                self._rotate()
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                stat = os.fstat(fd)
            os.write(fd, line)
            os.fsync(fd)
            after = os.fstat(fd)
            self._head = (_identity(after), data["seq"], data["hash"])
            return data
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path}: {exc.strerror or exc}") from exc
        finally:
            if fd >= 0:
                os.close(fd)

    def _chain_head(self, fd: int, stat: os.stat_result) -> tuple[int, str]:
        if self._head is not None and self._head[0] == _identity(stat):
            return self._head[1], self._head[2]
        with os.fdopen(os.dup(fd), "rb") as handle:
            last = _last_line(handle, stat.st_size)
        if last is None:
            previous = rotated_path(self.path, 1)
            if previous.exists():
                with previous.open("rb") as handle:
                    last = _last_line(handle, previous.stat().st_size)
        if last is None:
            return 0, GENESIS
        try:
            record = json.loads(last)
            return int(record["seq"]), str(record["hash"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(
                f"the last record of {self.path} is unreadable ({exc}); run 'azure-agent-mcp audit verify' and move "
                "the damaged file aside"
            ) from None

    def _rotate(self) -> None:
        oldest = rotated_path(self.path, self.backups)
        if oldest.exists():
            oldest.unlink()
        for index in range(self.backups - 1, 0, -1):
            source = rotated_path(self.path, index)
            if source.exists():
                source.rename(rotated_path(self.path, index + 1))
        self.path.rename(rotated_path(self.path, 1))
        self._head = None


# -- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    files: tuple[str, ...] = ()
    first_seq: int | None = None
    last_seq: int | None = None
    anchored: bool = True  # the chain starts at the genesis hash (no older rotated file was pruned)
    first_bad_file: str | None = None
    first_bad_line: int | None = None
    bad_seq: int | None = None
    problem: str | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = list(self.files)
        return data


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    """Each path with its rotated predecessors (oldest first), unless the caller listed them."""
    given = [Path(p) for p in paths]
    named = {p.resolve() for p in given if p.exists()}
    files: list[Path] = []
    for path in given:
        siblings = audit_files(path)[:-1]
        if not any(s.resolve() in named for s in siblings):
            files.extend(siblings)
        files.append(path)
    return files


def verify_audit(paths: Iterable[str | Path]) -> VerifyResult:
    """Check the hash chain across ``paths`` (in order; rotated siblings are added automatically)."""
    files = _expand(list(paths))
    shown = tuple(str(f) for f in files)
    count = 0
    first_seq: int | None = None
    previous: dict[str, Any] | None = None
    previous_at = ""
    anchored = True

    def bad(file: Path, line: int, seq: int | None, problem: str) -> VerifyResult:
        return VerifyResult(False, count, shown, first_seq, previous.get("seq") if previous else None, anchored,
                            str(file), line, seq, problem)

    for file in files:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            return bad(file, 0, None, f"cannot read the file: {exc.strerror or exc}")
        if raw and not raw.endswith(b"\n"):
            lines = raw.split(b"\n")
            return bad(file, len(lines), None, "the last line is incomplete (truncated in the middle of a record)")
        for number, line in enumerate(raw.split(b"\n")[:-1] if raw else [], start=1):
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                return bad(file, number, None, f"not a JSON record ({exc})")
            seq = record.get("seq")
            stored = record.get("hash")
            if not isinstance(seq, int) or not isinstance(stored, str) or "prev_hash" not in record:
                return bad(file, number, seq if isinstance(seq, int) else None, "missing seq, prev_hash or hash")
            if record_hash(record) != stored:
                return bad(file, number, seq, "the record's content does not match its hash (altered)")
            if previous is None:
                first_seq = seq
                if record["prev_hash"] == GENESIS:
                    if seq != 1:
                        return bad(file, number, seq, f"the chain starts at seq {seq} instead of 1")
                elif _ROTATED.search(file.name):
                    anchored = False  # older records were rotated away; the chain is checked from here
                else:
                    return bad(
                        file,
                        number,
                        seq,
                        f"the chain starts at seq {seq} without its predecessor: records were deleted from the head "
                        "or the rotated files are missing (pass them too)",
                    )
            else:
                if record["prev_hash"] != previous["hash"]:
                    return bad(
                        file,
                        number,
                        seq,
                        f"prev_hash does not match the hash of the record before it ({previous_at}, seq "
                        f"{previous['seq']}): a record was deleted, inserted or reordered, or a file truncated",
                    )
                if seq != previous["seq"] + 1:
                    return bad(file, number, seq, f"seq {seq} follows seq {previous['seq']} ({previous_at})")
            previous = record
            previous_at = f"{file} line {number}"
            count += 1
    return VerifyResult(True, count, shown, first_seq, previous["seq"] if previous else None, anchored)
