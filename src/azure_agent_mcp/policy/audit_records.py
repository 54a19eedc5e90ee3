"""One audit record: what it may contain, the bytes its hash covers, and the bound on its size.

Each stored record gets ``time``, ``seq``, ``prev_hash`` and ``hash`` = SHA-256 of its canonical
JSON (sorted keys, compact separators, without ``hash``). Changing, deleting or reordering a
record breaks the chain at that point.

The record is bounded: no stored line exceeds ``RECORD_LIMIT`` bytes, so one oversized
``arm_request`` body cannot rotate the history away. Values that do not fit are kept as
``{"size": n, "sha256": "..."}`` (largest first), and ``bounded`` lists where. Then arguments
under secret-like names are redacted and every string that looks like a token or connection
string is replaced: the audit must never become the place a secret leaks to.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Any

from azure_agent_mcp.policy.redaction import redact_arguments, scrub_strings

GENESIS = "0" * 64
RECORD_LIMIT = 16 * 1024  # bytes of one stored line, newline included
CHAIN_FIELDS = ("time", "seq", "prev_hash", "hash")
# Room for the chain fields the writer adds after bounding:
# ,"hash":"<64>","prev_hash":"<64>","seq":<up to 20 digits>,"time":"2026-01-01T00:00:00.000+00:00"
_CHAIN_RESERVE = 256
_PROTECTED = frozenset({"kind", "bounded"})


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return [_jsonable(v) for v in sorted(value, key=repr)]
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return str(value)


def dumps(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, compact, UTF-8 (what lines and hashes are made of)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes the hash covers: the record without ``hash``."""
    return dumps({k: v for k, v in record.items() if k != "hash"})


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def encode_line(record: dict[str, Any]) -> bytes:
    return dumps(record) + b"\n"


def seal(body: dict[str, Any], seq: int, prev_hash: str, time: str) -> dict[str, Any]:
    """``body`` as the record after ``prev_hash``: with its chain fields and its own hash."""
    record = {**body, "time": time, "seq": seq, "prev_hash": prev_hash}
    record["hash"] = record_hash(record)
    return record


def prepare(record: dict[str, Any]) -> dict[str, Any]:
    """A caller's record made safe to store: JSON-only, chain fields dropped, bounded, secrets hidden."""
    data = json.loads(json.dumps(record, default=_jsonable))
    if not isinstance(data, dict):
        raise TypeError("an audit record must be a dict")
    for reserved in (*CHAIN_FIELDS, "bounded"):
        data.pop(reserved, None)
    # Bound first: a multi-megabyte body costs a hash, not the secret scans (slow on long strings);
    # a placeholder holds no content, and the scans below still see everything that is kept.
    data, placeholders = _bound(data)
    if "arguments" in data:
        data["arguments"] = redact_arguments(data["arguments"])
    data = scrub_strings(data)
    _restore(data, placeholders)  # a hex digest looks like a key to the scans; it is not one
    return bound(data)


KeyPath = tuple[Any, ...]


def _placeholder(value: Any) -> dict[str, Any]:
    raw = value.encode("utf-8") if isinstance(value, str) else dumps(value)
    return {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"size", "sha256"}


def _size(value: Any) -> int:
    return len(dumps(value))


def _shown(path: KeyPath) -> str:
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


_WORTH_REPLACING = 128  # smaller values cost less than their placeholder


def _options(node: Any, path: KeyPath) -> list[tuple[int, Any, Any, KeyPath]]:
    """(size, container, key, path) of each replaceable value directly under ``node``, largest first."""
    if isinstance(node, dict):
        keys: list[Any] = [k for k in node if path or k not in _PROTECTED]
    elif isinstance(node, list):
        keys = list(range(len(node)))
    else:
        return []
    found = []
    for key in keys:
        value = node[key]
        if _is_placeholder(value):
            continue
        size = _size(value)
        if size >= _WORTH_REPLACING:
            found.append((size, node, key, (*path, key)))
    found.sort(key=lambda option: option[0], reverse=True)
    return found


def _pick(data: dict[str, Any], need: int) -> tuple[Any, Any, KeyPath] | None:
    """The value to replace next: the largest, or inside it the largest part that alone frees ``need``."""
    node: Any = data
    path: KeyPath = ()
    while True:
        options = _options(node, path)
        if not options:
            return None
        size, container, key, at = options[0]
        inner = _options(container[key], at)
        if size >= need and inner and inner[0][0] >= need:
            node, path = container[key], at
            continue
        return container, key, at


def bound(data: dict[str, Any], limit: int = RECORD_LIMIT) -> dict[str, Any]:
    """``data`` with its largest values replaced by size and hash until its line fits in ``limit``.

    Descends into the largest value while one of its parts alone would free enough room, so a
    huge ``arguments.body.properties.template`` costs that value only, not all the arguments.
    """
    return _bound(data, limit)[0]


def _bound(data: dict[str, Any], limit: int = RECORD_LIMIT) -> tuple[dict[str, Any], list[tuple[KeyPath, Any]]]:
    budget = limit - _CHAIN_RESERVE
    size = _size(data)
    if size <= budget:
        return data, []
    data = json.loads(dumps(data))  # our own copy: replaced in place below
    placeholders: list[tuple[KeyPath, Any]] = []
    shown: list[str] = list(data.get("bounded") or [])
    while size > budget:
        need = size - budget + 160  # the placeholder and the ``bounded`` entry take room too
        picked = _pick(data, need)
        if picked is None:
            break
        container, key, at = picked
        container[key] = _placeholder(container[key])
        placeholders.append((at, container[key]))
        shown.append(_shown(at))
        data["bounded"] = shown
        size = _size(data)
    if size > budget:  # thousands of small fields: keep the kind, the rest as one size and hash
        rest = {k: v for k, v in data.items() if k not in _PROTECTED}
        data = {"kind": data.get("kind"), "oversized": _placeholder(rest), "bounded": ["*"]}
        placeholders = [(("oversized",), data["oversized"])]
    return data, placeholders


def _restore(data: dict[str, Any], placeholders: list[tuple[KeyPath, Any]]) -> None:
    """Put placeholders back where the secret scans mangled their digest (not where they hid the whole value)."""
    for path, placeholder in placeholders:
        node: Any = data
        try:
            for key in path[:-1]:
                node = node[key]
            if _is_placeholder(node[path[-1]]):
                node[path[-1]] = placeholder
        except (KeyError, IndexError, TypeError):
            continue
