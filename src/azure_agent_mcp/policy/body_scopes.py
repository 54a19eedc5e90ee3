"""Scopes a request names in its body, for the operations whose URL does not say where they act.

A Resource Graph query is ``POST /providers/Microsoft.ResourceGraph/resources``: the URL is the
same for every query, and the subscriptions and management groups it reads are in the JSON body.
Deciding it at ``/`` would make a policy limited to one subscription unable to allow any query,
and one that can would never see which subscriptions are asked. So the guard reads the body and
decides the operation at every scope it names (``/`` when it names none, as the service then
queries every subscription the caller can see).

The body is read as strictly as the service could read it loosely: anything ambiguous (a body
that is not UTF-8 JSON, a duplicated or differently cased scope key, a scope that is not a plain
subscription GUID or management group name, a streamed body the guard cannot see) is refused
rather than guessed at.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Operations (lower-cased) whose scopes come from the body, with their body's scope keys.
BODY_SCOPED = frozenset({
    "microsoft.resourcegraph/resources/read",
    "microsoft.resourcegraph/resourceshistory/read",
})
_SCOPE_KEYS = ("subscriptions", "managementGroups")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_GROUP = re.compile(r"[A-Za-z0-9_().-]{1,90}")
MAX_SCOPES = 1000  # Resource Graph's own bound on subscriptions per request


class BodyScopeError(ValueError):
    """The body cannot be read for its scopes; the message says what is wrong with it."""


def is_body_scoped(operation: str) -> bool:
    from azure_agent_mcp.policy.devops_body_scopes import DEVOPS_BODY_SCOPED

    folded = operation.lower()
    return folded in BODY_SCOPED or folded in DEVOPS_BODY_SCOPED


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        folded = key.lower()
        if folded in seen:
            raise BodyScopeError(f"the key '{key[:40]}' appears more than once (keys compared case-insensitively)")
        seen.add(folded)
    return dict(pairs)


def _text(body: Any) -> str:
    if body is None or body == b"" or body == "":
        raise BodyScopeError("the request has no body")
    if isinstance(body, str):
        if not body.isascii():  # a str body goes on the wire latin-1 encoded: what the service reads could differ
            raise BodyScopeError("the body is text with non-ASCII characters; send it as UTF-8 bytes")
        return body
    if isinstance(body, (bytes, bytearray)):
        try:
            return bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise BodyScopeError("the body is not UTF-8") from None
    raise BodyScopeError(f"the body is a {type(body).__name__} (a stream or form), which the guard cannot read "
                         "before it is sent")


def _names(document: dict[str, Any], key: str, pattern: re.Pattern[str], what: str) -> list[str]:
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BodyScopeError(f"'{key}' must be a list of {what}s")
    bad = next((item for item in value if not pattern.fullmatch(item)), None)
    if bad is not None:
        raise BodyScopeError(f"'{bad[:60]}' in '{key}' is not a {what}")
    return value


def body_scopes(body: Any) -> tuple[str, ...]:
    """The scopes the body names: ``/subscriptions/{id}`` and management groups, or ``/`` for none."""
    text = _text(body)
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates)
    except BodyScopeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise BodyScopeError(f"the body is not JSON ({str(exc)[:80]})") from None
    if not isinstance(document, dict):
        raise BodyScopeError("the body is not a JSON object")
    for key in document:
        for expected in _SCOPE_KEYS:
            if key.lower() == expected.lower() and key != expected:
                raise BodyScopeError(f"the key '{key}' must be spelled '{expected}'")
    subscriptions = _names(document, "subscriptions", _GUID, "subscription GUID")
    groups = _names(document, "managementGroups", _GROUP, "management group name")
    scopes = [f"/subscriptions/{s.lower()}" for s in subscriptions]
    scopes += [f"/providers/Microsoft.Management/managementGroups/{g}" for g in groups]
    unique = tuple(dict.fromkeys(scopes))
    if len(unique) > MAX_SCOPES:
        raise BodyScopeError(f"the body names {len(unique)} scopes; at most {MAX_SCOPES} are decided")
    return unique or ("/",)
