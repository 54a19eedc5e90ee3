"""Closing what evicted agent sessions held, on a thread of its own.

Evictions happen wherever the table notices them: the sweeper, a tool call making room under the
cap (on the event loop), an MCP DELETE. Closing SDK clients, dropping the session's tokens from
the provider's cache and writing the audit record may block (the audit's lock, a file write), so
none of it runs there: the table hands the entry over and this thread does the work, in order.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

_LOG = logging.getLogger("azure_agent_mcp.server")
_STOP = object()


def close_session_resources(azure: Any, credential: Any, *, forget_tokens: bool = True) -> None:
    """Close a session's SDK clients, forget its tokens in the provider's shared cache, close its credential.

    ``forget_tokens=False`` (shutdown) keeps the tokens: a persisted cache serves them to the same
    session after a restart. Each step is attempted whatever the previous one did: a failure is
    logged (type only, never a message that could quote a token) and the next resource is still released.
    """
    steps: list[tuple[str, Callable[[], Any] | None]] = [("SDK clients", getattr(azure, "close", None))]
    provider = getattr(credential, "provider", None)
    if forget_tokens:
        steps.append(("cached tokens", getattr(provider, "forget_session", None)))
    steps.append(("credential", getattr(credential, "close", None)))
    for what, step in steps:
        if step is None:
            continue
        try:
            step()
        except Exception as exc:
            _LOG.warning("closing an evicted agent session's %s failed: %s", what, type(exc).__name__)


TRIM_AFTER = 200
"""Evictions after which the freed memory is handed back to the system (once the queue is empty)."""


def give_back_memory() -> None:
    """Collect the evicted sessions' reference cycles and return free heap pages to the system.

    Without it the process keeps the peak of its sessions' memory after they are gone: CPython
    frees the objects, the C allocator keeps the pages. ``malloc_trim`` is glibc's; elsewhere only
    the collection runs.
    """
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class EvictionCloser:
    """A queue of evicted entries and the daemon thread that closes them with ``close(entry, reason, idle)``."""

    def __init__(self, close: Callable[[Any, str, float], None]) -> None:
        self._close = close
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, entry: Any, reason: str, idle: float) -> None:
        with self._lock:
            if self._closed:  # the server is stopping: close in the caller's thread
                self._run(entry, reason, idle)
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="azure-agent-mcp evictions", daemon=True)
                self._thread.start()
        self._queue.put((entry, reason, idle))

    def _run(self, entry: Any, reason: str, idle: float) -> None:
        try:
            self._close(entry, reason, idle)
        except Exception:  # pragma: no cover - close() guards each step itself
            _LOG.warning("closing an evicted agent session failed", exc_info=True)

    def _loop(self) -> None:
        closed = 0
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._run(*item)
                closed += 1
                if closed >= TRIM_AFTER and self._queue.empty():
                    closed = 0
                    give_back_memory()
            finally:
                self._queue.task_done()

    def settle(self, timeout: float) -> bool:
        """Wait (up to ``timeout`` seconds) until everything submitted so far is closed."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Close what is queued, then stop the thread; later submissions close in the caller's thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)
