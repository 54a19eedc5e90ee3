"""Time arguments as agents write them (ISO 8601 times and durations), checked before anything is sent.

Azure Monitor takes absolute times: the activity log a ``$filter`` of ``eventTimestamp`` bounds,
metrics a ``timespan`` of ``start/end``. Agents think in "the last hour", so the tools take a
duration too, and turn every form into one absolute window here, with the clock read once: the
window a call asks for is the window its continuation keeps asking for.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass

from azure_agent_mcp.tools.base import ToolInputError

_DURATION = re.compile(
    r"P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
_CALENDAR = re.compile(r"P(\d+Y)?(\d+M)?(\d+[WD])?(T.*)?", re.IGNORECASE)
_FRACTION = re.compile(r"(\.\d{6})\d+")
DURATION_FORMAT = "an ISO 8601 duration such as PT15M, PT1H, P1D or P1DT12H (weeks, days, hours, minutes, seconds)"
TIME_FORMAT = "an ISO 8601 date-time such as 2026-01-21T20:00:00Z (UTC when no offset is given)"

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _now_ceiled(clock: Clock) -> datetime.datetime:
    """Now, rounded up to the second: a window ending "now" covers what happened this very second."""
    now = clock().astimezone(datetime.timezone.utc)
    whole = now.replace(microsecond=0)
    return whole if whole == now else whole + datetime.timedelta(seconds=1)


def parse_duration(value: str) -> datetime.timedelta:
    """An ISO 8601 duration in weeks, days, hours, minutes and seconds; ValueError says why not.

    Years and months are refused: their length depends on the calendar, and Azure may read them
    one way while the agent means another. The one parser every duration argument goes through.
    """
    text = value.strip()
    match = _DURATION.fullmatch(text)
    if match is None:
        head = text.upper().split("T")[0]
        if _CALENDAR.fullmatch(text) and ("Y" in head or "M" in head):
            raise ValueError(f"'{value[:40]}' counts years or months, whose length depends on the calendar; "
                             "use days (P30D)")
        raise ValueError(f"'{value[:40]}' is not an ISO 8601 duration like PT1H or P1D")
    return datetime.timedelta(**{k: float(v) for k, v in match.groupdict().items() if v})


def parse_moment(value: str) -> datetime.datetime:
    """An ISO 8601 date-time in UTC (UTC when it names no offset); ValueError when it is not one."""
    text = _FRACTION.sub(r"\1", value.strip())
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.astimezone(datetime.timezone.utc)


def duration(value: str, name: str) -> datetime.timedelta:
    try:
        return parse_duration(value)
    except ValueError:
        raise ToolInputError(f"{name} '{value[:60]}' is not {DURATION_FORMAT}.",
                             hint=f"Pass {name} like PT1H (one hour) or P1D (one day).") from None


def moment(value: str, name: str) -> datetime.datetime:
    try:
        return parse_moment(value)
    except ValueError:
        raise ToolInputError(f"{name} '{value[:60]}' is not {TIME_FORMAT}.",
                             hint=f"Pass {name} like 2026-01-21T20:00:00Z.") from None


@dataclass(frozen=True)
class Window:
    start: datetime.datetime
    end: datetime.datetime

    @property
    def length(self) -> datetime.timedelta:
        return self.end - self.start


def iso(value: datetime.datetime) -> str:
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def window(start: str | None, end: str | None, timespan: str | None, *, default: datetime.timedelta,
           clock: Clock = utc_now) -> Window:
    """One absolute window from ``start``/``end`` times and a ``timespan`` duration (any two, or one).

    A ``timespan`` alone ends now; with ``start`` it runs forward, with ``end`` backwards. Neither
    time nor duration: the last ``default``.
    """
    if start and end and timespan:
        raise ToolInputError("Pass at most two of start, end and timespan: together they over-determine the window.",
                             hint="For the last hour pass timespan=PT1H alone; for a fixed range pass start and end.")
    length = duration(timespan, "timespan") if timespan else None
    begin = moment(start, "start") if start else None
    finish = moment(end, "end") if end else None
    if begin is None and finish is None:
        finish = _now_ceiled(clock)
    if begin is None:
        assert finish is not None
        begin = finish - (length or default)
    if finish is None:
        finish = begin + length if length is not None else _now_ceiled(clock)
    if finish <= begin:
        raise ToolInputError(f"The window ends ({iso(finish)}) before it starts ({iso(begin)}).",
                             hint="Make end later than start, or pass a positive timespan.")
    return Window(begin, finish)


def metrics_timespan(value: str | None, *, default: datetime.timedelta, clock: Clock = utc_now) -> Window:
    """A metrics ``timespan``: a duration ending now (PT1H), or ``start/end`` / ``start/duration``."""
    if value is None or not value.strip():
        return window(None, None, None, default=default, clock=clock)
    first, slash, second = value.strip().partition("/")
    if not slash:
        if not first.upper().startswith("P"):
            raise ToolInputError(
                f"timespan '{value[:60]}' is neither {DURATION_FORMAT} nor an interval start/end of ISO 8601 "
                "date-times.", hint="Pass timespan like PT1H, or 2026-01-21T20:00:00Z/2026-01-21T21:00:00Z.")
        return window(None, None, first, default=default, clock=clock)
    if second.upper().startswith("P"):
        return window(first, None, second, default=default, clock=clock)
    return window(first, second, None, default=default, clock=clock)
