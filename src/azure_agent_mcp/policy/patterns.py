"""RBAC operation patterns: validation and fast matching.

Azure RBAC matches ``Actions`` case-insensitively, and ``*`` stands for any run of characters,
``/`` included (``Microsoft.Storage/*`` covers ``Microsoft.Storage/storageAccounts/listKeys/action``).
A policy is matched on every outgoing request, so a list of patterns is compiled once: exact
operations go into a dict, wildcard patterns into one regular expression per resource-provider
namespace (plus one for patterns that start with a wildcard), so a lookup tries only the few
patterns that could match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# ARM operation names are built from namespaces, resource types and action names: letters,
# digits, dots, hyphens and underscores, separated by slashes.
_ALLOWED = re.compile(r"[A-Za-z0-9._\-/*]+")


def pattern_problem(pattern: object) -> str | None:
    """Why ``pattern`` is not a usable operation pattern, or None when it is."""
    if not isinstance(pattern, str):
        return f"expected a string, got {type(pattern).__name__}"
    if pattern == "":
        return "empty pattern"
    if pattern != pattern.strip():
        return f"'{pattern}' has leading or trailing whitespace"
    if not _ALLOWED.fullmatch(pattern):
        bad = sorted({c for c in pattern if not _ALLOWED.fullmatch(c)})
        shown = ", ".join(repr(c) for c in bad)
        return f"'{pattern}' contains characters outside ARM operation syntax ({shown})"
    if pattern.startswith("/") or pattern.endswith("/"):
        return f"'{pattern}' starts or ends with '/' (operations look like Microsoft.Storage/storageAccounts/read)"
    if "//" in pattern:
        return f"'{pattern}' has an empty segment ('//')"
    return None


def is_wildcard(pattern: str) -> bool:
    return "*" in pattern


def glob_regex(pattern: str) -> str:
    """The regular expression (lowercase) a pattern stands for."""
    return ".*".join(re.escape(part) for part in pattern.lower().split("*"))


def _suffix_key(pattern_lower: str) -> str | None:
    """For ``*/a/b`` or ``*/a``: ``a/b`` / ``a`` (what the operation must end with, after a '/')."""
    if not pattern_lower.startswith("*/"):
        return None
    tail = pattern_lower[2:]
    if "*" in tail or tail.count("/") > 1 or tail == "":
        return None
    return tail


def _namespace_key(pattern_lower: str) -> str | None:
    """The namespace a wildcard pattern is confined to, or None when it can match any namespace."""
    head, sep, _ = pattern_lower.partition("/")
    if not sep or "*" in head:
        return None
    return head


class PatternSet:
    """An immutable set of operation patterns compiled for matching lowercase operation strings."""

    __slots__ = ("patterns", "_exact", "_by_namespace", "_anywhere", "_suffixes")

    def __init__(self, patterns: Iterable[str]) -> None:
        unique: list[str] = []
        seen: set[str] = set()
        for pattern in patterns:
            if pattern.lower() not in seen:
                seen.add(pattern.lower())
                unique.append(pattern)
        self.patterns: tuple[str, ...] = tuple(unique)
        self._exact: dict[str, str] = {}
        # "*/listKeys/action", "*/read": a leading wildcard then whole segments; looked up by the
        # operation's last one or two segments instead of being tried one by one.
        self._suffixes: dict[str, str] = {}
        grouped: dict[str | None, list[str]] = {}
        for pattern in self.patterns:
            lowered = pattern.lower()
            key = _suffix_key(lowered)
            if key is not None:
                self._suffixes.setdefault(key, pattern)
            elif is_wildcard(pattern):
                grouped.setdefault(_namespace_key(lowered), []).append(pattern)
            else:
                self._exact[lowered] = pattern
        self._by_namespace: dict[str, tuple[re.Pattern[str], tuple[str, ...]]] = {}
        self._anywhere: tuple[re.Pattern[str], tuple[str, ...]] | None = None
        for key, members in grouped.items():
            compiled = _compile(members)
            if key is None:
                self._anywhere = compiled
            else:
                self._by_namespace[key] = compiled

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __len__(self) -> int:
        return len(self.patterns)

    def first_match(self, operation_lower: str) -> str | None:
        """The (original spelling of the) pattern that matches, or None. Input must be lowercase."""
        hit = self._exact.get(operation_lower)
        if hit is not None:
            return hit
        if self._by_namespace:
            slash = operation_lower.find("/")
            namespace = operation_lower[:slash] if slash >= 0 else operation_lower
            group = self._by_namespace.get(namespace)
            if group is not None:
                found = _search(group, operation_lower)
                if found is not None:
                    return found
        if self._suffixes:
            last = operation_lower.rfind("/")
            if last >= 0:
                hit = self._suffixes.get(operation_lower[last + 1 :])
                if hit is not None:
                    return hit
                before = operation_lower.rfind("/", 0, last)
                if before >= 0:
                    hit = self._suffixes.get(operation_lower[before + 1 :])
                    if hit is not None:
                        return hit
        if self._anywhere is not None:
            return _search(self._anywhere, operation_lower)
        return None

    def matches(self, operation: str) -> bool:
        return self.first_match(operation.lower()) is not None


def _compile(patterns: Sequence[str]) -> tuple[re.Pattern[str], tuple[str, ...]]:
    alternatives = "|".join(f"({glob_regex(p)})" for p in patterns)
    return re.compile(alternatives, re.DOTALL), tuple(patterns)


def _search(group: tuple[re.Pattern[str], tuple[str, ...]], operation_lower: str) -> str | None:
    regex, patterns = group
    match = regex.fullmatch(operation_lower)
    if match is None:
        return None
    return patterns[match.lastindex - 1]  # type: ignore[operator]
