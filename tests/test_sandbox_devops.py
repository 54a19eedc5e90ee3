"""The sandbox's Azure DevOps plane: authentication, membership, api-versions, projects, the journal,
identities, personal access tokens and the secret-bearing library resources."""

from __future__ import annotations

import json

import pytest
from conftest import ARM_SCOPE, decode_claims, httpx_client
from devops_helpers import API, DEVOPS_SCOPE, PREVIEW, DevOps, callers, service_error

STOREFRONT_ID = "5d754310-6e15-544e-95a7-5f0c83859d70"


@pytest.fixture(scope="module")
def who(sandbox, sandbox_tokens):
    return callers(sandbox, sandbox_tokens)


def test_without_a_valid_token_the_service_answers_401_with_its_bearer_challenge(sandbox, sandbox_tokens):
    manifest = sandbox.manifest
    arm_token = sandbox_tokens.user_token("developer", ARM_SCOPE)
    since = sandbox.last_seq()
    for token in (None, arm_token, "not-a-jwt"):
        response = DevOps(sandbox, token).get("_apis/projects")
        message = service_error(response, 401, "UnauthorizedRequestException", "TF400813")
        assert "anonymous access" in message
        challenges = response.headers.get_list("www-authenticate")
        assert f"Bearer authorization_uri={manifest['authority_host']}/{manifest['tenant_id']}" in challenges
        assert response.headers["x-vss-resourcetenant"] == manifest["tenant_id"]
    entries = sandbox.requests(kind="devops", since=since)
    assert [(e["status"], e["token_claims"], e["auth_failure"]) for e in entries] == [
        (401, None, "AuthenticationFailed"), (401, None, "InvalidAuthenticationTokenAudience"),
        (401, None, "InvalidAuthenticationToken")]
    assert arm_token not in json.dumps(entries)


def test_a_token_for_a_principal_outside_the_organization_gets_tf400813_naming_it(sandbox, sandbox_tokens, who):
    message = service_error(who["newcomer"].get("_apis/projects"), 401, "UnauthorizedRequestException", "TF400813")
    assert "newcomer@sandbox.onmicrosoft.com' is not authorized" in message
    app = DevOps(sandbox, sandbox_tokens.app_token(DEVOPS_SCOPE))
    message = service_error(app.get("Storefront/_apis/git/repositories"), 401, "UnauthorizedRequestException",
                            "TF400813")
    assert sandbox.manifest["service_principals"][0]["client_id"] in message


def test_projects_follow_membership_and_a_hidden_project_looks_like_a_missing_one(who):
    names = lambda caller: [p["name"] for p in who[caller].ok("GET", "_apis/projects")["value"]]  # noqa: E731
    assert names("developer") == ["Platform", "Storefront"]
    assert names("agent") == ["Storefront"]
    assert names("reader") == ["Storefront"]
    listing = who["developer"].ok("GET", "_apis/projects")
    assert listing["count"] == 2 and set(listing["value"][0]) >= {"id", "name", "url", "state", "visibility"}
    hidden = service_error(who["agent"].get("Platform/_apis/git/repositories"), 404,
                           "ProjectDoesNotExistWithNameException", "TF200016")
    missing = service_error(who["agent"].get("Nowhere/_apis/git/repositories"), 404,
                            "ProjectDoesNotExistWithNameException", "TF200016")
    assert hidden.replace("Platform", "X") == missing.replace("Nowhere", "X")
    service_error(who["agent"].get("_apis/projects/Platform"), 404, "ProjectDoesNotExistWithNameException",
                  "TF200016")
    by_id = who["agent"].ok("GET", f"_apis/projects/{STOREFRONT_ID}")
    assert by_id["name"] == "Storefront" and by_id["capabilities"]["processTemplate"]["templateName"] == "Agile"


def test_api_versions_are_checked_as_the_service_checks_them(who):
    dev = who["developer"]
    message = service_error(dev.get("_apis/projects", params={"api-version": "9.0"}), 400,
                            "VssVersionOutOfRangeException")
    assert message == ("The requested REST API version of 9.0 is out of range for this server. The latest REST API "
                       "version this server supports is 7.2.")
    service_error(dev.get("_apis/projects", params={"api-version": "seven"}), 400, "VssInvalidApiVersionException")
    message = service_error(dev.get("Storefront/_apis/wit/workItems/1/comments", params=API), 400,
                            "VssInvalidPreviewVersionException")
    assert "-preview" in message
    assert dev.ok("GET", "Storefront/_apis/wit/workItems/1/comments", params=PREVIEW)["totalCount"] == 0
    assert dev.ok("GET", "_apis/projects", params={"api-version": "7.1-preview.1"})["count"] == 2


def test_unknown_organization_and_route_answer_in_the_service_shape(sandbox, who):
    response = who["developer"].client.get(sandbox.manifest["devops_endpoint"] + "/fabrikam/_apis/projects",
                                           params=API, headers={"Authorization": f"Bearer {who['developer'].token}"})
    service_error(response, 404, "AccountNotFoundException")
    service_error(who["developer"].get("Storefront/_apis/nothing/here"), 404, "RouteNotFoundException")
    service_error(who["developer"].request("DELETE", "_apis/projects"), 404, "RouteNotFoundException")


def test_every_request_is_journaled_with_its_principal_session_operation_and_scope(sandbox, who):
    since = sandbox.last_seq()
    stats_before = sandbox.stats()["devops_requests"]
    who["agent"].ok("GET", "Storefront/_apis/git/repositories/storefront-web/refs")
    who["tagged"].ok("GET", "Storefront/_apis/wit/workitems/1")
    entries = sandbox.requests(kind="devops", since=since)
    assert len(entries) == 2 and sandbox.stats()["devops_requests"] == stats_before + 2
    agent, tagged = entries
    assert agent["token_claims"]["upn"] == sandbox.manifest["agent_identity"]["agent_user_upn"]
    assert agent["token_claims"]["oid"] == sandbox.manifest["agent_identity"]["agent_user_object_id"]
    assert agent["operation"] == "AzureDevOps/git/repositories/refs/read"
    assert (agent["organization"], agent["project"], agent["repository"]) == ("contoso", "Storefront",
                                                                              "storefront-web")
    assert tagged["token_session"] == "sess-devops-1"
    assert decode_claims(who["tagged"].token)["xms_cli_ses"] == "sess-devops-1"
    assert tagged["operation"] == "AzureDevOps/wit/workItems/read" and tagged["status"] == 200
    assert all(who[c].token not in json.dumps(entries) for c in ("agent", "tagged"))


def test_identities_search_finds_members_by_sign_in_name(sandbox, who):
    upn = "developer@sandbox.onmicrosoft.com"
    found = who["agent"].ok("GET", "_apis/identities", vssps=True,
                            params={**API, "searchFilter": "General", "filterValue": upn})
    assert found["count"] == 1
    identity = found["value"][0]
    assert identity["providerDisplayName"] == "Sandbox Developer"
    assert identity["properties"]["Account"]["$value"] == upn
    assert identity["properties"]["originId"]["$value"] == "5a1db0c5-de00-4000-a000-000000000d01"
    assert identity["id"] != identity["properties"]["originId"]["$value"]  # an Azure DevOps id, not the Entra oid
    by_id = who["agent"].ok("GET", "_apis/identities", vssps=True, params={**API, "identityIds": identity["id"]})
    assert by_id["value"][0]["id"] == identity["id"]
    nobody = who["agent"].ok("GET", "_apis/identities", vssps=True,
                             params={**API, "searchFilter": "General", "filterValue": "nobody@contoso.com"})
    assert nobody == {"count": 0, "value": []}
    service_error(who["agent"].get("_apis/identities", vssps=True, params=API), 400, "InvalidArgumentValueException")
    entry = sandbox.requests(kind="devops")[-1]
    assert entry["operation"] == "AzureDevOps/identities/read" and entry["path"].startswith("/vssps/contoso/")


def test_personal_access_tokens_are_shown_once_and_refused_to_agent_sessions(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    who = callers(sandbox, sandbox_tokens)
    preview = {"api-version": "7.1-preview.1"}
    since = sandbox.last_seq()
    created = who["developer"].ok("POST", "_apis/tokens/pats", vssps=True, params=preview,
                                  json={"displayName": "ci", "scope": "vso.code", "allOrgs": False})
    assert created["patTokenError"] == "none"
    token = created["patToken"]["token"]
    assert isinstance(token, str) and len(token) >= 40
    listed = who["developer"].ok("GET", "_apis/tokens/pats", vssps=True, params=preview)
    assert [p["displayName"] for p in listed["patTokens"]] == ["ci"]
    assert listed["patTokens"][0]["token"] is None
    assert who["agent"].ok("GET", "_apis/tokens/pats", vssps=True, params=preview)["patTokens"] == []
    message = service_error(who["tagged"].get("_apis/tokens/pats", vssps=True, params=preview), 403,
                            "AgentSessionSecretAccessDenied")
    assert "agent-session" in message
    service_error(who["tagged"].post("_apis/tokens/pats", vssps=True, params=preview,
                                     json={"displayName": "x", "scope": "vso.code"}), 403,
                  "AgentSessionSecretAccessDenied")
    service_error(who["developer"].get("_apis/tokens/pats", vssps=True), 400, "VssInvalidPreviewVersionException")
    expired = who["developer"].ok("POST", "_apis/tokens/pats", vssps=True, params=preview,
                                  json={"displayName": "old", "scope": "vso.code", "validTo": "2001-01-01T00:00:00Z"})
    assert expired == {"patToken": None, "patTokenError": "invalidExpiration"}
    captured = json.dumps(sandbox.requests(since=since)) + json.dumps(sandbox.devops_state())
    assert token not in captured
    assert sandbox.devops_state()["pats"][0]["owner"] == "developer@sandbox.onmicrosoft.com"


def test_service_connections_and_variable_groups_never_return_their_secrets(sandbox, who):
    project = sandbox.state.devops.projects["storefront"]
    secrets = [project.endpoints[0].parameters["serviceprincipalkey"],
               project.variable_groups[0].variables["PAYMENTS_API_KEY"][0]]
    since = sandbox.last_seq()
    endpoints = who["developer"].ok("GET", "Storefront/_apis/serviceendpoint/endpoints")
    endpoint = endpoints["value"][0]
    assert endpoint["name"] == "azure-prod" and endpoint["authorization"]["scheme"] == "ServicePrincipal"
    assert endpoint["authorization"]["parameters"]["serviceprincipalkey"] is None
    assert endpoint["authorization"]["parameters"]["serviceprincipalid"]
    one = who["developer"].ok("GET", f"Storefront/_apis/serviceendpoint/endpoints/{endpoint['id']}")
    groups = who["developer"].ok("GET", "Storefront/_apis/distributedtask/variablegroups")
    group = groups["value"][0]
    assert group["variables"]["PAYMENTS_API_KEY"] == {"value": None, "isSecret": True}
    assert group["variables"]["API_BASE_URL"]["value"] == "https://api.contoso.example"
    one_group = who["developer"].ok("GET", f"Storefront/_apis/distributedtask/variablegroups/{group['id']}")
    service_error(who["reader"].get("Storefront/_apis/serviceendpoint/endpoints"), 401,
                  "UnauthorizedRequestException", "TF400813")
    service_error(who["developer"].get("Storefront/_apis/distributedtask/variablegroups/999"), 404,
                  "VariableGroupNotFoundException")
    captured = json.dumps([endpoints, one, groups, one_group, sandbox.requests(since=since),
                           sandbox.devops_state()])
    assert all(secret not in captured for secret in secrets)
    ops = [e["operation"] for e in sandbox.requests(kind="devops", since=since)]
    assert ops[:2] == ["AzureDevOps/serviceendpoint/endpoints/read"] * 2


def test_faults_answer_devops_requests_in_the_service_shape(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    sandbox.add_fault(r"^/devops/contoso/_apis/projects$", status=503, count=1)
    client = DevOps(sandbox, sandbox_tokens.user_token("developer", DEVOPS_SCOPE))
    service_error(client.get("_apis/projects"), 503, "VssServiceResponseException")
    assert client.ok("GET", "_apis/projects")["count"] == 2
    assert [e["status"] for e in sandbox.requests(kind="devops")] == [503, 200]


def test_the_admin_api_lists_the_organization(sandbox):
    state = httpx_client(sandbox.manifest).get(sandbox.manifest["admin"] + "/devops/state").json()
    assert state["organization"] == "contoso"
    members = {m["upn"]: m for m in state["members"]}
    assert members["reader@sandbox.onmicrosoft.com"]["access_level"] == "stakeholder"
    assert list(members["agent-orders@sandbox.onmicrosoft.com"]["projects"]) == ["storefront"]
    assert {p["name"] for p in state["projects"]} == {"Storefront", "Platform"}
    assert {w["project"] for w in state["work_items"]} == {"Storefront", "Platform"}


def test_a_claims_challenge_answers_401_insufficient_claims_until_the_token_has_them(fresh_sandbox_state,
                                                                                     sandbox_tokens):
    sandbox = fresh_sandbox_state
    claims = {"access_token": {"acrs": {"essential": True, "value": "c1"}}}
    sandbox.add_claims_challenge(r"^/devops/contoso/Storefront/", claims)
    plain = DevOps(sandbox, sandbox_tokens.user_token("developer", DEVOPS_SCOPE))
    response = plain.get("Storefront/_apis/git/repositories")
    service_error(response, 401, "UnauthorizedRequestException", "TF400813")
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_claims"' in challenge and "claims=" in challenge
    assert plain.ok("GET", "_apis/projects")["count"] == 2  # other paths are not challenged
    stepped_up = DevOps(sandbox, sandbox_tokens.user_token("developer", DEVOPS_SCOPE, claims=claims))
    assert stepped_up.ok("GET", "Storefront/_apis/git/repositories")["count"] == 1
