"""Signed checkpoints of the chain head, kept in an anchor outside the log.

A hash chain alone proves nothing to someone who can rewrite the file: they recompute it. An
anchor entry is the head (``seq``, ``hash``) signed with the writer's Ed25519 key, so a rewrite
of any record up to a checkpoint, a truncated tail, an emptied or deleted file, all contradict a
signature the attacker cannot make without the key. The anchor is its own little chain (``n``,
``prev``) so that removing or reordering entries in the middle shows too.

Entry events:
- ``open``: a writer starts on the log (attests the head it found; after a ``final`` entry the
  next ``open`` must attest exactly that head, or records appeared while no writer ran);
- ``checkpoint``: periodic, at least every N records or S seconds while records are written;
- ``close``: a writer closed cleanly while others still write;
- ``final``: the last writer closed cleanly: nothing may follow this head until the next ``open``.

The anchor file defaults to ``<log>.anchor``; ``--audit-anchor`` can put it on another mount or
in a directory the server can append to but an attacker of the log cannot rewrite.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from azure_agent_mcp.policy.audit_errors import AuditUnavailable, unavailable
from azure_agent_mcp.policy.audit_keys import PublicKey, SigningKey
from azure_agent_mcp.policy.audit_records import GENESIS, dumps
from azure_agent_mcp.policy.audit_segments import read_at, read_tail

EVENTS = ("open", "checkpoint", "close", "final")
_BINARY = getattr(os, "O_BINARY", 0)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def signed_bytes(entry: dict[str, Any]) -> bytes:
    """What the signature covers: the entry without ``sig``, canonical."""
    return dumps({k: v for k, v in entry.items() if k != "sig"})


def entry_hash(entry: dict[str, Any]) -> str:
    """What the next entry's ``prev`` names: the whole entry, signature included."""
    return hashlib.sha256(dumps(entry)).hexdigest()


def check_entry(entry: Any, public: PublicKey) -> str | None:
    """Why ``entry`` is not a valid anchor entry signed by ``public`` (None when it is)."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    missing = [k for k in ("n", "prev", "event", "seq", "hash", "key", "sig") if k not in entry]
    if missing:
        return f"missing {', '.join(missing)}"
    if entry["event"] not in EVENTS or not isinstance(entry["seq"], int) or not isinstance(entry["n"], int):
        return "not an anchor entry (event, seq or n)"
    if entry["key"] != public.fingerprint:
        return f"signed by key {entry['key']}, not by the public key given ({public.fingerprint})"
    try:
        signature = base64.b64decode(str(entry["sig"]), validate=True)
    except ValueError:
        return "the signature is not base64"
    if not public.verifies(signature, signed_bytes(entry)):
        return "the signature does not verify (the checkpoint was altered or forged)"
    return None


@dataclass(frozen=True)
class AnchorLine:
    number: int  # 1-based line in the anchor file
    entry: dict[str, Any] | None  # None: not JSON
    raw: bytes


@dataclass(frozen=True)
class AnchorFile:
    lines: tuple[AnchorLine, ...]
    torn_bytes: int  # bytes after the last newline (an entry cut short)


def read_anchor(data: bytes) -> AnchorFile:
    """The anchor's complete lines, parsed, and how many bytes trail the last newline."""
    cut = data.rfind(b"\n")
    body, rest = data[: cut + 1], data[cut + 1 :]
    lines = []
    for number, raw in enumerate(body.split(b"\n")[:-1], start=1):
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = None
        lines.append(AnchorLine(number, entry if isinstance(entry, dict) else None, raw))
    return AnchorFile(tuple(lines), len(rest))


class AnchorWriter:
    """Appends signed entries to the anchor file. Call under the log's ``FileMutex``.

    Continues from what it knows in memory when the file went missing, shrank or was replaced,
    and says so in the entry (``anchor_gap``), so that the anchor's own chain shows the gap.
    """

    def __init__(self, path: Path, key: SigningKey, log_name: str) -> None:
        self.path = path
        self.key = key
        self.log_name = log_name
        self._fd: int | None = None
        self._ino: int | None = None
        self._end = 0
        self._n = -1  # index of the last entry known
        self._prev = GENESIS
        self.last: dict[str, Any] | None = None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def head(self) -> dict[str, Any] | None:
        """The last entry in the file (for a writer starting up: was the log closed, at which head?)."""
        self._resync()
        return self.last

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | _BINARY, 0o600)
        except OSError as exc:
            self._fd = None
            raise unavailable(self.path, exc) from exc
        self._ino = os.fstat(self._fd).st_ino

    def _resync(self) -> dict[str, Any]:
        """Bring the in-memory head in line with the file; return notes for the next entry."""
        notes: dict[str, Any] = {}
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            on_disk = None
        except OSError as exc:
            raise unavailable(self.path, exc, doing="read") from exc
        if self._fd is not None and on_disk is not None and on_disk.st_ino == self._ino and on_disk.st_size == self._end:
            return notes
        if self._fd is None or on_disk is None or on_disk.st_ino != self._ino:
            if self._fd is not None:
                notes["anchor_gap"] = "missing" if on_disk is None else "replaced"
            self.close()
            self._open()
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        try:
            tail = read_tail(self._fd, size)
        except ValueError as exc:
            raise AuditUnavailable(self.path, f"the anchor's tail is damaged ({exc}); run 'azure-agent-mcp audit "
                                   "verify' and move it aside", doing="append to") from None
        if tail.torn_bytes:
            try:
                os.ftruncate(self._fd, tail.good_end)
            except OSError as exc:
                raise unavailable(self.path, exc, doing="repair the torn tail of") from exc
            notes["anchor_repaired_bytes"] = tail.torn_bytes
        last = tail.last
        n = last.get("n") if isinstance(last, dict) else None
        if isinstance(n, int) and n >= self._n:
            self._n, self._prev, self.last = n, entry_hash(last), last
        elif self._n >= 0:
            notes.setdefault("anchor_gap", "truncated" if size < self._end or last is None else "rewritten")
        self._end = tail.good_end
        return notes

    def append(self, event: str, seq: int, head_hash: str, **fields: Any) -> dict[str, Any]:
        """Sign the head (``seq``, ``head_hash``) and append it, fsynced. Raises ``AuditUnavailable``."""
        try:
            notes = self._resync()
            entry: dict[str, Any] = {
                "v": 1,
                "n": self._n + 1,
                "prev": self._prev,
                "event": event,
                "log": self.log_name,
                "seq": seq,
                "hash": head_hash,
                "time": now(),
                "key": self.key.public.fingerprint,
                **fields,
                **notes,
            }
            entry["sig"] = base64.b64encode(self.key.sign(signed_bytes(entry))).decode("ascii")
            line = dumps(entry) + b"\n"
            self._write(line)
        except AuditUnavailable:
            self.close()
            raise
        self._n, self._prev, self.last = entry["n"], entry_hash(entry), entry
        return entry

    def _write(self, line: bytes) -> None:
        assert self._fd is not None
        before = self._end
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a short write: the disk filled up mid-entry
            os.fsync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, before)
            except OSError:
                pass
            raise unavailable(self.path, exc) from exc
        self._end = before + len(line)


def read_file(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | _BINARY)
    try:
        return read_at(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)
