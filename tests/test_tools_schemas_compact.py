"""compact_input_schema on object-typed arguments: ``additionalProperties: true`` goes (it is JSON Schema's
default), a typed ``additionalProperties`` (tags: string values) stays, and validation does not change."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import create_model

from azure_agent_mcp.tools.schemas import LISTING, compact_input_schema

_ORIGINAL = create_model(
    "ObjectArguments",
    patch=(list[dict[str, Any]], ...),
    fields=(dict[str, Any] | None, None),
    tags=(dict[str, str] | None, None),
).model_json_schema()
_COMPACT = compact_input_schema(copy.deepcopy(_ORIGINAL))


def test_open_objects_lose_additional_properties_true_and_typed_ones_keep_theirs():
    assert '"additionalProperties": true' in json.dumps(_ORIGINAL)  # what pydantic says, so the check means something
    assert '"additionalProperties": true' not in json.dumps(_COMPACT)
    props = _COMPACT["properties"]
    assert props["patch"] == {"items": {"type": "object"}, "type": "array"}
    assert props["fields"] == {"type": "object"}  # the optional dict: the null variant and the default gone too
    assert props["tags"] == {"additionalProperties": {"type": "string"}, "type": "object"}
    assert _COMPACT["required"] == ["patch"]


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=4),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                     max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["patch", "fields", "tags", "other"]), _JSON, max_size=4))
def test_the_compact_schema_accepts_what_the_original_does_except_explicit_nulls(instance):
    original, compact = jsonschema.Draft202012Validator(_ORIGINAL), jsonschema.Draft202012Validator(_COMPACT)
    if compact.is_valid(instance):
        assert original.is_valid(instance)
    if original.is_valid(instance) and not any(v is None for v in instance.values()):
        assert compact.is_valid(instance)


def test_the_shared_listing_shape_requires_items_and_leaves_each_item_open():
    validator = jsonschema.Draft202012Validator(LISTING)
    assert validator.is_valid({"items": [{"name": "a", "anything": {"deep": [1]}}], "continuation": None})
    assert not validator.is_valid({})  # items is always there
    assert not validator.is_valid({"items": ["not an object"]})
