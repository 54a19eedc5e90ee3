"""What the current tool call is: correlation id, agent session, tool, MCP client, principal.

The server opens a scope per tool call; the pipeline policies that every SDK client carries
(correlation headers, policy enforcement, audit) read it. A ContextVar, so it follows the call
into worker threads and never leaks between concurrent calls.

A call also carries a ``CallControl``: its deadline (``--call-timeout``) and whether it has been
cancelled (the client cancelled it, went away, or the server is shutting down). The tool body runs
on a thread that cannot be interrupted, so cancellation is cooperative: the enforcement point
asks the control before every request and refuses to send once the call is cancelled or past its
deadline (``CallCancelledError`` / ``CallDeadlineError``); a request already on the wire may
finish. Stdlib only: identity and the tools read it too.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_CALL_TIMEOUT = 60.0
"""Seconds a tool call may take, retries, token requests and polling included (``--call-timeout``)."""

CANCEL_REASONS = {
    "client": "the client cancelled it or went away",
    "stdin-closed": "the client closed the server's standard input",
    "shutdown": "the server is shutting down",
}


class CallInterruptedError(Exception):
    """The call was stopped before this request: nothing was sent. ``decision`` is what the audit records."""

    decision = "interrupted"
    code = "Interrupted"


class CallCancelledError(CallInterruptedError):
    decision = "cancelled"
    code = "Cancelled"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"The call was cancelled ({CANCEL_REASONS.get(reason, reason)}); nothing more is sent to Azure.")


class CallDeadlineError(CallInterruptedError):
    decision = "deadline"
    code = "DeadlineExceeded"

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        limit = f" of {timeout:g} s" if timeout else ""
        super().__init__(f"The call reached its deadline{limit} (--call-timeout); nothing more is sent to Azure.")


class CallControl:
    """One call's deadline and cancellation, shared by the event loop and the call's worker thread."""

    def __init__(self, timeout: float | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.timeout = timeout
        self.deadline: float | None = None
        self.cancel_reason: str | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    # -- deadline ----------------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> None:
        """Start the deadline clock (when the call's Azure work begins)."""
        if timeout is not None:
            self.timeout = timeout
        if self.timeout and self.timeout > 0:
            self.deadline = self._clock() + self.timeout

    def remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative), or None without one."""
        return None if self.deadline is None else self.deadline - self._clock()

    @property
    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    # -- cancellation -------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self.cancel_reason is not None

    def cancel(self, reason: str = "client") -> bool:
        """Mark the call cancelled (first reason wins); returns whether this call did it."""
        with self._lock:
            if self.cancel_reason is not None:
                return False
            self.cancel_reason = reason
            listeners = list(self._listeners)
        self._stopped.set()
        for listener in listeners:
            listener()
        return True

    def on_cancel(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the cancelling thread) when the call is cancelled; at once if it already is."""
        with self._lock:
            if self.cancel_reason is None:
                self._listeners.append(listener)
                return
        listener()

    def interruption(self) -> CallInterruptedError | None:
        """The error to raise instead of sending a request now, or None when the call may go on."""
        if self.cancel_reason is not None:
            return CallCancelledError(self.cancel_reason)
        if self.expired:
            return CallDeadlineError(self.timeout)
        return None

    def check(self) -> None:
        error = self.interruption()
        if error is not None:
            raise error

    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, never past the deadline; returns early when the call is cancelled."""
        left = self.remaining()
        if left is not None:
            seconds = min(seconds, max(left, 0.0))
        if seconds > 0:
            self._stopped.wait(seconds)


@dataclass(frozen=True)
class CallContext:
    correlation_id: str
    session_id: str | None = None
    tool: str | None = None
    client_name: str | None = None
    arguments: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    control: CallControl | None = None


_current: ContextVar[CallContext | None] = ContextVar("azure_agent_mcp_call", default=None)


def current_call() -> CallContext | None:
    return _current.get()


def current_control() -> CallControl | None:
    call = _current.get()
    return call.control if call is not None else None


def call_interruption(call: CallContext | None = None) -> CallInterruptedError | None:
    """Why the current call (or ``call``) must not send another request, or None."""
    call = call if call is not None else _current.get()
    if call is None or call.control is None:
        return None
    return call.control.interruption()


def remaining_time(default: float | None = None) -> float | None:
    """Seconds left in the current call, capped at ``default``; ``default`` outside a call or without a deadline."""
    control = current_control()
    left = control.remaining() if control is not None else None
    if left is None:
        return default
    left = max(left, 0.001)
    return left if default is None else min(left, default)


@contextmanager
def call_scope(**fields: Any) -> Iterator[CallContext]:
    """Open a call scope; a new correlation id unless one is given. Nested scopes inherit fields."""
    parent = _current.get()
    if parent is not None:
        fields.setdefault("correlation_id", parent.correlation_id)
        ctx = replace(parent, **fields)
    else:
        fields.setdefault("correlation_id", str(uuid.uuid4()))
        ctx = CallContext(**fields)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
