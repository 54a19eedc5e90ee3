"""A log query's ``timespan`` argument: an ISO 8601 duration or interval, as azure-monitor-query takes it.

Checked before anything is sent, so a wrong format is the agent's error to fix, named with the
formats that work, not a 400 from Azure. Years and months are refused: their length depends on
the calendar, and Log Analytics would read them one way while the agent may mean another.
"""

from __future__ import annotations

import datetime
import re

from azure_agent_mcp.tools.base import ToolInputError

_DURATION = re.compile(
    r"P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)
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
    text = value.strip().upper()
    match = _DURATION.fullmatch(text)
    if match is None:
        if re.fullmatch(r"P(\d+Y)?(\d+M)?(\d+[WD])?(T.*)?", text) and ("Y" in text.split("T")[0] or "M" in text.split("T")[0]):
            raise _invalid(whole, f"'{value}' counts years or months, whose length depends on the calendar; use days (P30D)")
        raise _invalid(whole, f"'{value[:40]}' is not an ISO 8601 duration like PT1H or P1D")
    span = datetime.timedelta(**{k: float(v) for k, v in match.groupdict().items() if v})
    if span <= datetime.timedelta(0):
        raise _invalid(whole, "the duration is zero")
    if span > MAX_SPAN:
        raise _invalid(whole, "the duration is longer than two years (Log Analytics keeps data for at most two years)")
    return span


def _instant(value: str, whole: str) -> datetime.datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(whole, f"'{value[:40]}' is not an ISO 8601 date and time like 2026-12-01T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


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
