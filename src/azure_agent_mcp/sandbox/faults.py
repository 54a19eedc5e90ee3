"""Injected failures (status, Retry-After, latency, dropped connections) and claims challenges.

Both are matched on the request path with a case-insensitive regular expression (``re.search``),
so ``"/resourceGroups/rg-prod-app$"`` or just ``"listKeys"`` work.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any


class FaultSpecError(ValueError):
    """A fault or claims-challenge request the admin API cannot accept."""


@dataclass
class Fault:
    pattern: re.Pattern[str]
    remaining: int
    status: int | None
    retry_after: str | None
    latency_ms: int
    drop: bool

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.pattern.pattern,
            "remaining": self.remaining,
            "status": self.status,
            "retry_after": self.retry_after,
            "latency_ms": self.latency_ms,
            "drop": self.drop,
        }


def _compile(path: Any) -> re.Pattern[str]:
    if not isinstance(path, str) or not path:
        raise FaultSpecError("'path' must be a non-empty regular expression string")
    try:
        return re.compile(path, re.IGNORECASE)
    except re.error as exc:
        raise FaultSpecError(f"'path' is not a valid regular expression: {exc}") from exc


def parse_fault(spec: Any) -> Fault:
    if not isinstance(spec, dict):
        raise FaultSpecError("the body must be a JSON object like {\"path\": \"...\", \"status\": 429, \"count\": 1}")
    unknown = set(spec) - {"path", "count", "status", "retry_after", "latency_ms", "drop"}
    if unknown:
        raise FaultSpecError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    count = spec.get("count", 1)
    status = spec.get("status")
    latency = spec.get("latency_ms", 0) or 0
    drop = bool(spec.get("drop", False))
    retry_after = spec.get("retry_after")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise FaultSpecError("'count' must be a positive integer")
    if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
        raise FaultSpecError("'status' must be an HTTP error status between 400 and 599")
    if not isinstance(latency, (int, float)) or latency < 0 or latency > 120_000:
        raise FaultSpecError("'latency_ms' must be a number between 0 and 120000")
    if retry_after is not None and not isinstance(retry_after, (int, float, str)):
        raise FaultSpecError("'retry_after' must be a number of seconds")
    if status is None and not drop and not latency:
        raise FaultSpecError("a fault needs at least one of 'status', 'drop' or 'latency_ms'")
    return Fault(_compile(spec.get("path")), count, status,
                 None if retry_after is None else str(retry_after), int(latency), drop)


@dataclass
class ClaimsChallenge:
    pattern: re.Pattern[str]
    claims: dict[str, Any]

    @property
    def encoded(self) -> str:
        return base64.b64encode(json.dumps(self.claims, separators=(",", ":")).encode()).decode("ascii")

    def satisfied_by(self, token_claims: dict[str, Any]) -> bool:
        """Whether the token already carries every claim the challenge asks for."""
        for name, want in (self.claims.get("access_token") or {}).items():
            have = token_claims.get(name)
            if have is None:
                return False
            wanted: list[Any] = []
            if isinstance(want, dict):
                if "value" in want:
                    wanted = [want["value"]]
                elif "values" in want and isinstance(want["values"], list):
                    wanted = list(want["values"])
            if wanted:
                held = have if isinstance(have, list) else [have]
                if not any(str(w) in [str(h) for h in held] for w in wanted):
                    return False
        return True

    def describe(self) -> dict[str, Any]:
        return {"path": self.pattern.pattern, "claims": self.claims}


def parse_claims_challenge(spec: Any) -> ClaimsChallenge:
    if not isinstance(spec, dict):
        raise FaultSpecError("the body must be a JSON object like {\"path\": \"...\", \"claims\": {...}}")
    claims = spec.get("claims")
    if not isinstance(claims, dict) or not isinstance(claims.get("access_token"), dict) or not claims["access_token"]:
        raise FaultSpecError("'claims' must be an object like {\"access_token\": {\"acrs\": {\"essential\": true, "
                             "\"value\": \"c1\"}}}")
    return ClaimsChallenge(_compile(spec.get("path")), claims)
