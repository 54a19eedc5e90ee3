"""Reusable daemon threads for tool bodies.

A tool body blocks (the SDKs are synchronous), so it runs off the event loop. A new thread per
call cost more CPU than any other single step of a warm call; these threads are kept and reused,
and one left idle for ``IDLE_SECONDS`` ends. They stay daemon threads, as the per-call ones
were: a cancelled call's worker may still be waiting on an HTTP answer, and the process must be
able to exit without waiting for it.

A task is handed over by releasing a lock the idle worker is blocked acquiring: a bare lock is
the cheapest wake-up the threading module has (a ``threading.Event`` goes through a Condition,
which allocates a waiter lock and runs its bookkeeping in Python on both sides, each call).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable

IDLE_SECONDS = 60.0


class _Worker(threading.Thread):
    def __init__(self, pool: DaemonWorkers, task: Callable[[], None], then: Callable[[], None] | None) -> None:
        super().__init__(name="azure-agent-mcp worker", daemon=True)
        self.pool = pool
        self.task: Callable[[], None] | None = task
        self.then = then
        # Released when a task is handed over; the worker holds it (acquired) while it has none.
        self.handoff = threading.Lock()

    def run(self) -> None:
        while True:
            task, self.task = self.task, None
            then, self.then = self.then, None
            if task is not None:
                task()  # the task answers its own exceptions
            self.handoff.acquire()  # held from here: submit() releases it along with a task
            with self.pool.lock:
                self.pool.idle.append(self)
            if then is not None:  # after rejoining the idle list: the next call finds this thread free
                then()
            if not self.handoff.acquire(timeout=self.pool.idle_seconds):
                with self.pool.lock:
                    if self in self.pool.idle:  # nobody handed it a task meanwhile: end
                        self.pool.idle.remove(self)
                        return
                self.handoff.acquire()  # a task was handed over just as the wait ran out: it is coming
            self.handoff.release()


class DaemonWorkers:
    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self.lock = threading.Lock()
        self.idle: list[_Worker] = []

    def submit(self, fn: Callable[[], None], then: Callable[[], None] | None = None) -> None:
        """Run ``fn`` on an idle worker (or a new one), in a copy of the caller's context; then
        ``then()`` (outside that context) once the worker is free again."""
        task = contextvars.copy_context().run
        bound = lambda: task(fn)  # noqa: E731
        with self.lock:
            worker = self.idle.pop() if self.idle else None
            if worker is not None:
                worker.task, worker.then = bound, then
                worker.handoff.release()
                return
        _Worker(self, bound, then).start()

    @property
    def threads(self) -> int:
        """Idle workers right now (for tests)."""
        with self.lock:
            return len(self.idle)


WORKERS = DaemonWorkers()
