"""When is now, for a grant's expiry: never earlier than Azure says.

A grant ends at a wall-clock instant that Azure (PIM) honours on its own clock. Checking it only
against the local clock would let a machine whose clock runs late keep using a grant Azure has
already ended (or, worse, a deliberately skewed clock extend it). So the time used is the later
of the local clock and Azure's clock as last seen in a response ``Date`` header, advanced by the
monotonic time since it was seen. Either clock can only shorten a grant, never extend it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime


class GrantClock:
    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._azure: tuple[float, float] | None = None  # (Azure's epoch seconds, monotonic when seen)

    def observe(self, date_header: str | None) -> None:
        """Remember Azure's time from a response's ``Date`` header (ignored when unreadable)."""
        if not date_header:
            return
        try:
            seen = parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        at = self._monotonic()
        with self._lock:
            # keep whichever says it is later now: a stale or reordered answer cannot move time back
            if self._azure is None or seen - at > self._azure[0] - self._azure[1]:
                self._azure = (seen, at)

    def azure_now(self) -> float | None:
        with self._lock:
            seen = self._azure
        return None if seen is None else seen[0] + (self._monotonic() - seen[1])

    def now(self) -> float:
        local = self._wall()
        azure = self.azure_now()
        return local if azure is None else max(local, azure)
