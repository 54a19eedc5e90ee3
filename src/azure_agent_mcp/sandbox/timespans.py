"""ISO 8601 timespans as the Log Analytics query API reads them: a duration or an interval.

The API's ``timespan`` is ``PT1H`` (the last hour up to now), ``start/end``, ``start/duration`` or
``duration/end``. azure-monitor-query writes durations as fractional seconds (``PT3600.0S``) and
instants as ``2026-12-01T10:00:00.000Z``. Kept apart from the product's own parser on purpose: the
sandbox is the oracle the product is tested against.
"""

from __future__ import annotations

import datetime
import re

_DURATION = re.compile(
    r"P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)


class TimespanError(ValueError):
    """The timespan is not an ISO 8601 duration or interval."""


def parse_duration(text: str) -> datetime.timedelta:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise TimespanError(f"'{text[:60]}' is not an ISO 8601 duration such as PT1H or P1D")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return datetime.timedelta(**parts)


def parse_instant(text: str) -> datetime.datetime:
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise TimespanError(f"'{text[:60]}' is not an ISO 8601 date and time such as 2026-12-01T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def parse_timespan(text: str, now: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
    """[start, end) of a timespan; a bare duration ends at ``now``."""
    if "/" not in text:
        return now - parse_duration(text), now
    first, _, second = text.partition("/")
    if first.strip().upper().startswith("P"):
        end = parse_instant(second)
        return end - parse_duration(first), end
    start = parse_instant(first)
    end = start + parse_duration(second) if second.strip().upper().startswith("P") else parse_instant(second)
    if end < start:
        raise TimespanError(f"the interval '{text[:80]}' ends before it starts")
    return start, end
