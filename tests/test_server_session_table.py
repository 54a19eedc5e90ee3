"""The session table on its own: idle eviction, the cap's LRU choice, calls in flight, MCP sessions ending."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azure_agent_mcp.identity import AgentSession
from azure_agent_mcp.server.sessions import SessionLimitReached, SessionTable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _session(key: str) -> AgentSession:
    return AgentSession(id=key, origin="flag", created_at=0.0)


def _table(max_sessions: int = 3, idle: float | None = 60.0) -> tuple[SessionTable, list[tuple[str, str, bool]], Clock]:
    evicted: list[tuple[str, str, bool]] = []
    clock = Clock()

    def on_evict(entry: Any, reason: str, idle_seconds: float) -> None:
        evicted.append((entry.key, reason, entry.in_flight > 0))

    return SessionTable(idle_seconds=idle, max_sessions=max_sessions, on_evict=on_evict, clock=clock), evicted, clock


def _use(table: SessionTable, key: str, connection: str | None = None) -> Any:
    return table.touch(key, lambda: _session(key), connection)


def test_the_cap_evicts_the_least_recently_used_session():
    table, evicted, clock = _table(max_sessions=3)
    for key in ("a", "b", "c"):
        _use(table, key)
        clock.now += 1
    _use(table, "a")  # a is now the most recently used: b is the oldest
    _use(table, "d")
    assert evicted == [("b", "cap", False)]
    assert "b" not in table and {"a", "c", "d"} == {k for k in "acd" if k in table}
    assert len(table) == 3


def test_a_session_with_a_call_in_flight_is_never_evicted_and_a_full_busy_table_refuses():
    table, evicted, clock = _table(max_sessions=2)
    busy_a = table.lease("a", lambda: _session("a"))
    busy_b = table.lease("b", lambda: _session("b"))
    with pytest.raises(SessionLimitReached) as refused:
        _use(table, "c")
    assert refused.value.cap == 2 and "--max-sessions" in str(refused.value)
    assert refused.value.payload()["flag"] == "--max-sessions" and refused.value.payload()["max_sessions"] == 2
    assert not table.would_admit("c") and table.would_admit("a")
    assert evicted == [] and "c" not in table
    clock.now += 10_000  # far past the idle time: still in flight, so still kept
    assert table.sweep() == 0 and "a" in table and "b" in table
    table.release(busy_a)
    _use(table, "c")  # a is idle now: it makes room
    assert evicted == [("a", "cap", False)]
    table.release(busy_b)


def test_idle_sessions_are_swept_and_recent_ones_kept():
    table, evicted, clock = _table(max_sessions=10, idle=60)
    _use(table, "old", "conn-old")
    clock.now += 50
    _use(table, "recent", "conn-recent")
    clock.now += 20  # old: 70 s idle, recent: 20 s
    assert table.sweep() == 1
    assert evicted == [("old", "idle", False)]
    assert table.connection_key("conn-old") is None and table.connection_key("conn-recent") == "recent"


def test_idle_time_counts_from_the_end_of_the_last_call():
    table, evicted, clock = _table(idle=60)
    entry = table.lease("long", lambda: _session("long"))
    clock.now += 300  # a call running for five minutes
    table.release(entry)
    clock.now += 30
    assert table.sweep() == 0 and evicted == []
    clock.now += 31
    assert table.sweep() == 1


def test_pinned_sessions_stay_until_close_and_do_not_count_against_the_cap():
    table, evicted, clock = _table(max_sessions=1)
    table.add_pinned("server", _session("server"))
    _use(table, "other")
    assert len(table) == 1 and evicted == []
    clock.now += 10_000
    assert table.sweep() == 1 and evicted == [("other", "idle", False)]
    table.close()
    assert evicted[1:] == [("server", "shutdown", False)]


def test_an_ended_mcp_session_ends_its_agent_session_only_when_no_other_uses_it():
    table, evicted, clock = _table()
    _use(table, "shared", "conn-1")
    _use(table, "shared", "conn-2")
    assert table.end_connection("conn-1")
    assert evicted == [] and "shared" in table
    assert table.end_connection("conn-2")
    assert evicted == [("shared", "mcp-session-ended", False)]
    assert not table.end_connection("conn-2")  # already gone


def test_an_mcp_session_ending_during_a_call_ends_the_agent_session_after_it():
    table, evicted, clock = _table()
    entry = table.lease("s", lambda: _session("s"), "conn")
    table.end_connection("conn")
    assert evicted == [] and "s" in table
    table.release(entry)
    assert evicted == [("s", "mcp-session-ended", False)]


def test_an_id_refused_by_the_factory_evicts_nothing():
    table, evicted, clock = _table(max_sessions=1)
    _use(table, "a")

    def bad() -> AgentSession:
        raise ValueError("bad id")

    with pytest.raises(ValueError):
        table.touch("b", bad)
    assert evicted == [] and "a" in table


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["lease", "release", "touch", "end", "tick", "sweep"]),
                          st.integers(min_value=0, max_value=6)), max_size=60))
def test_no_sequence_evicts_a_session_in_flight_or_exceeds_the_cap(steps):
    table, evicted, clock = _table(max_sessions=3, idle=5)
    held: list[Any] = []
    for action, n in steps:
        key = f"s{n}"
        try:
            if action == "lease":
                held.append(table.lease(key, lambda k=key: _session(k), f"c{n}"))
            elif action == "touch":
                _use(table, key, f"c{n}")
            elif action == "release" and held:
                table.release(held.pop(n % len(held)))
            elif action == "end":
                table.end_connection(f"c{n}")
            elif action == "tick":
                clock.now += n
            else:
                table.sweep()
        except SessionLimitReached:
            # refused only when every session has a call in flight
            assert len(table) == 3 and all(table.get(k) is None or table.get(k).in_flight for k in [f"s{i}" for i in range(7)])
        assert len(table) <= 3
        assert not any(busy for _, _, busy in evicted), evicted
        for entry in held:
            assert table.get(entry.key) is entry, "a session with a call in flight left the table"
