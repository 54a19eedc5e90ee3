"""The sandbox's clock: real time plus an offset that only the admin API moves.

Time-bound access (PIM activations, their schedules and instances, RBAC expiry, the activity log,
every response's ``Date`` header) reads this clock, so a test can step past an expiry with
``POST /_sandbox/clock {"advance": "PT11M"}`` instead of sleeping.

Token issuance and validation stay on real time on purpose: tokens are checked by MSAL and
azure-core in the client process, which only knows the machine's clock. Moving the sandbox's token
clock would make every cached token look expired (or not yet valid) to the sandbox while the client
still trusts it, and the suite would test token refresh instead of access expiry. Azure works the
same way: Entra's token lifetime and PIM's schedule are separate clocks; an expired activation is
refused by RBAC even while the caller's token is still valid.

The clock only moves forward except on ``reset``, which rebuilds the seed world with it.
"""

from __future__ import annotations

import datetime
import email.utils
import time
from dataclasses import dataclass

from azure_agent_mcp.sandbox.timespans import TimespanError, parse_duration

MAX_ADVANCE = 366 * 24 * 3600.0  # a year per step: enough for any expiry, small enough to catch typos


class ClockAdvanceError(ValueError):
    """The advance is not a positive ISO 8601 duration or a positive number of seconds."""


@dataclass
class SandboxClock:
    offset: float = 0.0  # seconds added to real time

    def now(self) -> float:
        """Seconds since the epoch, on the sandbox's clock."""
        return time.time() + self.offset

    def now_datetime(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.now(), datetime.timezone.utc)

    def advance(self, seconds: float) -> float:
        """Move the clock forward; returns the new time."""
        if not 0 < seconds <= MAX_ADVANCE:
            raise ClockAdvanceError(f"an advance must be more than 0 and at most {int(MAX_ADVANCE)} seconds "
                                    f"(a year); got {seconds}")
        self.offset += seconds
        return self.now()

    def reset(self) -> None:
        self.offset = 0.0

    def http_date(self) -> str:
        """The ``Date`` header value (RFC 9110 IMF-fixdate) for now."""
        return email.utils.formatdate(self.now(), usegmt=True)

    def describe(self) -> dict[str, object]:
        now = self.now()
        return {"now": iso(now), "epoch": now, "offset_seconds": self.offset}


def parse_advance(value: object) -> float:
    """Seconds from ``"PT11M"`` (ISO 8601 duration) or a number of seconds (``660`` or ``"660"``)."""
    if isinstance(value, bool):
        raise ClockAdvanceError("'advance' must be an ISO 8601 duration such as \"PT11M\" or a number of seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = parse_duration(text).total_seconds()
            except TimespanError as exc:
                raise ClockAdvanceError(f"'advance' {exc}; or give a number of seconds") from None
    else:
        raise ClockAdvanceError("'advance' must be an ISO 8601 duration such as \"PT11M\" or a number of seconds")
    if seconds != seconds or seconds <= 0 or seconds > MAX_ADVANCE:  # NaN included
        raise ClockAdvanceError(f"'advance' must be more than 0 and at most {int(MAX_ADVANCE)} seconds (a year); "
                                f"got {value!r}")
    return seconds


def iso(epoch: float) -> str:
    """ARM's date-time rendering with 7 fractional digits, as PIM answers (``2026-12-01T14:05:00.1234567Z``)."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"
