"""How the server's calls end: the in-flight registry, the shutdown drain and the signals that start it.

Every ``tools/call`` is registered for its whole life (``ToolAuditMiddleware`` opens and closes
the entry, after the call's audit record is written). Shutdown (SIGINT or SIGTERM, on either
transport) then goes:

1. stop accepting calls: new ``tools/call`` requests are answered ``ServerShuttingDown``;
2. wait up to ``SHUTDOWN_GRACE`` seconds for the calls in flight to finish;
3. cancel the rest (``CallControl.cancel("shutdown")``): their workers send nothing more, each call
   answers ``ServerShuttingDown`` and writes its record (status ``cancelled``);
4. stop the transport, close the audit log, exit 0.

A second signal skips what is left of the grace. stdin reaching EOF (the client is gone) cancels
the calls in flight at once (reason ``stdin-closed``).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from azure_agent_mcp.callcontext import DEFAULT_CALL_TIMEOUT, CallControl

SHUTDOWN_GRACE = 2.0
"""Seconds in-flight calls get to finish after SIGINT / SIGTERM before they are cancelled."""
CANCEL_SETTLE = 1.0
"""Seconds cancelled calls get to answer and write their records before the transport stops."""

_log = logging.getLogger("azure_agent_mcp.server")


@dataclass(eq=False)
class InFlight:
    """One tools/call between its arrival and its audit record."""

    control: CallControl
    tool: str | None = None
    scope: anyio.CancelScope | None = None
    working: bool = False
    """Set while the tool body runs on its worker; such a call answers a cancellation itself."""
    refused: bool = False
    """Arrived while the server was shutting down: answered ``ServerShuttingDown``, nothing sent."""
    record_refusal: Any = None
    """The error answer the worker got when the audit refused the call's record (None: written)."""
    _claimed: bool = False
    _claim_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def claim_record(self) -> bool:
        """Whether the caller is the one to write the call's record: the worker when it finishes in
        time, else the event loop (cancelled, past its deadline). Exactly one of them wins."""
        with self._claim_lock:
            if self._claimed:
                return False
            self._claimed = True
            return True


@dataclass(eq=False)
class CallRegistry:
    call_timeout: float | None = DEFAULT_CALL_TIMEOUT
    grace: float = SHUTDOWN_GRACE
    draining: bool = False
    _calls: set[InFlight] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, tool: str | None) -> InFlight:
        entry = InFlight(CallControl(self.call_timeout), tool, refused=self.draining)
        with self._lock:
            self._calls.add(entry)
        return entry

    def close(self, entry: InFlight) -> None:
        with self._lock:
            self._calls.discard(entry)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._calls)

    def cancel_all(self, reason: str) -> int:
        """Cancel every call in flight; returns how many there were."""
        with self._lock:
            entries = list(self._calls)
        for entry in entries:
            entry.control.cancel(reason)
            if not entry.working and entry.scope is not None:
                entry.scope.cancel()  # still resolving (confirmation): nothing of it was sent
        return len(entries)

    async def wait_idle(self, timeout: float) -> bool:
        with anyio.move_on_after(timeout):
            while self.active:
                await anyio.sleep(0.02)
        return not self.active

    async def drain(self, stop_waiting: anyio.Event | None = None) -> None:
        """Steps 1-3 of the shutdown (see the module docstring)."""
        self.draining = True
        if self.active:
            _log.warning("shutting down: waiting up to %g s for %d call(s) in flight", self.grace, self.active)
            with anyio.move_on_after(self.grace):
                while self.active and not (stop_waiting is not None and stop_waiting.is_set()):
                    await anyio.sleep(0.02)
        if self.active:
            _log.warning("shutting down: cancelling %d call(s) still in flight", self.cancel_all("shutdown"))
            await self.wait_idle(CANCEL_SETTLE)

    async def cancel_and_settle(self, reason: str) -> None:
        self.draining = True
        if self.cancel_all(reason):
            await self.wait_idle(CANCEL_SETTLE)


SHUTDOWN_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s)


class ShutdownRequest:
    """SIGINT / SIGTERM as an event the transports wait on; exit code 0, never the signal's.

    ``install()`` takes the signals at once (before the transport's event loop runs, so a signal
    during start-up is not lost or fatal); inside the loop, ``watch()`` delivers them to it.
    """

    def __init__(self) -> None:
        self.count = 0
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SHUTDOWN_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except (OSError, ValueError):  # pragma: no cover - not the main interpreter
                pass

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            try:
                signal.signal(sig, handler)
            except (OSError, ValueError, TypeError):  # pragma: no cover
                pass
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        with self._lock:
            self.count += 1
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    @property
    def requested(self) -> bool:
        return self.count > 0

    def on_signal(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (in the signal handler: keep it tiny, e.g. an Event's ``set``) on every later signal.

        Why: once the transport has stopped, a further signal means "stop now" (a host that waited two
        seconds, then sent SIGTERM): the shutdown's remaining waits end early instead of being killed."""
        with self._lock:
            self._listeners.append(listener)

    @contextmanager
    def watch(self, on_signal: Callable[[int], None]) -> Iterator[None]:
        """Inside the running event loop: call ``on_signal(count)`` on the loop for every signal."""
        schedule = loop_scheduler()

        def listener() -> None:
            # the handler runs on the main thread between two steps of the loop: hand the work to the
            # loop's next iteration instead of running it inside whatever the loop was doing
            schedule(on_signal, self.count)

        with self._lock:
            self._listeners.append(listener)
            pending = self.count
        try:
            if pending:
                on_signal(pending)
            yield
        finally:
            with self._lock:
                self._listeners.remove(listener)


def loop_scheduler() -> Callable[..., None]:
    """A function any thread (or a signal handler) may call to run ``fn(*args)`` on the current event
    loop soon; it does nothing once the loop has closed."""
    native = anyio.lowlevel.current_token().native_token
    soon = getattr(native, "call_soon_threadsafe", None) or getattr(native, "run_sync_soon", None)

    def schedule(fn: Callable[..., Any], *args: Any) -> None:
        try:
            soon(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    return schedule
