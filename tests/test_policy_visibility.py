"""tool_visibility(): the best decision any call of a tool could get (DENY hides the tool)."""

from __future__ import annotations

import pytest

from azure_agent_mcp.policy import Effect, load_policy, narrow_read_only, parse_policy, tool_visibility

A, D, C = Effect.ALLOW, Effect.DENY, Effect.CONFIRM
LIST_KEYS = ("Microsoft.Storage/storageAccounts/listKeys/action", False)
GET_SECRET = ("Microsoft.KeyVault/vaults/secrets/getSecret/action", True)
READ_METADATA = ("Microsoft.KeyVault/vaults/secrets/readMetadata/action", True)


def _policy(**data):
    return parse_policy({"Name": "t", **data}, source="t.json")


@pytest.mark.parametrize(("profile", "operations", "effect"), [
    ("read-only", [("*/read", False)], A),
    ("read-only", [("*/delete", False)], D),
    ("read-only", [("*/write", False)], D),
    ("read-only", [LIST_KEYS], D),
    ("read-only", [GET_SECRET], D),
    ("read-only", [READ_METADATA], A),
    ("read-only", [("Microsoft.Resources/subscriptions/resourceGroups/write", False)], D),
    ("read-only", [("Microsoft.Resources/subscriptions/resources/read", False),
                   ("Microsoft.Resources/subscriptions/resourceGroups/resources/read", False)], A),
    ("no-secrets", [("*/delete", False)], C),
    ("no-secrets", [("*/write", False)], A),
    ("no-secrets", [LIST_KEYS], D),
    ("no-secrets", [GET_SECRET], D),
    ("no-secrets", [("*/listKeys/action", False)], D),
    ("no-secrets", [("*/action", False)], A),
    ("unrestricted", [LIST_KEYS], C),
    ("unrestricted", [("*/delete", False)], C),
    ("unrestricted", [GET_SECRET], C),
    ("unrestricted", [("*/listKeys/action", False)], C),
    ("unrestricted", [("*/action", False)], A),
])
def test_profiles(profile, operations, effect):
    assert tool_visibility(load_policy(profile), operations).effect is effect


def test_the_best_of_several_operations_wins():
    policy = load_policy("no-secrets")
    decision = tool_visibility(policy, [LIST_KEYS, ("*/delete", False), ("*/read", False)])
    assert decision.effect is A and decision.operation == "*/read"
    decision = tool_visibility(policy, [LIST_KEYS, ("*/delete", False)])
    assert decision.effect is C and decision.rule == "Confirm: */delete"


def test_patterns_respect_not_actions_and_deny():
    storage_only = _policy(Actions=["Microsoft.Storage/*"], NotActions=["Microsoft.Storage/*/delete"])
    assert tool_visibility(storage_only, [("*/storageAccounts/delete", False)]).effect is D
    # "Microsoft.Storage/delete" matches Microsoft.Storage/* but not Microsoft.Storage/*/delete
    assert tool_visibility(storage_only, [("*/delete", False)]).effect is A
    assert tool_visibility(storage_only, [("*/read", False)]).effect is A
    assert tool_visibility(storage_only, [("Microsoft.Compute/*", False)]).effect is D
    everything_denied = _policy(Actions=["*"], Deny=["*"])
    assert tool_visibility(everything_denied, [("*/read", False)]).effect is D
    compute_reads = _policy(Actions=["Microsoft.Compute/*/read"])
    assert tool_visibility(compute_reads, [("*/read", False)]).effect is A
    assert tool_visibility(compute_reads, [("Microsoft.Storage/*/read", False)]).effect is D
    # a union of NotActions can cover a pattern that no single NotActions pattern covers
    split = _policy(Actions=["Microsoft.Web/sites/*"], NotActions=["Microsoft.Web/sites/*/read", "Microsoft.Web/sites/*/write"])
    assert tool_visibility(split, [("Microsoft.Web/sites/*/read", False)]).effect is D
    assert tool_visibility(split, [("Microsoft.Web/sites/*", False)]).effect is A


def test_read_only_narrowing():
    narrowed = narrow_read_only(load_policy("unrestricted"))
    assert tool_visibility(narrowed, [("*/delete", False)]).effect is D
    assert tool_visibility(narrowed, [("*/read", False)]).effect is A
    assert tool_visibility(narrowed, [LIST_KEYS]).effect is D
    assert tool_visibility(narrowed, [READ_METADATA]).effect is A


def test_assignable_scopes_below_the_tool_scope_count():
    fenced = _policy(Actions=["*/read"], AssignableScopes=["/subscriptions/abc"])
    decision = tool_visibility(fenced, [("*/read", False)])
    assert decision.effect is A and decision.scope == "/subscriptions/abc"
    assert tool_visibility(fenced, [("*/read", False)], scope="/subscriptions/abc/resourceGroups/x").effect is A
    outside = tool_visibility(fenced, [("*/read", False)], scope="/subscriptions/other")
    assert outside.effect is D and outside.rule.startswith("outside AssignableScopes")


def test_a_tool_without_operations_is_visible():
    assert tool_visibility(load_policy("read-only"), []).effect is A
