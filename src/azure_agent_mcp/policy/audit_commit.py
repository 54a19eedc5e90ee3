"""Group commit: concurrent durable appends share one fsync.

A tool call's intent record must be on disk before its request is sent, and fsync is the slow
part of an append (milliseconds on many disks). Writers ``os.write`` under the write lock and
count their writes; to make theirs durable they wait here *outside* that lock. The first waiter
becomes the leader and fsyncs; every write counted before its fsync started is then durable, so
the followers that queued meanwhile return without an fsync of their own. Under load, one fsync
covers many calls; alone, a call pays exactly one.

The file descriptor changes on rotation and reopening; ``swap`` waits for an fsync in flight and
makes what was written through the old descriptor durable first, so no fsync runs on a closed
(or reused) descriptor.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from azure_agent_mcp.policy.audit_errors import unavailable


class GroupCommit:
    def __init__(self, path: Path) -> None:
        self.path = path  # for error messages
        self._cv = threading.Condition(threading.Lock())
        self._fd: int | None = None
        self.written = 0  # writes counted so far (incremented under the writer's lock, after os.write)
        self._synced = 0  # every write up to here is durable
        self._syncing = False
        self._failed_upto = 0  # writes up to here were covered by an fsync that failed
        self._failure: OSError | None = None
        self.broken = False  # an fsync failed: the writer reopens from scratch on its next append
        self.fsyncs = 0  # how many fsyncs ran (for tests and the bench)

    @property
    def fd(self) -> int | None:
        return self._fd

    def wrote(self) -> int:
        """Count one write (call under the writer's lock, after it returned); its ticket for ``wait``."""
        self.written += 1
        return self.written

    def pending(self) -> bool:
        return self._synced < self.written

    def wait(self, ticket: int) -> None:
        """Return when write ``ticket`` is durable; raise ``AuditUnavailable`` when its fsync failed."""
        with self._cv:
            while self._synced < ticket:
                if self._failure is not None and ticket <= self._failed_upto:
                    raise unavailable(self.path, self._failure, doing="fsync") from self._failure
                if self._syncing:
                    self._cv.wait()
                    continue
                if self._fd is None:  # closed, and swap() could not make it durable
                    raise unavailable(self.path, OSError("the log was closed before the record was fsynced"),
                                      doing="fsync")
                self._lead()

    def _lead(self) -> None:
        """fsync as the leader (called holding ``_cv``; releases it around the fsync)."""
        self._syncing = True
        target, fd = self.written, self._fd
        self._cv.release()
        error: OSError | None = None
        try:
            os.fsync(fd)  # type: ignore[arg-type]
        except OSError as exc:
            error = exc
        finally:
            self._cv.acquire()
            self._syncing = False
            self.fsyncs += 1
            self._cv.notify_all()
        if error is not None:
            self._failed_upto, self._failure, self.broken = target, error, True
            raise unavailable(self.path, error, doing="fsync") from error
        self._synced = max(self._synced, target)

    def sync_now(self) -> None:
        """Make every write so far durable (the writer's lock held: checkpoints, rotation, close)."""
        self.wait(self.written)

    def swap(self, fd: int | None, *, quiet: bool = False) -> None:
        """Replace the descriptor (closing the old one), making the old one's writes durable first.

        When that fsync fails, the writes it covered fail for their waiters; ``quiet`` (used while
        already handling an error) records that without raising.
        """
        with self._cv:
            while self._syncing:
                self._cv.wait()
            old, self._fd = self._fd, fd
            error: OSError | None = None
            if old is not None:
                if self._synced < self.written:
                    try:
                        os.fsync(old)
                        self.fsyncs += 1
                    except OSError as exc:
                        error = exc
                try:
                    os.close(old)
                except OSError:
                    pass
            if error is None:
                self._synced = self.written
            else:
                self._failed_upto, self._failure, self.broken = self.written, error, True
            self._cv.notify_all()
        if error is not None and not quiet:
            raise unavailable(self.path, error, doing="fsync") from error

    def reset_failure(self) -> None:
        """After the writer reopened from scratch: later writes start with a clean slate."""
        with self._cv:
            self.broken = False
