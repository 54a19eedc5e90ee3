"""Builders for the tools' output schemas: small on purpose, because ``tools/list`` carries them all.

A schema names the fields an agent (or a client that renders results) can rely on, with their
types. Objects stay open (``additionalProperties`` is not set): the server adds ``redacted_fields``
when it withholds secrets, and Azure adds fields over time. A withheld value is the string
``***REDACTED***`` wherever it stands (``policy.redaction``), so a field that can carry a secret is
typed loosely enough to hold that string too. Keep descriptions out of here; the tool's
description says what the result means. Nested objects (a listing's items, a resource body) stay open
too: the schema names the top-level keys a result always has.

Schemas describe successful results only. An error result (``isError: true``) carries
``{"error": {"code", "message", ...}}`` (``server.results.failure``); MCP clients do not validate
error results against ``outputSchema``, so no schema mentions ``error``.

``compact_input_schema`` trims the input schemas pydantic generates (titles, ``anyOf`` with
``null`` for optional arguments) to what a client needs, for the same reason: the size of
``tools/list``.
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
STRINGS: dict[str, Any] = {"type": "array", "items": STRING}
OBJECTS: dict[str, Any] = {"type": "array", "items": ANY_OBJECT}


def obj(required: tuple[str, ...] = (), **properties: dict[str, Any]) -> dict[str, Any]:
    """An object with these properties; ``required`` names the ones every result carries."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def strings(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object whose named properties are strings."""
    return obj(required, **{name: STRING for name in names})


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


LISTING: dict[str, Any] = listing(ANY_OBJECT)
"""The shape most listings share: ``items``, each an open object. An item's fields are what Azure names
them (``name``, ``id``...) and the model reads them in the result; spelling them out again in every
``tools/list`` costs ~40 bytes a field and tells a client nothing it validates."""


# -- input schemas ---------------------------------------------------------------------------------


def compact_input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The input schema without pydantic's titles or ``additionalProperties: true``, and ``T | None = None``
    arguments as plain ``T``.

    An optional argument is one not in ``required``; saying again that it may be ``null`` (and that
    its default is ``null``) costs ~60 bytes per argument in every ``tools/list`` and tells a client
    nothing it can act on. Validation is unaffected: the server checks arguments with the
    function's own model, not with the published schema.
    """
    return _compact(schema)


def _compact(node: Any) -> Any:
    if isinstance(node, list):
        return [_compact(item) for item in node]
    if not isinstance(node, dict):
        return node
    # a title, and additionalProperties: true (JSON Schema's default for any object), say nothing a client needs
    out = {key: value for key, value in node.items() if key != "title" and not (key == "additionalProperties" and value is True)}
    variants = out.get("anyOf")
    if isinstance(variants, list) and {"type": "null"} in variants and "default" in out:
        kept = [v for v in variants if v != {"type": "null"}]
        if len(kept) == 1 and isinstance(kept[0], dict):
            out.pop("anyOf")
            if out.get("default") is None:
                out.pop("default")
            out = {**_compact(kept[0]), **out}
    if "properties" in out and isinstance(out["properties"], dict):
        out["properties"] = {name: _compact(value) for name, value in out["properties"].items()}
    for key in ("items", "additionalProperties", "anyOf", "$defs"):
        if key in out:
            value = out[key]
            out[key] = {k: _compact(v) for k, v in value.items()} if key == "$defs" else _compact(value)
    return out
