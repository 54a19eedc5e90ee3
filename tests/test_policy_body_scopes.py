"""The guard decides a Resource Graph query at the scopes its body names, and refuses bodies it cannot read.

Unit tests of ``body_scopes`` and ``decide_request``, then the enforcement point itself against
the session sandbox: a query naming a subscription outside the policy's AssignableScopes is
refused and nothing reaches the sandbox; and, over hostile bodies (hypothesis), whatever the
guard lets through reads only the subscription the policy allows.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from azure_agent_mcp.policy import AuditLog, Effect, Endpoints, PolicyDeniedError, decide_request, parse_policy
from azure_agent_mcp.policy.body_scopes import BodyScopeError, body_scopes
from azure_agent_mcp.policy.decisions import UNREADABLE_BODY_RULE
from azure_agent_mcp.policy.enforcement import Guard
from server_helpers import audit_records

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
SUB_B = "5a1db0c5-b000-4000-a000-00000000000b"
ENDPOINTS = Endpoints.public_cloud()
URL = "https://management.azure.com/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01"
ONLY_B = parse_policy({"Name": "only-b", "Actions": ["*/read"], "AssignableScopes": [f"/subscriptions/{SUB_B}"]},
                      source="test")
EVERYWHERE = parse_policy({"Name": "everywhere", "Actions": ["*/read"], "AssignableScopes": ["/"]}, source="test")


def _body(**fields):
    return json.dumps({"query": "Resources | count", **fields}).encode()


# --- body_scopes -----------------------------------------------------------------------------------


def test_scopes_from_subscriptions_and_management_groups():
    assert body_scopes(_body(subscriptions=[SUB_A, SUB_B.upper(), SUB_A])) == (
        f"/subscriptions/{SUB_A}", f"/subscriptions/{SUB_B}")
    assert body_scopes(_body(managementGroups=["mg-platform"])) == (
        "/providers/Microsoft.Management/managementGroups/mg-platform",)
    assert body_scopes(_body()) == ("/",)
    assert body_scopes(_body(subscriptions=[], managementGroups=None)) == ("/",)
    assert body_scopes(json.dumps({"query": "x", "subscriptions": [SUB_B]})) == (f"/subscriptions/{SUB_B}",)


@pytest.mark.parametrize(("body", "problem"), [
    (None, "no body"),
    (b"", "no body"),
    (b"{not json", "not JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'["a"]', "not a JSON object"),
    (_body(subscriptions=SUB_A), "must be a list"),
    (_body(subscriptions=[SUB_A, 7]), "must be a list"),
    (_body(subscriptions=["../" + SUB_A]), "is not a subscription GUID"),
    (_body(subscriptions=[SUB_A + "/resourceGroups/x"]), "is not a subscription GUID"),
    (_body(managementGroups=["a/b"]), "is not a management group name"),
    (('{"query": "x", "subscriptions": ["%s"], "subscriptions": ["%s"]}' % (SUB_B, SUB_A)).encode(), "more than once"),
    (('{"query": "x", "subscriptions": ["%s"], "Subscriptions": ["%s"]}' % (SUB_B, SUB_A)).encode(), "more than once"),
    (('{"query": "x", "SUBSCRIPTIONS": ["%s"]}' % SUB_A).encode(), "must be spelled 'subscriptions'"),
    (('{"query": "x", "managementgroups": ["mg"]}').encode(), "must be spelled 'managementGroups'"),
    ('{"query": "é", "subscriptions": []}', "non-ASCII"),
    (__import__("io").BytesIO(b"{}"), "stream"),
    (b"[" * 100_000, "not JSON"),
])
def test_unreadable_bodies_are_named(body, problem):
    with pytest.raises(BodyScopeError) as error:
        body_scopes(body)
    assert problem in str(error.value)


# --- decide_request ----------------------------------------------------------------------------------


def test_every_scope_must_be_allowed_and_the_strictest_decision_wins():
    allowed, mapped = decide_request(ONLY_B, ENDPOINTS, "POST", URL, _body(subscriptions=[SUB_B]))
    assert allowed.effect is Effect.ALLOW and allowed.operation == "Microsoft.ResourceGraph/resources/read"
    assert allowed.scope == f"/subscriptions/{SUB_B}" and mapped.scopes == (f"/subscriptions/{SUB_B}",)
    denied, mapped = decide_request(ONLY_B, ENDPOINTS, "POST", URL, _body(subscriptions=[SUB_B, SUB_A]))
    assert denied.effect is Effect.DENY and denied.scope == f"/subscriptions/{SUB_A}"
    assert "AssignableScopes" in denied.rule and mapped.scopes == (f"/subscriptions/{SUB_B}", f"/subscriptions/{SUB_A}")
    tenant, _ = decide_request(ONLY_B, ENDPOINTS, "POST", URL, _body())
    assert tenant.effect is Effect.DENY and tenant.scope == "/"
    assert decide_request(EVERYWHERE, ENDPOINTS, "POST", URL, _body())[0].effect is Effect.ALLOW


def test_the_guards_remembered_decisions_never_answer_for_another_body(tmp_path):
    """The guard remembers decisions per (method, URL); a Resource Graph query is one URL for every
    body, so its decision must be taken on each body, never served from memory."""
    guard = Guard(ONLY_B, ENDPOINTS, audit=AuditLog(tmp_path / "audit.jsonl"))
    sequence = [[SUB_B], [SUB_A], [SUB_B], [SUB_B, SUB_A], [SUB_B]]
    effects = [guard.decide("POST", URL, _body(subscriptions=subs))[0].effect for subs in sequence]
    assert effects == [Effect.ALLOW, Effect.DENY, Effect.ALLOW, Effect.DENY, Effect.ALLOW]
    reads = iter([_body(subscriptions=[SUB_A]), b"{oops", _body(subscriptions=[SUB_B])])
    lazily = [guard.decide("POST", URL, read_body=lambda: next(reads))[0] for _ in range(3)]
    assert [d.effect for d in lazily] == [Effect.DENY, Effect.DENY, Effect.ALLOW]
    assert lazily[1].rule == UNREADABLE_BODY_RULE


def test_unreadable_body_is_refused_with_its_reason():
    decision, _ = decide_request(EVERYWHERE, ENDPOINTS, "POST", URL, b"{oops")
    assert decision.effect is Effect.DENY and decision.rule == UNREADABLE_BODY_RULE
    assert "not JSON" in decision.reason and decision.hint


def test_without_a_body_argument_the_url_decides_as_before():
    decision, mapped = decide_request(ONLY_B, ENDPOINTS, "POST", URL)
    assert (decision.effect, decision.scope, mapped.scopes) == (Effect.DENY, "/", ())
    # other requests ignore the body entirely
    get = "https://management.azure.com/subscriptions/%s/resourcegroups?api-version=2022-09-01" % SUB_B
    assert decide_request(ONLY_B, ENDPOINTS, "GET", get, b"{not json")[0].effect is Effect.ALLOW


GUIDS = st.sampled_from([SUB_A, SUB_B, SUB_A.upper(), SUB_B.upper(), " " + SUB_B, SUB_B + "/", "not-a-guid"])
KEYS = st.sampled_from(["subscriptions", "Subscriptions", "SUBSCRIPTIONS", "managementGroups", "managementgroups",
                        "query", "options", "subscription"])
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | GUIDS | st.text(max_size=8),
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=3),
                      max_leaves=8)
DOCUMENTS = st.lists(st.tuples(KEYS, VALUES), max_size=5)


def _raw(pairs):
    return ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}").encode()


def _every_reading(pairs):
    """Every subscription list a lenient reader could take from the body (any key casing, first or last duplicate).

    A ``managementGroups`` that is null or empty names no group: beside a subscription list it is no reading
    of its own (the query reads the subscriptions), so it is not counted as one."""
    found = []
    for key, value in pairs:
        if key.lower() == "managementgroups" and value in (None, []):
            continue
        if key.lower() in ("subscriptions", "managementgroups"):
            found.append((key.lower(), value))
    return found


@settings(max_examples=400, deadline=None)
@given(DOCUMENTS)
def test_hostile_bodies_are_allowed_only_when_every_reading_names_only_the_allowed_subscription(pairs):
    decision, _ = decide_request(ONLY_B, ENDPOINTS, "POST", URL, _raw(pairs))
    if decision.effect is not Effect.ALLOW:
        return
    readings = _every_reading(pairs)
    assert readings, "allowed a query that names no subscription (a tenant-wide query)"
    for key, value in readings:
        assert key == "subscriptions"
        assert isinstance(value, list) and value
        assert all(isinstance(s, str) and s.lower() == SUB_B for s in value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_random_bytes_never_raise_and_never_allow_anything_but_b(body):
    decision, _ = decide_request(ONLY_B, ENDPOINTS, "POST", URL, body)
    if decision.effect is Effect.ALLOW:
        document = json.loads(body)
        assert [s.lower() for s in document["subscriptions"]] and all(s.lower() == SUB_B for s in document["subscriptions"])


# --- the enforcement point against the sandbox -------------------------------------------------------


def _graph_client(sandbox, credential, guard):
    from azure.mgmt.resourcegraph import ResourceGraphClient

    from conftest import ARM_SCOPE

    return ResourceGraphClient(credential, base_url=sandbox.manifest["arm_endpoint"], credential_scopes=[ARM_SCOPE],
                               transport=guard.transport(connection_verify=sandbox.manifest["ca_bundle"]))


def _guard(sandbox, policy, audit_path):
    env = sandbox.environment()
    return Guard(policy, Endpoints.from_environment(env), audit=AuditLog(audit_path))


def test_a_query_outside_the_policys_scopes_never_reaches_the_sandbox(sandbox, developer_credential, tmp_path):
    from azure.mgmt.resourcegraph.models import QueryRequest

    audit = tmp_path / "audit.jsonl"
    client = _graph_client(sandbox, developer_credential, _guard(sandbox, ONLY_B, audit))
    since = sandbox.last_seq()
    with pytest.raises(PolicyDeniedError) as error:
        client.resources(QueryRequest(query="Resources | count", subscriptions=[SUB_B, SUB_A]))
    assert error.value.decision.scope == f"/subscriptions/{SUB_A}"
    with pytest.raises(PolicyDeniedError):
        client.resources(QueryRequest(query="Resources | count"))  # tenant-wide: '/' is outside the policy
    assert sandbox.requests(kind="arm", since=since) == []
    refused = audit_records(audit, kind="refused")
    assert [r["scopes"] for r in refused] == [[f"/subscriptions/{SUB_B}", f"/subscriptions/{SUB_A}"], ["/"]]
    assert all(r["operation"] == "Microsoft.ResourceGraph/resources/read" and r["status"] == "not-sent"
               for r in refused)

    answer = client.resources(QueryRequest(query="Resources | distinct subscriptionId", subscriptions=[SUB_B]))
    assert answer.data == [{"subscriptionId": SUB_B}]
    (intent,) = audit_records(audit, kind="intent")
    assert intent["scope"] == f"/subscriptions/{SUB_B}" and intent["scopes"] == [f"/subscriptions/{SUB_B}"]
    assert len(sandbox.requests(kind="arm", since=since)) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(DOCUMENTS)
@example([("subscriptions", [SUB_B])])
@example([("subscriptions", [SUB_B]), ("subscriptions", [SUB_A])])
@example([("subscriptions", [SUB_B]), ("Subscriptions", [SUB_A])])
def test_whatever_the_guard_lets_through_reads_only_the_allowed_subscription(sandbox, developer_credential,
                                                                            tmp_path_factory, pairs):
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy
    from azure.core.rest import HttpRequest

    from conftest import ARM_SCOPE

    guard = _guard(sandbox, ONLY_B, tmp_path_factory.mktemp("audit") / "audit.jsonl")
    client = PipelineClient(sandbox.manifest["arm_endpoint"],
                            policies=[BearerTokenCredentialPolicy(developer_credential, ARM_SCOPE)],
                            transport=guard.transport(connection_verify=sandbox.manifest["ca_bundle"]))
    pairs = [p for p in pairs if p[0] != "query"] + [("query", "Resources | distinct subscriptionId")]
    request = HttpRequest("POST", sandbox.manifest["arm_endpoint"] + "/providers/Microsoft.ResourceGraph/resources",
                          params={"api-version": "2022-10-01"}, content=_raw(pairs),
                          headers={"Content-Type": "application/json"})
    since = sandbox.last_seq()
    try:
        response = client.send_request(request)
    except PolicyDeniedError:
        assert sandbox.requests(kind="arm", since=since) == []
        return
    assert response.status_code == 200, response.text()
    assert {row["subscriptionId"] for row in response.json()["data"]} <= {SUB_B}
