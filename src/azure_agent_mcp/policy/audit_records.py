"""One audit record: what it may contain, the bytes its hash covers, and the bound on its size.

Each stored record gets ``time``, ``seq``, ``prev_hash`` and ``hash`` = SHA-256 of its canonical
JSON (sorted keys, compact separators, without ``hash``). Changing, deleting or reordering a
record breaks the chain at that point.

The record is bounded: no stored line exceeds ``RECORD_LIMIT`` bytes, so one oversized
``arm_request`` body cannot rotate the history away. Values that do not fit are kept as
``{"digest": "sha256", "size": n, "sha256": "..."}`` (largest first; the shape of
``redaction.digest_value``), and ``bounded`` lists where. Then arguments
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

from azure_agent_mcp.policy.redaction import SECRET_VALUE, is_digest, redact_arguments, scrub_strings

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


def seal(body: dict[str, Any], seq: int, prev_hash: str, time: str) -> tuple[dict[str, Any], bytes]:
    """``body`` as the record after ``prev_hash``, with its own hash, and its line.

    One serialisation serves both: the line is the canonical bytes with ``hash`` appended as the
    last key (readers parse JSON, and ``record_hash`` recomputes the canonical form itself).
    """
    record = {**body, "time": time, "seq": seq, "prev_hash": prev_hash}
    covered = dumps(record)
    record["hash"] = digest = hashlib.sha256(covered).hexdigest()
    return record, covered[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}\n'


def prepare(record: dict[str, Any]) -> dict[str, Any]:
    """A caller's record made safe to store: JSON-only, chain fields dropped, bounded, secrets hidden."""
    text = json.dumps(record, default=_jsonable)
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError("an audit record must be a dict")
    for reserved in (*CHAIN_FIELDS, "bounded"):
        data.pop(reserved, None)
    # Bound first: a multi-megabyte body costs a hash, not the secret scans (slow on long strings);
    # a digest holds no content, and the scans below still see everything that is kept.
    if len(text) > RECORD_LIMIT - _CHAIN_RESERVE:
        data = bound(data)
    if "arguments" in data:
        data["arguments"] = redact_arguments(data["arguments"])
    if _may_hold_secret_strings(text):
        data = scrub_strings(data)
    return data


def _may_hold_secret_strings(text: str) -> bool:
    """Whether ``scrub_strings`` could change anything, decided with one search of the JSON text.

    Without a backslash the JSON text holds every string verbatim between quotes and separators
    that are neither word characters nor part of a secret pattern, so a pattern that matches in a
    string matches in the text too (a match spanning strings only costs the full scan). With
    escapes (``\\n`` before a word...) that no longer holds: scan string by string.
    """
    if "\\" in text:
        return True
    # Every alternative of SECRET_VALUE needs a literal "=" (key=value, sig=) or "eyJ" (a JWT,
    # any case under (?i)); most records have neither, and the regex costs ~40 ns a character.
    if "=" not in text and "eyj" not in text.lower():
        return False
    return SECRET_VALUE.search(text) is not None


KeyPath = tuple[Any, ...]


def _placeholder(value: Any) -> dict[str, Any]:
    """The digest kept instead of a value (the same shape as ``redaction.digest_value``, so scans skip it)."""
    raw = value.encode("utf-8") if isinstance(value, str) else dumps(value)
    return {"digest": "sha256", "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


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
        if is_digest(value):
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
    budget = limit - _CHAIN_RESERVE
    size = _size(data)
    if size <= budget:
        return data
    data = json.loads(dumps(data))  # our own copy: replaced in place below
    shown: list[str] = list(data.get("bounded") or [])
    while size > budget:
        need = size - budget + 160  # the placeholder and the ``bounded`` entry take room too
        picked = _pick(data, need)
        if picked is None:
            break
        container, key, at = picked
        container[key] = _placeholder(container[key])
        shown.append(_shown(at))
        data["bounded"] = shown
        size = _size(data)
    if size > budget:  # thousands of small fields: keep the kind, the rest as one size and hash
        rest = {k: v for k, v in data.items() if k not in _PROTECTED}
        data = {"kind": data.get("kind"), "oversized": _placeholder(rest), "bounded": ["*"]}
    return data
