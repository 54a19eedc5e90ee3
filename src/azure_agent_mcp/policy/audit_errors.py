"""The audit's errors, as types: the server maps them to tool results without parsing messages.

``AuditUnavailable`` is the one the request path cares about: when it is raised, the record it
was asked to write is *not* in the log (a partial write has been cut back), so the caller must
not send the request it was about to audit. The message names the file and the operating
system's reason; it never carries record content, so no secret can leak through it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class AuditError(Exception):
    """The audit log could not be written or read as a log (the caller decides whether that is fatal)."""


class AuditUnavailable(AuditError):
    """The audit cannot be written right now: ``path`` is the file that refused, ``cause`` says why.

    Raised before anything is sent (fail closed). The writer starts from scratch on the next
    append, so the server recovers by itself once the disk is writable again.
    """

    def __init__(self, path: str | Path, cause: str, *, doing: str = "write") -> None:
        self.path = str(path)
        self.cause = cause
        self.doing = doing
        super().__init__(f"audit log unavailable: cannot {doing} {self.path}: {cause}")


_CAUSE_NAMES = {
    "ENOSPC": "No space left on device",
    "EROFS": "Read-only file system",
    "EISDIR": "is a directory",
    "EACCES": "Permission denied",
    "EPERM": "Operation not permitted",
    "ENOENT": "No such file or directory",
    "ENOTDIR": "a parent of the path is not a directory",
    "EDQUOT": "Disk quota exceeded",
    "EIO": "Input/output error",
}
# Not every platform defines every name (Windows has no EDQUOT).
_CAUSES = {getattr(errno, name): text for name, text in _CAUSE_NAMES.items() if hasattr(errno, name)}


def cause_of(exc: BaseException) -> str:
    """The operating system's reason in words (``strerror``), without the record that was being written."""
    if isinstance(exc, OSError):
        if exc.errno in _CAUSES:
            return _CAUSES[exc.errno]
        if exc.strerror:
            return exc.strerror
        if exc.errno is not None:
            return os.strerror(exc.errno)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def unavailable(path: str | Path, exc: BaseException, *, doing: str = "write") -> AuditUnavailable:
    """An ``AuditUnavailable`` for ``path`` from an ``OSError`` (or any failure) while ``doing``."""
    error = AuditUnavailable(path, cause_of(exc), doing=doing)
    error.__cause__ = exc
    return error
