"""A log query's ``timespan`` argument: an ISO 8601 duration or interval, as azure-monitor-query takes it.

Checked before anything is sent, so a wrong format is the agent's error to fix, named with the
formats that work, not a 400 from Azure. Durations and date-times are read by ``timespans``, the
one parser of every time argument; this module only shapes them as azure-monitor-query takes them.
"""

from __future__ import annotations

import datetime

from azure_agent_mcp.tools.base import ToolInputError
from azure_agent_mcp.tools.timespans import parse_duration, parse_moment

FORMATS_HINT = (
    "Use an ISO 8601 duration ending now (PT15M, PT1H, P1D, P7D, P1DT12H), or an interval: start/end "
    "(2026-12-01T00:00:00Z/2026-12-01T06:00:00Z), start/duration (2026-12-01T00:00:00Z/PT6H) or "
    "duration/end (PT6H/2026-12-01T06:00:00Z)."
)
MAX_SPAN = datetime.timedelta(days=730)

Timespan = datetime.timedelta | tuple[datetime.datetime, datetime.datetime] | tuple[datetime.datetime, datetime.timedelta]


def _invalid(value: str, problem: str) -> ToolInputError:
    return ToolInputError(f"timespan '{value[:80]}' is not valid: {problem}.", hint=FORMATS_HINT)


def _duration(value: str, whole: str) -> datetime.timedelta:
    try:
        span = parse_duration(value)
    except ValueError as exc:
        raise _invalid(whole, str(exc)) from None
    if span <= datetime.timedelta(0):
        raise _invalid(whole, "the duration is zero")
    if span > MAX_SPAN:
        raise _invalid(whole, "the duration is longer than two years (Log Analytics keeps data for at most two years)")
    return span


def _instant(value: str, whole: str) -> datetime.datetime:
    try:
        return parse_moment(value)
    except ValueError:
        raise _invalid(whole, f"'{value[:40]}' is not an ISO 8601 date and time like 2026-12-01T10:00:00Z") from None


def parse_timespan(value: str) -> Timespan:
    """``PT1H`` -> timedelta; ``start/end`` -> (start, end); ``start/PT1H`` -> (start, timedelta); ``PT1H/end`` -> (start, end)."""
    if not isinstance(value, str) or not value.strip():
        raise _invalid(str(value), "it is empty")
    if value.count("/") > 1:
        raise _invalid(value, "an interval has exactly one '/'")
    if "/" not in value:
        return _duration(value, value)
    first, second = (part.strip() for part in value.split("/"))
    if first.upper().startswith("P") and second.upper().startswith("P"):
        raise _invalid(value, "an interval needs a date and time on at least one side")
    if first.upper().startswith("P"):
        end = _instant(second, value)
        return end - _duration(first, value), end
    start = _instant(first, value)
    if second.upper().startswith("P"):
        return start, _duration(second, value)
    end = _instant(second, value)
    if end <= start:
        raise _invalid(value, "the interval ends before it starts")
    return start, end
