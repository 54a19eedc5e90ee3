"""The audit writer: append, rotate, checkpoint and recover, fail closed.

Under the write lock (a thread lock plus the cross-process ``FileMutex``) an append first makes
sure the file it holds open is still the log and its in-memory head is still the file's head,
then ``os.write``s one whole line. An fsync happens outside the lock (``GroupCommit``), so
concurrent durable appends share it.

What the writer does when the file is not what it left (each leaves a record, never silence):
- a torn tail (crash mid-write): truncated to the last complete record, then a ``repair`` record
  says how many bytes were dropped;
- the file missing, replaced, truncated, or behind the anchor's last checkpoint: a ``gap``
  record, and the chain continues from the head the writer knows (in memory, or from the
  anchor), so ``audit verify`` shows the hole instead of a new chain starting from nowhere;
- records appended by no running writer: a ``gap`` record (``foreign``) naming them.

On any error the record is not in the log (a partial write is cut back with ``ftruncate``), the
caller gets ``AuditUnavailable``, and the next append reopens everything from scratch: once the
disk is writable again the writer recovers by itself.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from azure_agent_mcp.policy.audit_checkpoints import AnchorWriter
from azure_agent_mcp.policy.audit_commit import GroupCommit
from azure_agent_mcp.policy.audit_errors import AuditUnavailable, unavailable
from azure_agent_mcp.policy.audit_keys import SigningKey, default_key_path, write_public_key
from azure_agent_mcp.policy.audit_lock import FileMutex, Liveness
from azure_agent_mcp.policy.audit_records import GENESIS, RECORD_LIMIT, bound, seal
from azure_agent_mcp.policy.audit_rotation import beyond_retention, fsync_dir, seal_body, shift
from azure_agent_mcp.policy.audit_segments import (
    audit_files,
    companion,
    first_record,
    read_at,
    read_tail,
    rotated_path,
    tail_of,
)

log = logging.getLogger("azure_agent_mcp.audit")

FLUSH_INTERVAL = 0.2  # seconds: non-durable records are fsynced within about this
_BINARY = getattr(os, "O_BINARY", 0)
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | _BINARY

_GAP_DETAIL = {
    "missing": "the log file was missing (deleted while a writer ran)",
    "replaced": "the log file was replaced by another file",
    "truncated": "the log file shrank below what the writer had written",
    "rewritten": "the log's last record is not the one the writer wrote",
    "lost": "records the writer had written are no longer in the file (lost after a failed fsync?)",
    "behind_anchor": "the log ends before the head its anchor's last signed checkpoint attests",
    "foreign": "records were appended by no running audit writer",
}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class _File:
    fd: int
    ino: int
    dev: int
    end: int  # the file's size as this writer last left it


Head = tuple[int, str]


def _head_of(record: dict[str, Any] | None) -> Head | None:
    if record is None:
        return None
    seq, digest = record.get("seq"), record.get("hash")
    if isinstance(seq, int) and isinstance(digest, str):
        return seq, digest
    return None


class Writer:
    """The state behind one ``AuditLog``; see the module docstring. Thread-safe."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        retain: int,
        key_path: Path | None,
        anchor_path: Path,
        checkpoint_every: int,
        checkpoint_seconds: float,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.retain = retain
        self.key_path = key_path
        self.anchor_path = anchor_path
        self.public_key_path = companion(path, ".pub")
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self._lock = threading.Lock()
        self._mutex = FileMutex(companion(path, ".lock"))
        self.commit = GroupCommit(path)
        self._liveness = Liveness(path)
        self._file: _File | None = None
        self._dropped: tuple[int, int] | None = None  # the file held before an error
        # A descriptor kept on that file until it is compared with the one the path names again:
        # while it is open the file's inode cannot be reused, so a log deleted (or replaced by a
        # directory) during the error is not mistaken for the same file when it is recreated.
        self._dropped_fd: int | None = None
        self._head: Head | None = None  # survives errors: how deletion and truncation are noticed
        self._key: SigningKey | None = None
        self._anchor: AnchorWriter | None = None
        self._opened = False
        self._closed = False
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._close_requested = threading.Event()
        self._flusher: threading.Thread | None = None
        self.background_error: AuditUnavailable | None = None
        self.checkpoints = 0

    @property
    def writer_id(self) -> str:
        return self._liveness.writer_id

    @property
    def head(self) -> Head | None:
        return self._head

    # -- public operations (the AuditLog facade calls these) --------------------------------------

    def append(self, body: dict[str, Any], *, durable: bool) -> dict[str, Any]:
        with self._lock:
            ticket, stored = self._locked(lambda: self._append_locked(body))
        if durable:
            self.commit.wait(ticket)
        return stored

    def open(self) -> None:
        with self._lock:
            self._locked(self._ready)

    def flush(self) -> None:
        self.commit.sync_now()

    def checkpoint(self, event: str = "checkpoint") -> dict[str, Any]:
        with self._lock:
            return self._locked(lambda: (self._ready(), self._checkpoint(event))[1])

    def close(self, *, timeout: float | None = None) -> None:
        """Flush, fsync, write the final checkpoint (``close`` when other writers still run).

        ``timeout``: give up (leaving the log to be repaired at the next start) when another
        thread holds the write lock that long, as at interpreter exit with a thread stuck in I/O.
        """
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            log.warning("audit: %s not closed: a write still in progress after %.0f s", self.path, timeout)
            return
        try:
            self._close_locked()
        finally:
            self._lock.release()

    def _close_locked(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_requested.set()
        try:
            if self._opened:
                self._mutex.acquire()
                try:
                    self._ready()
                    others = self._liveness.others_running()
                    self._checkpoint("final" if others == 0 else "close")
                except OSError as exc:
                    raise unavailable(self.path, exc) from exc
                finally:
                    self._liveness.stop()  # under the mutex: the next closer must see us gone
                    self._mutex.release()
        finally:
            self._liveness.stop()
            self.commit.swap(None, quiet=True)
            self._file = None
            self._release_dropped()
            if self._anchor is not None:
                self._anchor.close()
            self._mutex.close()
            _OPEN.discard(self)

    def request_close(self) -> None:
        """Ask the background thread to close (from a finalizer: never block or take locks there)."""
        self._close_requested.set()
        if self._flusher is None:  # never opened: only the lock file's descriptor to release
            self._mutex.close()

    # -- under the locks --------------------------------------------------------------------------

    def _locked(self, action: Any) -> Any:
        if self._closed:
            raise AuditUnavailable(self.path, "the audit log was closed", doing="append to")
        self._mutex.acquire()
        try:
            return action()
        except AuditUnavailable:
            self._drop()
            raise
        except OSError as exc:
            self._drop()
            raise unavailable(self.path, exc) from exc
        finally:
            self._mutex.release()

    def _append_locked(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self._ready()
        if self._checkpoint_due():
            self._checkpoint("checkpoint")
        record = self._write(body)
        return self.commit.written, record

    def _drop(self) -> None:
        """Forget the open file after an error; the next append starts from scratch."""
        if self._file is not None:
            self._dropped = (self._file.ino, self._file.dev)
            self._release_dropped()
            try:
                self._dropped_fd = os.dup(self._file.fd)
            except OSError:
                self._dropped_fd = None
        self.commit.swap(None, quiet=True)
        self._file = None
        if self._anchor is not None:
            self._anchor.close()

    def _release_dropped(self) -> None:
        fd, self._dropped_fd = self._dropped_fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _ready(self) -> None:
        """Make sure ``_file`` is the log and ``_head`` its head (opening, recovering, noting gaps)."""
        if self.commit.broken:
            self._drop()
            self.commit.reset_failure()
        if self._file is None:
            self._open_fresh()
            return
        current = self._file
        try:
            disk = os.stat(self.path)
        except FileNotFoundError:
            disk = None
        if disk is not None and (disk.st_ino, disk.st_dev) == (current.ino, current.dev):
            if disk.st_size == current.end:
                return  # the common case: nobody else touched it
            self._reconcile("truncated" if disk.st_size < current.end else None, grown=disk.st_size > current.end)
            return
        rotated = self._rotated_by_another((current.ino, current.dev))
        self._reopen()
        self._reconcile(None if rotated else ("missing" if disk is None else "replaced"))

    def _rotated_by_another(self, identity: tuple[int, int] | None) -> bool:
        """Whether the file this writer had open is now a rotated segment (other writers rotated it)."""
        if identity is None:
            return False
        for index in range(1, self.retain + 2):
            try:
                info = os.stat(rotated_path(self.path, index))
            except OSError:
                break
            if (info.st_ino, info.st_dev) == identity:
                return True
        return False

    def _signing_key(self) -> SigningKey:
        if self._key is None:
            self._key = SigningKey.load_or_create(self.key_path or default_key_path())
        return self._key

    def _reopen(self) -> bool:
        """Open the file at the path (creating it); whether it existed already."""
        existed = os.path.lexists(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, _OPEN_FLAGS, 0o600)
        except OSError as exc:
            raise unavailable(self.path, exc) from exc
        try:
            info = os.fstat(fd)
            if info.st_mode & 0o077 and hasattr(os, "getuid") and info.st_uid == os.getuid():
                os.chmod(self.path, 0o600)
        except OSError as exc:
            os.close(fd)
            raise unavailable(self.path, exc) from exc
        self.commit.swap(fd, quiet=True)
        self._file = _File(fd, info.st_ino, info.st_dev, info.st_size)
        return existed

    def _open_fresh(self) -> None:
        key = self._signing_key()
        if self._anchor is None:
            self._anchor = AnchorWriter(self.anchor_path, key, self.path.name)
        rotated = self._rotated_by_another(self._dropped)
        existed = self._reopen()
        if self._opened:  # recovering after an error: was the file we had deleted or replaced meanwhile?
            assert self._file is not None
            same = (self._file.ino, self._file.dev) == self._dropped
            self._release_dropped()
            self._reconcile(None if same or rotated else ("replaced" if existed else "missing"))
            return
        anchor_head = self._anchor.head()
        if anchor_head is not None and anchor_head.get("key") != key.public.fingerprint:
            raise AuditUnavailable(
                self.anchor_path,
                f"its checkpoints are signed by key {anchor_head.get('key')}, but the signing key "
                f"({key.path}) is {key.public.fingerprint}: pass --audit-key with the key that signed them, or move "
                "the log, its anchor and its .pub aside to start a new log",
                doing="continue",
            )
        write_public_key(self.public_key_path, key.public)
        self._liveness.start()
        found = self._reconcile(None, anchor_head=anchor_head)
        seq, digest = found
        extra: dict[str, Any] = {"writer": self.writer_id, "pid": os.getpid()}
        if anchor_head is None and seq > 0:
            extra["adopted"] = True  # an anchor started for a log that already had records
        self._anchor_entry("open", seq, digest, extra)
        self._opened = True
        self._start_flusher()

    def _reconcile(self, reason: str | None, *, grown: bool = False,
                   anchor_head: dict[str, Any] | None = None) -> Head:
        """Read the open file's tail and settle the head; returns the head as found in the file.

        ``reason`` names what happened when the file turns out to be behind the writer's memory.
        Records that follow (repair, gap) are written here, after the head is settled.
        """
        assert self._file is not None
        current = self._file
        size = os.fstat(current.fd).st_size
        try:
            tail = read_tail(current.fd, size)
        except ValueError as exc:
            raise AuditUnavailable(self.path, f"its tail is damaged ({exc}); run 'azure-agent-mcp audit verify' "
                                   "and move the file aside", doing="append to") from None
        pending: list[dict[str, Any]] = []
        if tail.torn_bytes:
            dropped = read_at(current.fd, tail.good_end, tail.torn_bytes)
            os.ftruncate(current.fd, tail.good_end)
            pending.append({"kind": "repair", "reason": "torn tail", "dropped_bytes": tail.torn_bytes,
                            "dropped_sha256": hashlib.sha256(dropped).hexdigest()})
            log.warning("audit: %s had a torn tail of %d bytes; truncated to the last complete record",
                        self.path, tail.torn_bytes)
        current.end = tail.good_end
        found = _head_of(tail.last)
        if tail.last is not None and found is None:
            raise AuditUnavailable(self.path, "its last line is JSON but not an audit record; run 'azure-agent-mcp "
                                   "audit verify' and move the file aside", doing="append to")
        if found is None:  # empty: just rotated (a writer died before its first record), or emptied
            previous = tail_of(rotated_path(self.path, 1))
            found = _head_of(previous.last) if previous is not None else None
        file_head = found or (0, GENESIS)
        known = self._head
        if reason == "replaced" and known is not None and file_head[0] > known[0] and self._continues_rotation() \
                and not self._foreign(file_head):
            reason = None  # rotated by other writers so often that the file we had is already retired
        if anchor_head is not None and known is None:
            attested = (int(anchor_head.get("seq", 0)), str(anchor_head.get("hash")))
            if attested[0] > file_head[0] or (attested[0] == file_head[0] and attested[1] != file_head[1]):
                known, reason = attested, "behind_anchor"
            elif anchor_head.get("event") == "final" and file_head[0] > attested[0]:
                pending.append(self._gap_body("foreign", attested, file_head))
        if known is None or file_head == known or (found is not None and file_head[0] > known[0] and not reason):
            if grown and known is not None and file_head[0] > known[0] and self._foreign(file_head):
                pending.append(self._gap_body("foreign", known, file_head))
            self._head = file_head
        else:
            label = reason or ("lost" if file_head[0] < known[0] else "rewritten")
            pending.append(self._gap_body(label, known, found))
            self._head = known
            log.warning("audit: %s: %s; continuing the chain from seq %d", self.path, _GAP_DETAIL[label], known[0])
        for body in pending:
            self._write(body, may_rotate=False)
        return file_head

    def _continues_rotation(self) -> bool:
        """Whether the current file's first record chains to the last record of ``path.1``."""
        first = first_record(self.path)
        previous = tail_of(rotated_path(self.path, 1))
        head = _head_of(previous.last) if previous is not None else None
        return first is not None and head is not None and first.get("prev_hash") == head[1]

    def _foreign(self, found: Head) -> bool:
        """Whether records up to ``found`` were appended by no audit writer.

        Another writer is, or was, there while its ``.live`` file exists (a crashed one leaves it);
        one that closed cleanly has signed a checkpoint covering what it wrote.
        """
        if self._liveness.others_present() or self._anchor is None:
            return False
        attested = self._anchor.head()
        return not (attested is not None and isinstance(attested.get("seq"), int) and attested["seq"] >= found[0])

    def _gap_body(self, reason: str, expected: Head, found: Head | None) -> dict[str, Any]:
        return {
            "kind": "gap",
            "reason": reason,
            "detail": _GAP_DETAIL[reason],
            "expected_seq": expected[0],
            "expected_hash": expected[1],
            "found_seq": found[0] if found else None,
            "found_hash": found[1] if found else None,
        }

    def _write(self, body: dict[str, Any], *, may_rotate: bool = True) -> dict[str, Any]:
        assert self._file is not None and self._head is not None
        record, line = self._sealed(body)
        if may_rotate and self._file.end > 0 and self._file.end + len(line) > self.max_bytes:
            self._rotate()
            record, line = self._sealed(body)
        current = self._file
        before = current.end
        try:
            written = os.write(current.fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # the disk filled up mid-record
        except OSError as exc:
            try:
                os.ftruncate(current.fd, before)  # never leave a torn record behind
            except OSError:
                pass
            raise unavailable(self.path, exc) from exc
        current.end = before + len(line)
        self.commit.wrote()
        self._head = (record["seq"], record["hash"])
        self._since_checkpoint += 1
        return record

    def _sealed(self, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        assert self._head is not None
        record, line = seal(body, self._head[0] + 1, self._head[1], _now())
        if len(line) > RECORD_LIMIT:  # grown past the bound after it was checked (a redaction marker, a seq)
            body = bound(body, RECORD_LIMIT - (len(line) - RECORD_LIMIT) - 64)
            record, line = seal(body, self._head[0] + 1, self._head[1], _now())
        return record, line

    def _rotate(self) -> None:
        self.commit.sync_now()
        try:
            shift(self.path)
        except OSError as exc:
            raise unavailable(self.path, exc, doing="rotate") from exc
        self._reopen()
        fsync_dir(self.path.parent)
        doomed = beyond_retention(self.path, self.retain)
        if not doomed:
            return
        survivors = [f for f in audit_files(self.path) if f not in doomed]
        for index, segment in enumerate(doomed):
            body = seal_body(segment, [*doomed[index + 1 :], *survivors])
            if body is not None:
                self._write(body, may_rotate=False)
        self.commit.sync_now()  # the seals are durable before anything is deleted
        for segment in doomed:
            try:
                segment.unlink()
            except OSError as exc:
                raise unavailable(segment, exc, doing="retire") from exc
        fsync_dir(self.path.parent)
        self._checkpoint("checkpoint")

    def _checkpoint_due(self) -> bool:
        if self._since_checkpoint >= self.checkpoint_every:
            return True
        return self._since_checkpoint > 0 and time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds

    def _checkpoint(self, event: str) -> dict[str, Any]:
        assert self._head is not None
        return self._anchor_entry(event, self._head[0], self._head[1], {"writer": self.writer_id, "pid": os.getpid()})

    def _anchor_entry(self, event: str, seq: int, digest: str, extra: dict[str, Any]) -> dict[str, Any]:
        assert self._anchor is not None
        self.commit.sync_now()  # never attest a record that is not yet durable
        entry = self._anchor.append(event, seq, digest, **extra)
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self.checkpoints += 1
        self.background_error = None
        return entry

    # -- the background flush -----------------------------------------------------------------------

    def _start_flusher(self) -> None:
        if self._flusher is None:
            _OPEN.add(self)
            self._flusher = threading.Thread(target=self._run, name=f"audit-flush-{self.path.name}", daemon=True)
            self._flusher.start()

    def _run(self) -> None:
        while not self._closed:
            if self._close_requested.wait(FLUSH_INTERVAL):
                self.close_quietly()
                return
            try:
                if self.commit.pending():
                    self.commit.sync_now()
                if self._since_checkpoint > 0 and time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds:
                    with self._lock:
                        if not self._closed:
                            self._locked(lambda: (self._ready(), self._checkpoint("checkpoint")))
            except AuditUnavailable as exc:  # the next append retries and reports it
                self.background_error = exc

    def close_quietly(self, timeout: float | None = None) -> None:
        try:
            self.close(timeout=timeout)
        except AuditUnavailable as exc:
            log.warning("%s", exc)


_OPEN: set[Writer] = set()  # writers with a background thread; closed at interpreter exit


def _close_all() -> None:
    for writer in list(_OPEN):
        writer.close_quietly(timeout=5.0)


atexit.register(_close_all)


def close_when_collected(owner: object, writer: Writer) -> None:
    """Close ``writer`` (in its own thread) once ``owner``, the public object, is garbage collected."""
    weakref.finalize(owner, writer.request_close)
