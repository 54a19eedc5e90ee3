"""Cross-process locks for the audit, through portalocker (flock on POSIX, msvcrt/LockFileEx on Windows).

Two things need the operating system's help because two servers may share one state directory:

- ``FileMutex``: one writer at a time appends, rotates or checkpoints (``audit.jsonl.lock``).
  Held only around a write, never around an fsync of a plain append.
- ``Liveness``: each running writer holds an exclusive lock on its own ``audit.jsonl.live.<id>``.
  At close, a writer that can lock every other live file is the last one: its checkpoint is the
  *final* one that says "the log is closed". Crashed writers' files are lockable (the operating
  system released them) and are removed then. Only exclusive locks are used, because shared
  locks need pywin32 on Windows.

portalocker is imported when a lock is first taken, not when the package is imported, so that
``azure_agent_mcp.policy`` stays cheap to import (the CLI's start-up path) and never needs
``fcntl`` itself.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import Any

from azure_agent_mcp.policy.audit_errors import unavailable
from azure_agent_mcp.policy.audit_segments import companion

_BINARY = getattr(os, "O_BINARY", 0)


def _portalocker() -> Any:
    import portalocker

    return portalocker


_LOCKER: Any = None


def _locker() -> Any:
    """The platform's portalocker locker object (flock on POSIX, msvcrt on Windows).

    Called directly it costs a fifth of ``portalocker.lock``/``unlock``, which re-validate flags
    and resolve the locker on every call: that matters at three locks per tool call. Falls back
    to the module functions when this portalocker has no such class.
    """
    global _LOCKER
    if _LOCKER is None:
        module = _portalocker().portalocker
        kind = getattr(module, "FlockLocker", None) or getattr(module, "MsvcrtLocker", None)
        _LOCKER = kind() if kind is not None else _portalocker()
    return _LOCKER


class FileMutex:
    """An exclusive lock on ``path`` (created 0600), blocking, re-openable after errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> FileMutex:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        portalocker = _portalocker()
        if self._fd is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _BINARY, 0o600)
            except OSError as exc:
                raise unavailable(self.path, exc, doing="open the lock file") from exc
        try:
            _locker().lock(self._fd, portalocker.LockFlags.EXCLUSIVE)
        except (OSError, portalocker.LockException) as exc:
            self.close()
            raise unavailable(self.path, exc, doing="lock") from exc

    def release(self) -> None:
        if self._fd is None:
            return
        portalocker = _portalocker()
        try:
            _locker().unlock(self._fd)
        except (OSError, portalocker.LockException):
            self.close()  # closing the descriptor releases the lock too

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass


def try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on ``path``, or None when someone else holds it (or it is gone)."""
    portalocker = _portalocker()
    try:
        fd = os.open(path, os.O_RDWR | _BINARY)
    except OSError:
        return None
    try:
        portalocker.lock(fd, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
    except (OSError, portalocker.LockException):
        os.close(fd)
        return None
    return fd


def read_only_lock(path: Path) -> int | None:
    """The writers' mutex taken by a reader (``audit verify``) for a consistent snapshot, if it can.

    Never creates the lock file (verify must work on a read-only copy) and never blocks (the
    caller retries for a while, then reads without it); None when it cannot lock now.
    """
    portalocker = _portalocker()
    for flags in (os.O_RDWR, os.O_RDONLY):
        try:
            fd = os.open(path, flags | _BINARY)
        except OSError:
            continue
        try:
            portalocker.lock(fd, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
            return fd
        except (OSError, portalocker.LockException):
            os.close(fd)
    return None


def unlock_fd(fd: int | None) -> None:
    if fd is None:
        return
    try:
        _portalocker().unlock(fd)
    except Exception:  # noqa: BLE001 - closing releases it anyway
        pass
    try:
        os.close(fd)
    except OSError:
        pass


class Liveness:
    """This writer's ``<log>.live.<id>`` file, locked while it runs. Use under the ``FileMutex``."""

    PREFIX = ".live."

    def __init__(self, log: Path) -> None:
        self.log = log
        self.writer_id = secrets.token_hex(6)
        self.path = companion(log, f"{self.PREFIX}{self.writer_id}")
        self._fd: int | None = None

    def start(self) -> None:
        if self._fd is not None:
            return
        portalocker = _portalocker()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _BINARY, 0o600)
        except OSError as exc:
            raise unavailable(self.path, exc, doing="create") from exc
        try:
            portalocker.lock(fd, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
        except (OSError, portalocker.LockException) as exc:
            os.close(fd)
            raise unavailable(self.path, exc, doing="lock") from exc
        self._fd = fd

    def _other_files(self) -> list[Path]:
        prefix = self.log.name + self.PREFIX
        try:
            names = os.listdir(self.log.parent)
        except OSError:
            return []
        return [self.log.parent / n for n in names if n.startswith(prefix) and self.log.parent / n != self.path]

    def others_present(self) -> bool:
        """Whether any other writer runs or ran without closing (its file is still there).

        A log that grew while no other writer was ever there was appended to by something that
        is not an audit writer.
        """
        return bool(self._other_files())

    def others_running(self) -> int:
        """How many other writers are alive; removes the files crashed writers left behind."""
        running = 0
        for path in self._other_files():
            fd = try_lock(path)
            if fd is None:
                if path.exists():
                    running += 1
                continue
            unlock_fd(fd)  # before unlinking: Windows does not remove open files
            try:
                path.unlink()
            except OSError:
                pass
        return running

    def stop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        unlock_fd(fd)
        try:
            self.path.unlink()
        except OSError:
            pass
