"""Azure's own operation names: the published lists the mapper's output is checked against.

``data/operations/<Namespace>.json`` are complete snapshots of Azure's RBAC operation reference
(MicrosoftDocs/azure-docs, ``articles/role-based-access-control/permissions/*.md``; each file
records its source commit) for the namespaces the tools and the sandbox serve. An operation of
one of those namespaces that the list does not name is *unknown*: a typo, or a path built to make
an action look like a read. The audit marks it, and the read-only policies refuse it.

``data/post_reads.json`` holds the exceptions to ARM's "POST is an action" rule: requests that
Azure RBAC checks as reads (a Resource Graph query, a Log Analytics query), each with its source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).with_name("data")
OPERATIONS_DIR = DATA_DIR / "operations"
POST_READS_FILE = DATA_DIR / "post_reads.json"


@dataclass(frozen=True)
class NamespaceOperations:
    namespace: str
    source: dict[str, Any]
    actions: frozenset[str]  # lower case
    data_actions: frozenset[str]  # lower case

    def knows(self, operation: str, data_action: bool) -> bool:
        return operation.lower() in (self.data_actions if data_action else self.actions)


@lru_cache(maxsize=1)
def shipped_namespaces() -> dict[str, NamespaceOperations]:
    """Every shipped namespace list, keyed by the namespace in lower case."""
    lists: dict[str, NamespaceOperations] = {}
    for file in sorted(OPERATIONS_DIR.glob("*.json")):
        data = json.loads(file.read_text(encoding="utf-8"))
        rows = data["operations"]
        lists[data["namespace"].lower()] = NamespaceOperations(
            namespace=data["namespace"],
            source=data["source"],
            actions=frozenset(r["operation"].lower() for r in rows if not r.get("data_action")),
            data_actions=frozenset(r["operation"].lower() for r in rows if r.get("data_action")),
        )
    return lists


def namespace_of(operation: str) -> str:
    return operation.split("/", 1)[0]


def is_known_operation(operation: str, data_action: bool) -> bool:
    """False only when the operation's namespace is shipped and its list does not name it."""
    listed = shipped_namespaces().get(namespace_of(operation).lower())
    return listed is None or listed.knows(operation, data_action)


@dataclass(frozen=True)
class PostRead:
    action: str  # what ARM's rule alone would make of the POST
    operation: str  # what Azure RBAC checks instead
    source: str


@lru_cache(maxsize=1)
def post_reads() -> dict[str, PostRead]:
    data = json.loads(POST_READS_FILE.read_text(encoding="utf-8"))
    entries = (PostRead(e["action"], e["operation"], e["source"]) for e in data["exceptions"])
    return {entry.action.lower(): entry for entry in entries}


def post_read(action: str) -> str | None:
    """The read that RBAC checks for a POST that ARM's rule alone would call ``action``, if any."""
    entry = post_reads().get(action.lower())
    return entry.operation if entry is not None else None
