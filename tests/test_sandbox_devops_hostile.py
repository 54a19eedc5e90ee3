"""Hostile input to the sandbox's Azure DevOps: whatever arrives, the service answers in its own shape, never
500, and a refused write changes nothing."""

from __future__ import annotations

import json
from urllib.parse import quote

from devops_helpers import DEVOPS_SCOPE, DevOps, agent_user_token
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
REPO = "Storefront/_apis/git/repositories/storefront-web"
WORDS = ["_apis", "git", "repositories", "storefront-web", "pullrequests", "threads", "comments", "wit",
         "workitems", "$Bug", "wiql", "projects", "Storefront", "Platform", "items", "pushes", "refs", "1", "0",
         "-1", "..", "%2F", "$", "", "99999999999999999999", "serviceendpoint", "endpoints", "identities", "tokens",
         "pats", "reviewers", "workitemsbatch", "distributedtask", "variablegroups",
         "²", "١٢٣", "$²"]
segment = st.one_of(st.sampled_from(WORDS), st.text(min_size=0, max_size=12))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)


def _assert_service_shape(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("typeKey"), str) and isinstance(body.get("message"), str), body


@SETTINGS
@given(method=st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"]),
       host=st.sampled_from(["devops", "vssps"]), segments=st.lists(segment, max_size=9),
       params=st.dictionaries(st.sampled_from(["api-version", "ids", "path", "$top", "filter", "fields", "$expand",
                                               "searchFilter", "filterValue", "recursionLevel",
                                               "versionDescriptor.version", "versionDescriptor.versionType",
                                               "searchCriteria.status", "identityIds", "errorPolicy"]),
                              st.text(max_size=20), max_size=4),
       body=st.one_of(st.none(), json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64),
                      st.sampled_from([b'{"query": NaN}', b'[{"op": "add", "path": "/fields/System.Title", "value": '
                                       b'1e400}]', b'{"ids": [1e400], "fields": Infinity}', rb'{"ids": ["\u00b2"]}'])),
       content_type=st.sampled_from(["application/json", "application/json-patch+json", "text/plain"]))
def test_any_request_gets_an_answer_in_the_service_shape(sandbox, sandbox_tokens, method, host, segments, params,
                                                         body, content_type):
    token = _developer_token(sandbox_tokens)
    client = DevOps(sandbox, token)
    base = sandbox.manifest["devops_vssps_endpoint" if host == "vssps" else "devops_endpoint"]
    url = f"{base}/contoso/" + "/".join(quote(s, safe="$") for s in segments)
    response = client.client.request(method, url, params=params, content=body,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    if method != "HEAD":
        _assert_service_shape(response)
    else:
        assert response.status_code < 500


_TOKENS: dict[str, str] = {}


def _developer_token(tokens) -> str:
    if "developer" not in _TOKENS:
        _TOKENS["developer"] = tokens.user_token("developer", DEVOPS_SCOPE)
    return _TOKENS["developer"]


wiql_words = st.sampled_from(["SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "DESC", "ASC", "IN",
                              "CONTAINS", "WORDS", "UNDER", "EVER", "WorkItems", "WorkItemLinks", "[System.Id]",
                              "[System.Title]", "[System.State]", "[System.CreatedBy]", "[Nope]", "@Me",
                              "@project", "@Today", "@Other", "=", "<>", "<", ">=", "(", ")", ",", "'New'", "'",
                              "1", "-1", "2.5", "*", "-", "+", "[", "]", "\"x\"", "99999999999999999999999"])


@SETTINGS
@given(words=st.lists(st.one_of(wiql_words, st.text(max_size=6)), max_size=25))
def test_any_wiql_is_answered_200_or_400(sandbox, sandbox_tokens, words):
    client = DevOps(sandbox, _developer_token(sandbox_tokens))
    response = client.post("Storefront/_apis/wit/wiql", json={"query": " ".join(words)})
    _assert_service_shape(response)
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert response.json()["message"].startswith(("TF51006", "TF51005", "VS402337"))


patch_op = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "replace", "remove", "test", "move", "copy", "x"]),
     "path": st.one_of(st.sampled_from(["/fields/System.Title", "/fields/System.State", "/fields/System.AssignedTo",
                                         "/fields/System.CreatedBy", "/fields/Microsoft.VSTS.Common.Priority",
                                         "/fields/System.AreaPath", "/fields/System.History", "/rev", "/id",
                                         "/relations/-", "/relations/0", "/fields/", "/"]), st.text(max_size=15))},
    optional={"value": json_values, "from": st.text(max_size=10)})


@SETTINGS
@given(document=st.one_of(st.lists(patch_op, max_size=6), json_values))
def test_a_refused_patch_changes_nothing(fresh_sandbox_state, sandbox_tokens, document):
    sandbox = fresh_sandbox_state
    client = DevOps(sandbox, _developer_token(sandbox_tokens))
    before = client.ok("GET", "Storefront/_apis/wit/workitems/2", params={"api-version": "7.1", "$expand": "all"})
    response = client.request("PATCH", "Storefront/_apis/wit/workitems/2", patch=document)
    _assert_service_shape(response)
    after = client.ok("GET", "Storefront/_apis/wit/workitems/2", params={"api-version": "7.1", "$expand": "all"})
    if response.status_code != 200:
        assert after == before
    else:
        assert after["rev"] == before["rev"] + 1


change = st.fixed_dictionaries(
    {"changeType": st.sampled_from(["add", "edit", "delete", "rename", 1, 2, 16, None]),
     "item": st.one_of(st.fixed_dictionaries({"path": st.one_of(
         st.sampled_from(["/README.md", "/src/auth/session.py", "/new.txt", "/src", "/src/auth/session.py/x", "/",
                          "//a", "/a/../b"]), st.text(max_size=12))}), json_values)},
    optional={"newContent": st.one_of(st.fixed_dictionaries({"content": st.text(max_size=20), "contentType":
                                                             st.sampled_from(["rawtext", "base64encoded", "x", 1])}),
                                      json_values)})


@SETTINGS
@given(name=st.one_of(st.sampled_from(["refs/heads/main", "refs/heads/h", "refs/heads/a b", "refs/tags/v1",
                                       "refs/heads/x..y", "main"]), st.text(max_size=12)),
       old=st.sampled_from(["tip", "zero", "bogus", "short"]),
       commits=st.lists(st.fixed_dictionaries({"comment": st.one_of(st.just("c"), json_values),
                                               "changes": st.lists(change, max_size=3)}), max_size=3))
def test_a_refused_push_moves_no_ref_and_keeps_no_object(fresh_sandbox_state, sandbox_tokens, name, old, commits):
    sandbox = fresh_sandbox_state
    client = DevOps(sandbox, _developer_token(sandbox_tokens))
    repo = sandbox.state.devops.projects["storefront"].repos["storefront-web"]
    tip = repo.refs["refs/heads/main"]
    refs, objects = dict(repo.refs), (len(repo.objects.blobs), len(repo.objects.trees), len(repo.objects.commits))
    old_id = {"tip": tip, "zero": "0" * 40, "bogus": "f" * 40, "short": "abc"}[old]
    response = client.post(f"{REPO}/pushes", json={"refUpdates": [{"name": name, "oldObjectId": old_id}],
                                                   "commits": commits})
    _assert_service_shape(response)
    if response.status_code != 201:
        assert repo.refs == refs
        assert (len(repo.objects.blobs), len(repo.objects.trees), len(repo.objects.commits)) == objects
    else:
        assert repo.refs[name] == response.json()["commits"][-1]["commitId"]


def test_hostile_requests_never_reached_a_500(sandbox):
    assert all(e["status"] != 500 for e in sandbox.requests(kind="devops"))


def test_agent_user_token_helper_works(sandbox):
    assert DevOps(sandbox, agent_user_token(sandbox.manifest)).ok("GET", "_apis/projects")["count"] == 1


def test_numbers_the_service_cannot_hold_are_refused_not_crashed(fresh_sandbox_state, sandbox_tokens):
    client = DevOps(fresh_sandbox_state, _developer_token(sandbox_tokens))
    for path in ("Storefront/_apis/wit/workitems/²", "Storefront/_apis/wit/workitems/١٢٣"):
        assert client.get(path).status_code == 400
    assert client.get("Storefront/_apis/wit/workitems", params={"api-version": "7.1", "ids": "1,²"}).status_code == 400
    assert client.get("_apis/projects", params={"api-version": "٧.١"}).status_code == 400
    for value in ("1e400", "NaN", "Infinity", "1" * 5000):
        response = client.request("PATCH", "Storefront/_apis/wit/workitems/2", headers={
            "Content-Type": "application/json-patch+json"}, content=(
            '[{"op": "add", "path": "/fields/Microsoft.VSTS.Scheduling.StoryPoints", "value": %s}]' % value).encode())
        assert response.status_code == 400, (value, response.text)
    assert client.ok("GET", "Storefront/_apis/wit/workitems/2")["rev"] == 1
    deep = b"[" * 100_000 + b"]" * 100_000
    response = client.post("Storefront/_apis/wit/wiql", content=deep, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["typeKey"] == "VssPropertyValidationException"
