"""Builders for the tools' output schemas: small on purpose, because ``tools/list`` carries them all.

A schema names the fields an agent (or a client that renders results) can rely on, with their
types. Objects stay open (``additionalProperties`` is not set): the server adds ``redacted_fields``
when it withholds secrets, and Azure adds fields over time. Keep descriptions out of here; the tool's
description says what the result means.
"""

from __future__ import annotations

from typing import Any

STRING: dict[str, Any] = {"type": "string"}
NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMBER: dict[str, Any] = {"type": "number"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
ANY_OBJECT: dict[str, Any] = {"type": "object"}
TAGS: dict[str, Any] = {"type": ["object", "null"], "additionalProperties": {"type": "string"}}


def obj(required: tuple[str, ...] = (), **properties: dict[str, Any]) -> dict[str, Any]:
    """An object with these properties; ``required`` names the ones every result carries."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def listing(item: dict[str, Any], *required: str, **extra: dict[str, Any]) -> dict[str, Any]:
    """A tool result holding ``items`` (plus ``continuation`` where the listing pages)."""
    return obj(("items", *required), items=array(item), **extra)


def compact_input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The same input schema in fewer bytes, for ``tools/list``: pydantic's titles and ``default: null``
    dropped, and an optional ``anyOf [X, null]`` written as X's type widened by ``null``.

    Equivalent for validation: an absent property is still allowed (``required`` is untouched), a
    ``null`` still is; only X shapes with a single ``type`` are rewritten, anything else is kept.
    """
    schema.pop("title", None)
    for name, prop in list(schema.get("properties", {}).items()):
        schema["properties"][name] = _compact_property(prop)
    return schema


def _compact_property(prop: dict[str, Any]) -> dict[str, Any]:
    prop = {k: v for k, v in prop.items() if k != "title" and not (k == "default" and v is None)}
    options = prop.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or {"type": "null"} not in options:
        return prop
    other = next(o for o in options if o != {"type": "null"})
    if not isinstance(other, dict) or not isinstance(other.get("type"), str) or "anyOf" in other:
        return prop
    merged = {k: v for k, v in prop.items() if k != "anyOf"}
    merged.update({k: v for k, v in other.items() if k != "title"})
    merged["type"] = [other["type"], "null"]
    if "enum" in merged:
        merged["enum"] = [*merged["enum"], None]
    return merged
