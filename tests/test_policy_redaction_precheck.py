"""The JSON-text pre-check in front of ``redact_secrets``'s scan: it may send a clean response to the
scan, never let a response the scan would redact skip it (adversarial, by hypothesis)."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from azure_agent_mcp.policy.redaction import REDACTED, _clearly_clean, _holds_secret, redact_secrets

# Secret field names in the spellings ARM and misbehaving proxies use, plus Unicode that lower-cases
# to ASCII (the Kelvin sign), escapes and quotes that a text check could trip over.
_KEYS = st.one_of(
    st.sampled_from(["primaryKey", "PRIMARY_KEY", "primary-key", "Password", "pass_word", "KEY1", "\u212aey1",
                     "connectionString", "value", "Value", "keyName", "kid", "id", "name", "properties", "tags",
                     "keys", "secrets", "sasToken", "a\"b", "pass\\word", "x\":\"password", "clientSecret", "ok",
                     "π", "Σpassword", "passwordΣ"]),
    st.text(min_size=0, max_size=12),
)
_STRINGS = st.one_of(
    st.sampled_from(["", "plain", "/subscriptions/x/providers/Microsoft.KeyVault/vaults/v/secrets/s",
                     "DefaultEndpointsProtocol=https;AccountKey=abc", "https://x.blob.core.windows.net/c?sv=1&sig=abc",
                     "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTYifQ.c2ln", "EYJabcdefghij.EYJabcdefghij.x",
                     "password=hunter2", "a\\\"b", "line\nbreak", "\u212a"]),
    st.text(max_size=20),
)
_LEAVES = st.one_of(_STRINGS, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False))
_DOCS = st.recursive(
    _LEAVES,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=2000, deadline=None)
@given(document=_DOCS)
def test_the_pre_check_never_clears_what_the_scan_would_redact(document):
    if _holds_secret(document, None):
        assert not _clearly_clean(document)


@settings(max_examples=500, deadline=None)
@given(document=st.dictionaries(_KEYS, _DOCS, max_size=5))
def test_redaction_answers_as_the_scan_alone_would(document):
    original = copy.deepcopy(document)
    result, paths = redact_secrets(document)
    assert document == original
    assert bool(paths) == _holds_secret(document, None)
    if not paths:
        assert result is document


def test_a_typical_listing_is_cleared_and_one_secret_anywhere_is_not():
    resources = [{"id": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st{i}",
                  "name": f"st{i}", "type": "Microsoft.Storage/storageAccounts", "location": "westeurope",
                  "sku": {"name": "Standard_LRS"}, "tags": {"env": "prod"}} for i in range(20)]
    listing = {"resources": resources, "count": 20}
    assert _clearly_clean(listing)
    assert redact_secrets(listing) == (listing, [])
    for leaked in ({"primary_key": "k"}, {"keys": [{"value": "k"}]}, {"note": "AccountKey=abc"},
                   {"token": "eyJabcdefghij.eyJabcdefghij.sig"}):
        dirty = {**listing, "resources": [*resources[:5], {**resources[5], "properties": leaked}, *resources[6:]]}
        assert not _clearly_clean(dirty)
        result, paths = redact_secrets(dirty)
        assert paths and REDACTED in repr(result)


def test_values_json_cannot_encode_go_to_the_scan():
    circular: dict = {"a": 1}
    circular["self"] = {"inner": [circular]}
    assert not _clearly_clean(circular)
    assert not _clearly_clean({("tuple", "key"): "x"})


_WITHHOLD_KEYS = st.one_of(st.sampled_from(["properties", "outputs", "parameters", "type", "value", "Properties",
                                            "proper\"ties", "x"]), st.text(max_size=8))
_WITHHOLD_DOCS = st.recursive(
    _LEAVES,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(_WITHHOLD_KEYS, children, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=1500, deadline=None)
@given(document=_WITHHOLD_DOCS)
def test_withholding_with_the_text_answers_as_the_walk_alone(document):
    from azure_agent_mcp.policy.redaction import response_text, withhold_outputs

    assert withhold_outputs(document, text=response_text(document)) == withhold_outputs(document)


def test_a_deployment_output_is_withheld_through_the_text_path():
    from azure_agent_mcp.policy.redaction import response_text, withhold_outputs

    body = {"deployments": [{"name": "d", "properties": {"outputs": {"key": {"type": "String", "value": "s3cr3t"}}}}]}
    withheld, paths = withhold_outputs(body, text=response_text(body))
    assert "s3cr3t" not in repr(withheld) and paths == ["deployments[0].properties.outputs.key.value"]
