"""Property tests: no rewriting of a URL turns a denied request into an allowed one.

Rewrites: case changes (host and path), percent-encoding of any characters, ``.`` and ``..``
segments, duplicate and trailing slashes, query strings and fragments. The mapper must either
refuse the rewritten request or map it to the very same operation and scope.
"""

from __future__ import annotations

import itertools
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azure_agent_mcp.policy import Effect, Endpoints, decide_request, load_policy, map_request, parse_policy
from azure_agent_mcp.policy.overlap import witness
from azure_agent_mcp.policy.patterns import PatternSet, glob_regex

AZ = Endpoints.public_cloud()
SANDBOX = Endpoints("https://127.0.0.1:8443", "https://127.0.0.1:8443/vaults/{vault}")
A = "/subscriptions/00000000-0000-0000-0000-00000000000a"
B = "/subscriptions/00000000-0000-0000-0000-00000000000b"
ACCOUNT = f"{A}/resourceGroups/rg-app/providers/Microsoft.Storage/storageAccounts/stapp"
SITE = f"{A}/resourceGroups/rg-app/providers/Microsoft.Web/sites/web-app"

FENCED = parse_policy(
    {"Name": "fenced", "Actions": ["*"], "DataActions": ["*"], "AssignableScopes": [A],
     "NotActions": ["Microsoft.Web/*"], "Deny": ["*/listKeys/action"]},
    source="fenced.json",
)
POLICIES = {
    "read-only": load_policy("read-only"),
    "no-secrets": load_policy("no-secrets"),
    "fenced": FENCED,
}

# (policy, method, origin, path) that the policy denies.
DENIED = [
    ("read-only", "POST", "https://management.azure.com", f"{ACCOUNT}/listKeys"),
    ("read-only", "PUT", "https://management.azure.com", f"{A}/resourceGroups/rg-new"),
    ("read-only", "DELETE", "https://management.azure.com", f"{A}/resourceGroups/rg-app"),
    ("read-only", "POST", "https://management.azure.com", f"{SITE}/config/appsettings/list"),
    ("read-only", "GET", "https://kv-ops.vault.azure.net", "/secrets/db-password"),
    ("no-secrets", "POST", "https://management.azure.com", f"{ACCOUNT}/listKeys"),
    ("no-secrets", "GET", "https://127.0.0.1:8443", "/vaults/kv-ops/secrets/db-password/abc"),
    ("no-secrets", "PUT", "https://management.azure.com", f"{A}/resourceGroups/rg-app/providers/Microsoft.Resources/deployments/d1"),
    ("fenced", "GET", "https://management.azure.com", f"{B}/resourceGroups/rg-app"),
    ("fenced", "GET", "https://management.azure.com", f"{A}/resourceGroups/rg-app/providers/Microsoft.Web/sites/w1"),
    ("fenced", "POST", "https://management.azure.com", f"{ACCOUNT}/listKeys"),
    ("fenced", "GET", "https://management.azure.com", "/subscriptions"),
]

_JUNK = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=6)
_QUERY = st.text(alphabet=string.ascii_letters + string.digits + "/.%=&-_", max_size=20)


def _encode(char: str, upper: bool) -> str:
    return "".join(f"%{b:02X}" if upper else f"%{b:02x}" for b in char.encode("utf-8"))


@st.composite
def rewritten(draw: st.DrawFn, origin: str, path: str) -> str:
    """The same request, spelled differently."""
    host_case = draw(st.lists(st.booleans(), min_size=len(origin), max_size=len(origin)))
    scheme, rest = origin.split("://", 1)
    offset = len(scheme) + 3
    origin = scheme + "://" + "".join(
        c.upper() if host_case[i + offset] else c for i, c in enumerate(rest)
    )
    out: list[str] = []
    for segment in path.strip("/").split("/"):
        if draw(st.booleans()):
            out.extend([draw(_JUNK), ".."])
        if draw(st.integers(0, 4)) == 0:
            out.append(".")
        chars = []
        for char in segment:
            roll = draw(st.integers(0, 5))
            if roll == 0:
                chars.append(_encode(char, draw(st.booleans())))
            elif roll == 1:
                chars.append(char.swapcase())
            else:
                chars.append(char)
        out.append("".join(chars))
        out.extend([""] * draw(st.integers(0, 2)))  # duplicate slashes
    rewritten_path = "/" + "/".join(out) + ("/" if draw(st.booleans()) else "")
    if draw(st.integers(0, 5)) == 0:  # encode a slash: must be refused, never mapped differently
        at = draw(st.integers(0, len(rewritten_path) - 1))
        if rewritten_path[at] == "/" and at > 0:
            rewritten_path = rewritten_path[:at] + "%2F" + rewritten_path[at + 1 :]
    url = origin + rewritten_path
    if draw(st.booleans()):
        url += "?" + draw(_QUERY)
    if draw(st.booleans()):
        url += "#" + draw(_QUERY)
    return url


@pytest.mark.parametrize(("policy_key", "method", "origin", "path"), DENIED)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_rewriting_turns_a_denial_into_an_allow(policy_key, method, origin, path, data):
    policy = POLICIES[policy_key]
    endpoints = SANDBOX if "127.0.0.1" in origin else AZ
    base, base_mapped = decide_request(policy, endpoints, method, origin + path)
    assert base.effect is Effect.DENY and base_mapped is not None
    url = data.draw(rewritten(origin, path))
    method_spelling = data.draw(st.sampled_from([method, method.lower(), method.title()]))
    decision, mapped = decide_request(policy, endpoints, method_spelling, url)
    assert decision.effect is Effect.DENY, (url, decision)
    if mapped is not None:  # either refused as unmappable, or the very same operation and scope
        assert mapped.operation.lower() == base_mapped.operation.lower()
        assert mapped.scope.lower() == base_mapped.scope.lower()
        assert mapped.data_action == base_mapped.data_action


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_rewritten_allowed_requests_keep_their_operation_or_are_refused(data):
    """The converse sanity check: spelling never changes what a request means, only whether it is understood."""
    path = f"{ACCOUNT}/blobServices/default/containers"
    base = map_request("GET", "https://management.azure.com" + path, AZ)
    url = data.draw(rewritten("https://management.azure.com", path))
    try:
        mapped = map_request("GET", url, AZ)
    except Exception as exc:  # refused: fine, but only with the typed error
        assert type(exc).__name__ == "UnmappableRequestError"
        return
    assert (mapped.operation.lower(), mapped.scope.lower()) == (base.operation.lower(), base.scope.lower())


# -- the language search behind tool_visibility --------------------------------------------------

_PATTERN = st.text(alphabet="ab/*", min_size=1, max_size=4)


def _matches(pattern: str, text: str) -> bool:
    return re.fullmatch(glob_regex(pattern), text) is not None


@settings(max_examples=400, deadline=None)
@given(include=st.lists(_PATTERN, min_size=1, max_size=2), exclude=st.lists(_PATTERN, max_size=2))
def test_witness_agrees_with_brute_force(include, exclude):
    found = witness(include, exclude)
    if found is not None:
        assert all(_matches(p, found) for p in include)
        assert not any(_matches(p, found) for p in exclude)
    # any string up to length 6 over the patterns' alphabet (plus one foreign character) that
    # satisfies the constraints proves a witness exists, no longer than it
    for length in range(0, 7):
        for chars in itertools.product("ab/~", repeat=length):
            text = "".join(chars)
            if all(_matches(p, text) for p in include) and not any(_matches(p, text) for p in exclude):
                assert found is not None and len(found) <= length, (include, exclude, text)
                return



_OP = st.text(alphabet="ab/.", min_size=0, max_size=8)


@settings(max_examples=400, deadline=None)
@given(patterns=st.lists(st.text(alphabet="ab/.*", min_size=1, max_size=6), min_size=1, max_size=6), op=_OP)
def test_compiled_pattern_sets_match_exactly_like_the_glob_definition(patterns, op):
    """The indexed matcher (exact dict, namespace groups, suffix index, regex) agrees with plain globbing."""
    compiled = PatternSet(patterns)
    expected = [p for p in compiled.patterns if _matches(p, op)]
    found = compiled.first_match(op)
    assert (found is not None) == bool(expected), (patterns, op, found)
    if found is not None:
        assert _matches(found, op)
