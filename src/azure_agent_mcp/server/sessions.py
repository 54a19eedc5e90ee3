"""The table of live agent sessions: what each one holds, and when it is let go.

An agent session holds a credential (its token partition), SDK clients and the principal read
from its token. A server for a team sees thousands come and go, so the table bounds them two
ways: a session idle for longer than ``--session-idle`` is evicted, and past ``--max-sessions``
the least recently used session that has no call in flight is evicted to make room. When every
session has a call in flight, a new session is refused (``SessionLimitReached``) rather than
taking one from under a running call.

Keys are opaque strings: how a request names its session (a header, the MCP connection, the
caller) is the runtime's business, not the table's. Eviction only forgets; closing what an entry
held is the ``on_evict`` callback's job, run outside the table's lock.

A session evicted and named again simply starts anew: same id, new credential, new clients.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure_agent_mcp.identity import AgentSession

DEFAULT_IDLE = "30m"
DEFAULT_MAX_SESSIONS = 1000
RETRY_AFTER_SECONDS = 2
"""What a refused client is told to wait: calls in flight usually end well within that."""

REASON_IDLE = "idle"
REASON_CAP = "cap"
REASON_MCP_SESSION_ENDED = "mcp-session-ended"
REASON_SHUTDOWN = "shutdown"


class SessionLimitReached(Exception):
    """Every one of the ``--max-sessions`` sessions has a call in flight: no room for a new one."""

    code = "SessionLimitReached"

    def __init__(self, cap: int, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        self.cap = cap
        self.retry_after = retry_after
        super().__init__(
            f"the server already holds its cap of {cap} agent session(s) (--max-sessions), each with a call "
            f"in flight, so no new session can start; retry in {retry_after} s, or start the server with a "
            "higher --max-sessions"
        )

    def payload(self) -> dict[str, Any]:
        """The JSON error a refused HTTP request gets (no stack trace, nothing about other sessions)."""
        return {"code": self.code, "message": str(self), "max_sessions": self.cap, "flag": "--max-sessions",
                "retry_after": self.retry_after}


@dataclass(eq=False)
class SessionEntry:
    """One live agent session and what it holds."""

    key: str
    session: AgentSession
    pinned: bool = False
    """The server's own session (stdio's, HTTP's default): never evicted."""
    credential: Any = None
    azure: Any = None
    principal: dict[str, Any] | None = None
    caller: Any = None
    """The authenticated caller that owns it (``callers.Caller``); None for stdio and anonymous HTTP."""
    connections: set[str] = field(default_factory=set)
    in_flight: int = 0
    calls: int = 0
    last_used: float = 0.0
    closed: bool = False
    """Evicted: what it held is closed (or being closed); the runtime starts the session anew if named again."""
    ending: bool = False
    """Its last MCP session ended while a call was in flight: evicted when that call ends."""


Evicted = Callable[[SessionEntry, str, float], None]
"""``on_evict(entry, reason, idle_seconds)``, called outside the lock for every evicted entry."""


class SessionTable:
    def __init__(
        self,
        *,
        idle_seconds: float | None,
        max_sessions: int,
        on_evict: Evicted,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.idle_seconds = idle_seconds or None
        self.max_sessions = max_sessions
        self._on_evict = on_evict
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, SessionEntry] = OrderedDict()  # least recently used first
        self._connections: OrderedDict[str, tuple[str, float]] = OrderedDict()  # MCP session -> (key, last seen)
        self._pinned = 0  # the server's own sessions: in the table, not counted by the cap
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # -- lookups ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Sessions counted by the cap (the pinned ones are not)."""
        with self._lock:
            return len(self._entries) - self._pinned

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def get(self, key: str) -> SessionEntry | None:
        with self._lock:
            return self._entries.get(key)

    def connection_key(self, connection: str) -> str | None:
        """The key of the agent session this MCP session last used, if it is still mapped."""
        with self._lock:
            found = self._connections.get(connection)
            return found[0] if found is not None else None

    def entries(self) -> list[SessionEntry]:
        """A snapshot of the live entries (the pinned ones included)."""
        with self._lock:
            return list(self._entries.values())

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def would_admit(self, key: str | None) -> bool:
        """Whether a request for ``key`` (None: a session not known yet) would get a session now."""
        with self._lock:
            if key is not None and key in self._entries:
                return True
            return len(self._entries) - self._pinned < self.max_sessions or self._evictable() is not None

    # -- use -------------------------------------------------------------------------------------

    def add_pinned(self, key: str, session: AgentSession, credential: Any = None) -> SessionEntry:
        with self._lock:
            entry = SessionEntry(key, session, pinned=True, credential=credential, last_used=self._clock())
            if key not in self._entries:
                self._pinned += 1
            self._entries[key] = entry
            return entry

    def lease(self, key: str, create: Callable[[], AgentSession], connection: str | None = None) -> SessionEntry:
        """The entry for ``key`` (created when missing), marked as having a call in flight until ``release``."""
        return self._use(key, create, connection, lease=True)

    def touch(self, key: str, create: Callable[[], AgentSession], connection: str | None = None) -> SessionEntry:
        """The entry for ``key`` (created when missing), marked as just used."""
        return self._use(key, create, connection, lease=False)

    def release(self, entry: SessionEntry) -> None:
        evicted: list[tuple[SessionEntry, str, float]] = []
        with self._lock:
            entry.in_flight = max(entry.in_flight - 1, 0)
            entry.last_used = self._clock()
            if self._entries.get(entry.key) is entry:
                self._entries.move_to_end(entry.key)
                if entry.ending and not entry.in_flight and not entry.connections and not entry.pinned:
                    evicted.append(self._remove(entry, REASON_MCP_SESSION_ENDED))
        self._dispose(evicted)

    def _use(self, key: str, create: Callable[[], AgentSession], connection: str | None, *, lease: bool) -> SessionEntry:
        evicted: list[tuple[SessionEntry, str, float]] = []
        try:
            with self._lock:
                now = self._clock()
                entry = self._entries.get(key)
                if entry is None:
                    victim = None
                    if len(self._entries) - self._pinned >= self.max_sessions:
                        victim = self._evictable()
                        if victim is None:
                            raise SessionLimitReached(self.max_sessions)
                    entry = SessionEntry(key, create(), last_used=now)  # may refuse the id: nothing evicted yet
                    if victim is not None:
                        evicted.append(self._remove(victim, REASON_CAP))
                    self._entries[key] = entry
                else:
                    self._entries.move_to_end(key)
                    entry.ending = False
                entry.last_used = now
                if lease:
                    entry.in_flight += 1
                    entry.calls += 1
                if connection is not None:
                    self._map(connection, entry, now)
                return entry
        finally:
            self._dispose(evicted)

    def _map(self, connection: str, entry: SessionEntry, now: float) -> None:
        previous = self._connections.get(connection)
        if previous is not None and previous[0] != entry.key:
            old = self._entries.get(previous[0])
            if old is not None:
                old.connections.discard(connection)
        self._connections[connection] = (entry.key, now)
        self._connections.move_to_end(connection)
        entry.connections.add(connection)

    def _evictable(self) -> SessionEntry | None:
        for entry in self._entries.values():  # least recently used first
            if not entry.pinned and not entry.in_flight:
                return entry
        return None

    # -- ending ----------------------------------------------------------------------------------

    def end_connection(self, connection: str) -> bool:
        """An MCP session ended (DELETE): forget its mapping, and its agent session when no other MCP
        session uses it (at once, or when its call in flight ends). Returns whether it was mapped."""
        evicted: list[tuple[SessionEntry, str, float]] = []
        with self._lock:
            found = self._connections.pop(connection, None)
            if found is None:
                return False
            entry = self._entries.get(found[0])
            if entry is not None:
                entry.connections.discard(connection)
                if not entry.connections and not entry.pinned:
                    if entry.in_flight:
                        entry.ending = True
                    else:
                        evicted.append(self._remove(entry, REASON_MCP_SESSION_ENDED))
        self._dispose(evicted)
        return True

    def sweep(self) -> int:
        """Evict every session idle for longer than ``idle_seconds``; forget MCP sessions as idle. Returns how many."""
        if self.idle_seconds is None:
            return 0
        evicted: list[tuple[SessionEntry, str, float]] = []
        with self._lock:
            cutoff = self._clock() - self.idle_seconds
            for entry in list(self._entries.values()):
                if entry.last_used > cutoff:
                    break  # the rest were used more recently
                if not entry.pinned and not entry.in_flight:
                    evicted.append(self._remove(entry, REASON_IDLE))
            for connection, (key, seen) in list(self._connections.items()):
                if seen > cutoff:
                    break
                del self._connections[connection]
                entry = self._entries.get(key)
                if entry is not None:
                    entry.connections.discard(connection)
        self._dispose(evicted)
        return len(evicted)

    def close(self) -> None:
        """Stop the sweeper and evict everything, the pinned sessions too (the server is stopping)."""
        self._stop.set()
        if self._sweeper is not None and self._sweeper is not threading.current_thread():
            self._sweeper.join(timeout=5)
        with self._lock:
            evicted = [self._remove(entry, REASON_SHUTDOWN) for entry in list(self._entries.values())]
            self._connections.clear()
        self._dispose(evicted)

    def _remove(self, entry: SessionEntry, reason: str) -> tuple[SessionEntry, str, float]:
        del self._entries[entry.key]
        if entry.pinned:
            self._pinned -= 1
        for connection in entry.connections:
            self._connections.pop(connection, None)
        entry.connections.clear()
        return entry, reason, max(self._clock() - entry.last_used, 0.0)

    def _dispose(self, evicted: list[tuple[SessionEntry, str, float]]) -> None:
        for entry, reason, idle in evicted:
            self._on_evict(entry, reason, idle)

    # -- the sweeper -----------------------------------------------------------------------------

    def start_sweeper(self) -> None:
        """A daemon thread that sweeps every quarter of the idle time (at most every 30 s, at least every 50 ms)."""
        if self.idle_seconds is None or self._sweeper is not None:
            return
        period = min(max(self.idle_seconds / 4, 0.05), 30.0)

        def run() -> None:
            while not self._stop.wait(period):
                try:
                    self.sweep()
                except Exception:  # pragma: no cover - a failed close must not stop the sweeping
                    import logging

                    logging.getLogger("azure_agent_mcp.server").warning("session sweep failed", exc_info=True)

        self._sweeper = threading.Thread(target=run, name="azure-agent-mcp sessions", daemon=True)
        self._sweeper.start()
