"""KQL's value semantics over Python values: conversion to string, comparison, ordering, hashing.

Dynamic values are plain dicts and lists; a missing property is ``None`` (KQL's null), and any
comparison with null is null, which ``where`` treats as false, as Kusto does. String operators
(``contains``, ``startswith``...) compare the operands' string forms, where null is "".
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from azure_agent_mcp.sandbox.kql_tokens import parse_datetime


def type_of_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "real"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, timedelta):
        return "timespan"
    return "dynamic"


def normalize(value: Any) -> Any:
    """Datetimes without a zone are UTC, so that every datetime compares with every other."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def format_datetime(value: datetime) -> str:
    value = normalize(value).astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond:06d}0Z"


def format_timespan(value: timedelta) -> str:
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if value.days:
        text = f"{value.days}.{text}"
    if value.microseconds:
        text += f".{value.microseconds:06d}0"
    return sign + text


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, timedelta):
        return format_timespan(value)
    return str(value)


def tostring(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, timedelta):
        return format_timespan(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coerce_pair(a: Any, b: Any) -> tuple[Any, Any] | None:
    """The two values in one comparable kind, or None when KQL would find them incomparable."""
    if is_number(a) and is_number(b):
        return a, b
    if isinstance(a, bool) and isinstance(b, bool):
        return a, b
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    if isinstance(a, datetime) or isinstance(b, datetime):
        try:
            a = a if isinstance(a, datetime) else parse_datetime(a) if isinstance(a, str) else None
            b = b if isinstance(b, datetime) else parse_datetime(b) if isinstance(b, str) else None
        except ValueError:
            return None
        return (normalize(a), normalize(b)) if a is not None and b is not None else None
    if isinstance(a, timedelta) and isinstance(b, timedelta):
        return a, b
    if isinstance(a, (dict, list)) and isinstance(b, (dict, list)):
        return tostring(a), tostring(b)
    if isinstance(a, str) or isinstance(b, str):
        # a dynamic scalar against a string: Kusto compares the string forms
        return tostring(a), tostring(b)
    return None


def equal(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    pair = _coerce_pair(a, b)
    if pair is None:
        return False
    return pair[0] == pair[1]


def equal_ci(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    return tostring(a).lower() == tostring(b).lower()


def compare(op: str, a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    pair = _coerce_pair(a, b)
    if pair is None:
        return None
    x, y = pair
    if op == "<":
        return x < y
    if op == "<=":
        return x <= y
    if op == ">":
        return x > y
    return x >= y


def _has_term(haystack: str, term: str, case_sensitive: bool) -> bool:
    if not term:
        return True
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.search(r"(?<![0-9A-Za-z])" + re.escape(term) + r"(?![0-9A-Za-z])", haystack, flags) is not None


def string_operator(op: str, a: Any, b: Any) -> bool:
    negate = op.startswith("!")
    name = op.lstrip("!")
    case_sensitive = name.endswith("_cs")
    name = name.removesuffix("_cs")
    x, y = tostring(a), tostring(b)
    if not case_sensitive and name != "has":
        x, y = x.lower(), y.lower()
    if name == "contains":
        result = y in x
    elif name == "startswith":
        result = x.startswith(y)
    elif name == "endswith":
        result = x.endswith(y)
    else:
        result = _has_term(x, y, case_sensitive)
    return not result if negate else result


def sort_key(value: Any) -> tuple[int, Any]:
    """A total order over mixed values: numbers, strings, datetimes, timespans, then the rest."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if is_number(value):
        return (2, value if not (isinstance(value, float) and math.isnan(value)) else -math.inf)
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, datetime):
        return (4, normalize(value).timestamp())
    if isinstance(value, timedelta):
        return (5, value.total_seconds())
    return (6, tostring(value))


def hashable(value: Any) -> Any:
    """A key for grouping and distinct: dynamic values group by their JSON form."""
    if isinstance(value, (dict, list)):
        return ("dynamic", tostring(value))
    if isinstance(value, datetime):
        return ("datetime", normalize(value))
    if isinstance(value, bool):
        return ("bool", value)
    return value


def truthy(value: Any) -> bool:
    return value is True
