"""The policy's ``Elevation`` key: what an agent may ask for, temporarily, with a human's approval.

``Elevation: {"MaxDuration": "PT1H", "Roles": [...], "Operations": [...], "Scopes": [...]}``.
Without the key nothing may be requested. ``Roles`` are role names or role definition GUIDs
(the eligible PIM roles an agent may activate); ``Operations`` are operation patterns an agent
may ask for one by one; at least one of the two is needed. ``Scopes`` fence where a grant may
apply (a request at a scope at or below one of them). Half-understood blocks are refused:
an elevation is a widening of the policy, so it must be read exactly or not at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from azure_agent_mcp.policy.errors import PolicyLoadError
from azure_agent_mcp.policy.patterns import pattern_problem
from azure_agent_mcp.policy.scopes import scope_problem

MAX_ELEVATION_SECONDS = 24 * 3600
"""PIM's own ceiling for an activation (a day); a policy may not allow more."""
_KEYS = {"maxduration": "MaxDuration", "roles": "Roles", "operations": "Operations", "scopes": "Scopes"}
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$", re.IGNORECASE)
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


class DurationError(ValueError):
    """Not an ISO 8601 duration this product reads (``PT10M``, ``PT1H``, ``P1D``...)."""


def parse_iso_duration(text: Any) -> int:
    """Seconds in an ISO 8601 duration of days, hours, minutes, seconds (no years or months: their length varies)."""
    if not isinstance(text, str):
        raise DurationError(f"expected an ISO 8601 duration string such as 'PT10M', got {type(text).__name__}")
    match = _DURATION.match(text.strip())
    if match is None or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise DurationError(f"'{text}' is not an ISO 8601 duration such as 'PT10M', 'PT1H' or 'P1D'")
    days, hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def iso_duration(seconds: int) -> str:
    """``seconds`` as the ISO 8601 duration PIM reads (``PT10M``, ``PT1H30M``, ``PT90S``)."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "")
    return text if text != "PT" else "PT0S"


def is_guid(text: str) -> bool:
    return bool(_GUID.match(text))


@dataclass(frozen=True)
class Elevation:
    max_seconds: int
    roles: tuple[str, ...] = ()
    operations: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()

    @property
    def max_duration(self) -> str:
        return iso_duration(self.max_seconds)

    def as_json(self) -> dict[str, Any]:
        return {"MaxDuration": self.max_duration, "Roles": list(self.roles), "Operations": list(self.operations),
                "Scopes": list(self.scopes)}


def parse_elevation(raw: Any, *, key: str, where: str, source: str) -> Elevation:
    """The Elevation block of a policy file (``key`` is its spelling there), or a PolicyLoadError naming the problem."""

    def fail(sub: str | None, problem: str) -> PolicyLoadError:
        name = f"{key}.{sub}" if sub else key
        return PolicyLoadError(f"{where}: key '{name}': {problem}", source=source, key=name)

    if not isinstance(raw, dict):
        raise fail(None, "expected an object such as {\"MaxDuration\": \"PT1H\", \"Operations\": [...], \"Scopes\": [...]}")
    keys: dict[str, str] = {}
    for name in raw:
        if name.lower() not in _KEYS:
            raise fail(name, "unknown key (expected MaxDuration, Roles, Operations, Scopes)")
        if name.lower() in keys:
            raise fail(name, "given twice (keys are case-insensitive)")
        keys[name.lower()] = name
    if "maxduration" not in keys:
        raise fail("MaxDuration", "missing: say how long a grant may last at most, e.g. \"PT1H\"")
    try:
        seconds = parse_iso_duration(raw[keys["maxduration"]])
    except DurationError as exc:
        raise fail(keys["maxduration"], str(exc)) from None
    if seconds < 60 or seconds > MAX_ELEVATION_SECONDS:
        raise fail(keys["maxduration"], f"{iso_duration(seconds)} is outside PT1M..P1D (PIM activations last at most a day)")
    roles = _strings(raw, keys, "roles", fail)
    for index, role in enumerate(roles):
        if not role.strip():
            raise fail(f"{keys['roles']}[{index}]", "an empty role name")
    operations = _strings(raw, keys, "operations", fail)
    for index, pattern in enumerate(operations):
        problem = pattern_problem(pattern)
        if problem is not None:
            raise fail(f"{keys['operations']}[{index}]", f"bad pattern: {problem}")
    if not roles and not operations:
        raise fail(None, "names neither Roles nor Operations, so nothing could ever be requested")
    if "scopes" not in keys:
        raise fail("Scopes", "missing: say where grants may apply, e.g. [\"/subscriptions/<id>/resourceGroups/<group>\"]")
    scopes = _strings(raw, keys, "scopes", fail)
    if not scopes:
        raise fail(keys["scopes"], "empty list: nothing could ever be requested")
    for index, scope in enumerate(scopes):
        problem = scope_problem(scope)
        if problem is not None:
            raise fail(f"{keys['scopes']}[{index}]", problem)
    return Elevation(seconds, roles, operations, scopes)


def _strings(raw: dict[str, Any], keys: dict[str, str], lower: str, fail: Any) -> tuple[str, ...]:
    if lower not in keys:
        return ()
    value = raw[keys[lower]]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise fail(keys[lower], "expected a list of strings")
    return tuple(value)
