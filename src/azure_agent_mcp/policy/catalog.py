"""The curated catalog of secret-bearing operations, kept as data (secret_operations.json).

Each entry is an RBAC pattern with a note saying how the operation leaks a secret, so that a
refusal can explain itself and a reviewer can argue with an entry rather than with code.

The entries were checked against Azure's own operation reference: ``data/reviewed/`` holds every
candidate the review found in the 20 permission files, with its verdict and reason, and
``docs/secret-operations.md`` (``python -m azure_agent_mcp.policy.catalog_report``) shows which
entry covers each one and which were judged safe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from azure_agent_mcp.policy.patterns import PatternSet, pattern_problem

CATALOG_FILE = Path(__file__).with_name("secret_operations.json")


@dataclass(frozen=True)
class SecretOperation:
    pattern: str
    why: str
    data_action: bool = False
    source: str = ""  # "curated (catalog v1)", "family: ...", or "reviewed: <permissions file>"


@lru_cache(maxsize=1)
def secret_operations() -> tuple[SecretOperation, ...]:
    data = json.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    entries = []
    for raw in data["operations"]:
        problem = pattern_problem(raw["pattern"])
        if problem is not None:  # a packaging bug, not user input: fail loudly
            raise ValueError(f"{CATALOG_FILE.name}: {problem}")
        entries.append(
            SecretOperation(raw["pattern"], raw["why"], bool(raw.get("data_action", False)), str(raw.get("source", "")))
        )
    return tuple(entries)


def secret_patterns() -> tuple[str, ...]:
    return tuple(entry.pattern for entry in secret_operations())


@lru_cache(maxsize=1)
def _compiled() -> PatternSet:
    return PatternSet(secret_patterns())


@lru_cache(maxsize=1)
def _notes() -> dict[str, str]:
    notes: dict[str, str] = {}
    for entry in secret_operations():
        notes.setdefault(entry.pattern.lower(), entry.why)
    return notes


def secret_bearing(operation: str) -> bool:
    """Whether ``operation`` (an ARM operation or DataAction) matches the secret-bearing catalog."""
    return _compiled().matches(operation)


def catalog_pattern_for(operation: str) -> str | None:
    """The catalog pattern that classifies ``operation`` as secret-bearing, if any."""
    return _compiled().first_match(operation.lower())


def why_secret(pattern: str) -> str | None:
    """The catalog note for a pattern, when the pattern is a catalog entry."""
    return _notes().get(pattern.lower())
