"""AssignableScopes: where a policy lets the agent act at all.

Containment is by path segment and case-insensitive, as ARM compares resource ids:
``/subscriptions/abc`` covers ``/subscriptions/ABC/resourceGroups/x`` but not
``/subscriptions/abcd``; ``/`` covers everything. A plain string prefix test would get the
second case wrong, which is exactly the kind of slip a policy must not make.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ROOT = "/"
_SEGMENT = re.compile(r"[^/*?#\s]+")


def scope_problem(scope: object) -> str | None:
    """Why ``scope`` cannot be an AssignableScopes entry, or None when it can."""
    if not isinstance(scope, str):
        return f"expected a string, got {type(scope).__name__}"
    if scope == ROOT:
        return None
    if not scope.startswith("/"):
        return f"'{scope}' does not start with '/' (scopes look like /subscriptions/<id>/resourceGroups/<name>)"
    segments = scope.strip("/").split("/")
    for segment in segments:
        if segment == "":
            return f"'{scope}' has an empty segment ('//')"
        if segment in (".", ".."):
            return f"'{scope}' contains a '{segment}' segment"
        if not _SEGMENT.fullmatch(segment):
            return f"'{scope}' contains wildcards, whitespace or '?#' (AssignableScopes are literal resource ids)"
    return None


def normalize_scope(scope: str) -> str:
    """Lowercase, no trailing slash, ``/`` for the root: the form containment is computed on."""
    lowered = scope.lower().rstrip("/")
    return lowered or ROOT


def scope_contains(parent: str, child: str) -> bool:
    """Whether ``parent`` (an AssignableScopes entry) covers ``child`` (a request's scope)."""
    p = normalize_scope(parent)
    if p == ROOT:
        return True
    c = normalize_scope(child)
    return c == p or c.startswith(p + "/")


class ScopeSet:
    """AssignableScopes compiled for the per-request check."""

    __slots__ = ("scopes", "_normalized", "everywhere")

    def __init__(self, scopes: Iterable[str]) -> None:
        self.scopes: tuple[str, ...] = tuple(scopes)
        self._normalized = tuple(normalize_scope(s) for s in self.scopes)
        self.everywhere = ROOT in self._normalized

    def covers(self, scope: str) -> bool:
        if self.everywhere:
            return True
        c = normalize_scope(scope)
        for p in self._normalized:
            if c == p or c.startswith(p + "/"):
                return True
        return False

    def beneath(self, scope: str) -> tuple[str, ...]:
        """The AssignableScopes entries at or below ``scope`` (where a tool at ``scope`` could still act)."""
        s = normalize_scope(scope)
        return tuple(
            original
            for original, p in zip(self.scopes, self._normalized)
            if s == ROOT or p == s or p.startswith(s + "/")
        )
