"""The audit trail: durable, bounded, hash-chained JSON lines with signed checkpoints kept outside the log.

``AuditLog`` is the one object the server uses. Its promises, and where each is kept:

- **Durable, fail closed** (``audit_writer``, ``audit_commit``): ``append(record)`` returns only
  after the record is fsynced; concurrent appends share one fsync. ``durable=False`` writes now
  and leaves the fsync to the next durable append, the background flush (within about 0.2 s)
  or ``close()``: that is how one tool call costs one fsync. Any failure raises
  ``AuditUnavailable`` (``.path``, ``.cause``), leaves no partial record, and the next append
  starts from scratch.
- **Bounded** (``audit_records``): no line exceeds 16 KiB; larger values are kept as size and hash.
- **Honest retention** (``audit_rotation``): rotation by size, ``retain`` rotated segments, and a
  ``seal`` record for each segment retention deletes.
- **Crash safe**: a torn tail is cut back and a ``repair`` record appended; a log deleted,
  replaced or truncated under a running writer gets a ``gap`` record, never a silent new chain.
- **Tamper evident** (``audit_checkpoints``, ``audit_keys``): Ed25519-signed checkpoints of the
  chain head, every ``checkpoint_every`` records or ``checkpoint_seconds`` while records are
  written, and at ``close()``, in an anchor outside the log.
- **Portable** (``audit_lock``): cross-process locking through portalocker; no ``fcntl`` here.

``verify_audit`` (``audit_verify``) checks all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from azure_agent_mcp.policy.audit_errors import AuditError, AuditUnavailable
from azure_agent_mcp.policy.audit_records import GENESIS, RECORD_LIMIT, canonical, prepare, record_hash
from azure_agent_mcp.policy.audit_segments import audit_files, companion, rotated_path
from azure_agent_mcp.policy.audit_verify import VerifyResult, verify_audit
from azure_agent_mcp.policy.audit_writer import Writer, close_when_collected

_LOG = logging.getLogger(__name__)
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_RETAIN = 5
DEFAULT_CHECKPOINT_EVERY = 100
DEFAULT_CHECKPOINT_SECONDS = 5.0

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_CHECKPOINT_SECONDS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_RETAIN",
    "GENESIS",
    "RECORD_LIMIT",
    "AuditError",
    "AuditLog",
    "AuditUnavailable",
    "VerifyResult",
    "audit_files",
    "canonical",
    "record_hash",
    "rotated_path",
    "verify_audit",
]


class AuditLog:
    """Append-only, hash-chained audit log at ``path`` (mode 0600), safe across threads and processes.

    Nothing touches the disk until the first ``append`` or ``check_writable()``. Companions:
    ``<path>.anchor`` (or ``anchor_path``), ``<path>.pub``, ``<path>.lock``; the signing key is
    ``key_path`` or ``<state dir>/audit-signing-key.pem``, created 0600 on first use.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        retain: int = DEFAULT_RETAIN,
        key_path: str | Path | None = None,
        anchor_path: str | Path | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
    ) -> None:
        if max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024")
        if retain < 0:
            raise ValueError("retain must be 0 or more")
        if checkpoint_every < 1 or checkpoint_seconds <= 0:
            raise ValueError("checkpoint_every must be at least 1 and checkpoint_seconds positive")
        self.path = Path(path).expanduser()
        self.max_bytes = max_bytes
        self.retain = retain
        self.anchor_path = Path(anchor_path).expanduser() if anchor_path else companion(self.path, ".anchor")
        self.public_key_path = companion(self.path, ".pub")
        self.lock_path = companion(self.path, ".lock")
        self._writer = Writer(
            self.path,
            max_bytes=max_bytes,
            retain=retain,
            key_path=Path(key_path).expanduser() if key_path else None,
            anchor_path=self.anchor_path,
            checkpoint_every=checkpoint_every,
            checkpoint_seconds=checkpoint_seconds,
        )
        close_when_collected(self, self._writer)
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        """Called with each record once it is appended (as stored), on the appending thread; a listener's
        failure is logged and never fails the append. The server adds one only when telemetry is on."""

    @classmethod
    def open(cls, path: str | Path, **options: Any) -> AuditLog:
        """An ``AuditLog`` that has proved it can write (``check_writable``): for start-up, fail closed."""
        log = cls(path, **options)
        log.check_writable()
        return log

    @property
    def key_path(self) -> Path | None:
        """The signing key's file (None until first use when it is the default in the state dir)."""
        key = self._writer._key  # noqa: SLF001 - same package, read-only
        return key.path if key is not None else self._writer.key_path

    @property
    def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last record this writer knows (None before the first open)."""
        return self._writer.head

    @property
    def fsyncs(self) -> int:
        """How many fsyncs of the log this writer has run (group commit makes this less than durable appends)."""
        return self._writer.commit.fsyncs

    def append(self, record: dict[str, Any], *, durable: bool = True) -> dict[str, Any]:
        """Write one record; return it as stored (with ``time``, ``seq``, ``prev_hash``, ``hash``).

        ``durable=True``: returns only once the record is fsynced (an intent record before its
        request is sent). ``durable=False``: the bytes are written now; the fsync rides on the
        next durable append, the background flush or ``close()``. Raises ``AuditUnavailable``
        when the record could not be written; it is then not in the log.
        """
        stored = self._writer.append(prepare(record), durable=durable)
        if self.listeners:
            self._notify(stored)
        return stored

    def _notify(self, stored: dict[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener(stored)
            except Exception as exc:  # the record is in the log: a listener must not turn that into a failure
                _LOG.warning("audit listener %r failed: %s", listener, type(exc).__name__)

    def check_writable(self) -> None:
        """Open the log, its anchor and its key now; raise ``AuditUnavailable`` when any cannot be written.

        This is the first append's opening, done early: it creates the file (0600), repairs a torn
        tail, writes the public key and the anchor's ``open`` checkpoint. A directory, a read-only
        file system, a missing permission all fail here, with the path and the cause.
        """
        self._writer.open()

    def flush(self) -> None:
        """fsync every record written so far (the durable point for ``durable=False`` appends)."""
        self._writer.flush()

    def checkpoint(self) -> dict[str, Any]:
        """Write a signed checkpoint of the chain head now; return the anchor entry."""
        return self._writer.checkpoint()

    def close(self, *, timeout: float | None = None) -> None:
        """Flush, fsync and write the final signed checkpoint. Appending afterwards raises.

        ``timeout`` bounds the wait for an append in progress in another thread (shutdown paths).
        """
        self._writer.close(timeout=timeout)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
