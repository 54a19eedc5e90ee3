"""The daemon worker pool: tasks run in the submitter's context, idle workers are reused, an idle
worker ends after its idle time, and a task handed over as that time runs out still runs."""

from __future__ import annotations

import contextvars
import threading
import time

from azure_agent_mcp.server.workers import DaemonWorkers

_label: contextvars.ContextVar[str] = contextvars.ContextVar("label", default="none")


def _run(pool: DaemonWorkers, label: str) -> tuple[str, threading.Thread]:
    seen: dict[str, object] = {}
    finished = threading.Event()
    _label.set(label)
    pool.submit(lambda: seen.update(label=_label.get(), thread=threading.current_thread()), then=finished.set)
    assert finished.wait(10), "the task never ran"
    return seen["label"], seen["thread"]  # type: ignore[return-value]


def _idle_after(pool: DaemonWorkers, count: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if pool.threads == count:
            return True
        time.sleep(0.01)
    return False


def test_sequential_tasks_reuse_one_worker_in_the_submitters_context() -> None:
    pool = DaemonWorkers(idle_seconds=30)
    answers = [_run(pool, f"call-{i}") for i in range(20)]
    assert [label for label, _ in answers] == [f"call-{i}" for i in range(20)]
    assert len({thread for _, thread in answers}) == 1
    assert pool.threads == 1


def test_concurrent_tasks_each_run_once() -> None:
    pool = DaemonWorkers(idle_seconds=30)
    ran: list[int] = []
    lock = threading.Lock()
    done = threading.Semaphore(0)

    def task(i: int) -> None:
        with lock:
            ran.append(i)

    for round_ in range(5):
        for i in range(8):
            pool.submit(lambda i=i + 8 * round_: task(i), then=done.release)
        for _ in range(8):
            assert done.acquire(timeout=10)
    assert sorted(ran) == list(range(40))
    assert _idle_after(pool, pool.threads) and 1 <= pool.threads <= 8


def test_an_idle_worker_ends_and_the_next_task_still_runs() -> None:
    pool = DaemonWorkers(idle_seconds=0.05)
    _, first = _run(pool, "before")
    assert _idle_after(pool, 0), "the idle worker did not end"
    first.join(10)
    assert not first.is_alive()
    label, second = _run(pool, "after")
    assert label == "after" and second is not first


def test_tasks_handed_over_as_the_idle_time_runs_out_all_run() -> None:
    pool = DaemonWorkers(idle_seconds=0.001)  # every wait races its timeout
    for i in range(300):
        label, _ = _run(pool, f"race-{i}")
        assert label == f"race-{i}"
