"""Azure DevOps in the policy's endpoint table: the vocabulary, the scopes, what is refused and why.

Endpoints come from the sandbox's manifest (``{origin}/devops``, ``{origin}/vssps``, organization
``contoso``) and from the public cloud (``https://dev.azure.com``, ``https://vssps.dev.azure.com``).
The hostile-path properties check the mapper against an independent reading of the URL (decode
each segment once, as the service does): whatever the mapper does not refuse, it decides as what
the route means.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azure_agent_mcp.policy import decide_request, load_policy, parse_policy
from azure_agent_mcp.policy.catalog import secret_bearing
from azure_agent_mcp.policy.devops_mapping import PLACEHOLDERS, devops_routes, looks_like_guid, routes_table
from azure_agent_mcp.policy.errors import UnmappableRequestError
from azure_agent_mcp.policy.operations import Endpoints, devops_organization_in, map_request

ORG = "contoso"
PUBLIC = Endpoints.public_cloud(ORG)
PUBLIC_DEVOPS = "https://dev.azure.com/contoso"
PUBLIC_VSSPS = "https://vssps.dev.azure.com/contoso"
ORG_SCOPE = "/organizations/contoso"
STOREFRONT = ORG_SCOPE + "/projects/Storefront"
WEB = STOREFRONT + "/repositories/storefront-web"
REPO = "Storefront/_apis/git/repositories/storefront-web"
GUID = "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c"
README = Path(__file__).resolve().parents[1] / "README.md"
READ_ONLY = load_policy("read-only")
NO_SECRETS = load_policy("no-secrets")
UNRESTRICTED = load_policy("unrestricted")
STOREFRONT_FENCE = parse_policy(
    {"Name": "storefront-agent", "Actions": ["AzureDevOps/*"], "AssignableScopes": [STOREFRONT]}, source="test"
)
REPO_FENCE = parse_policy(
    {"Name": "web-agent", "Actions": ["AzureDevOps/*"], "AssignableScopes": [WEB]}, source="test"
)


@pytest.fixture(scope="module")
def sandbox_endpoints(sandbox) -> tuple[Endpoints, str, str]:
    env = sandbox.environment()
    organization = sandbox.manifest["devops_organization"]
    endpoints = Endpoints.from_environment(env, devops_organization=organization)
    return endpoints, f"{env.devops_endpoint}/{organization}", f"{env.devops_vssps_endpoint}/{organization}"


# The contract's table (/work/briefs/ado_contract.md): what the tools send, what the policy decides on.
CONTRACT = [
    ("devops", "GET", "_apis/projects", "AzureDevOps/core/projects/read", ORG_SCOPE),
    ("devops", "GET", "Storefront/_apis/git/repositories", "AzureDevOps/git/repositories/read", STOREFRONT),
    ("devops", "GET", f"{REPO}/refs?filter=heads/", "AzureDevOps/git/repositories/refs/read", WEB),
    ("devops", "POST", f"{REPO}/pushes", "AzureDevOps/git/repositories/pushes/write", WEB),
    ("devops", "GET", f"{REPO}/items?path=/src/auth/session.py", "AzureDevOps/git/repositories/items/read", WEB),
    ("devops", "POST", f"{REPO}/pullrequests", "AzureDevOps/git/repositories/pullRequests/write", WEB),
    ("devops", "GET", f"{REPO}/pullrequests/7", "AzureDevOps/git/repositories/pullRequests/read", WEB),
    ("devops", "GET", f"{REPO}/pullRequests/7/threads", "AzureDevOps/git/repositories/pullRequests/threads/read", WEB),
    ("devops", "POST", f"{REPO}/pullRequests/7/threads/3/comments",
     "AzureDevOps/git/repositories/pullRequests/threads/comments/write", WEB),
    ("devops", "POST", f"{REPO}/pullRequests/7/threads", "AzureDevOps/git/repositories/pullRequests/threads/write", WEB),
    # work items addressed by id: organization-wide ids, decided at the organization (see the test below)
    ("devops", "GET", "Storefront/_apis/wit/workitems/12", "AzureDevOps/wit/workItems/read", ORG_SCOPE),
    ("devops", "GET", "Storefront/_apis/wit/workitems?ids=12,13", "AzureDevOps/wit/workItems/read", ORG_SCOPE),
    ("devops", "POST", "Storefront/_apis/wit/wiql", "AzureDevOps/wit/wiql/read", STOREFRONT),
    ("devops", "POST", "Storefront/_apis/wit/workitems/$Bug", "AzureDevOps/wit/workItems/write", STOREFRONT),
    ("devops", "PATCH", "Storefront/_apis/wit/workitems/12", "AzureDevOps/wit/workItems/write", ORG_SCOPE),
    ("devops", "POST", "Storefront/_apis/wit/workItems/12/comments", "AzureDevOps/wit/workItems/comments/write",
     ORG_SCOPE),
    ("vssps", "GET", "_apis/identities?searchFilter=General&filterValue=dev@contoso.example",
     "AzureDevOps/identities/read", ORG_SCOPE),
    ("vssps", "GET", "_apis/tokens/pats", "AzureDevOps/tokens/pats/read", ORG_SCOPE),
    ("vssps", "POST", "_apis/tokens/pats", "AzureDevOps/tokens/pats/write", ORG_SCOPE),
]


def _public(host: str, rest: str) -> str:
    return f"{PUBLIC_VSSPS if host == 'vssps' else PUBLIC_DEVOPS}/{rest}"


@pytest.mark.parametrize("host, method, rest, operation, scope", CONTRACT)
def test_the_contract_table_maps_as_written_on_the_public_cloud(host, method, rest, operation, scope):
    mapped = map_request(method, _public(host, rest) + ("&" if "?" in rest else "?") + "api-version=7.1", PUBLIC)
    assert (mapped.operation, mapped.scope, mapped.plane, mapped.data_action) == (operation, scope, "devops", False)
    assert mapped.unknown_operation is False
    assert mapped.path == "/contoso/" + rest.split("?", 1)[0]


@pytest.mark.parametrize("host, method, rest, operation, scope", CONTRACT)
def test_the_contract_table_maps_as_written_in_the_sandbox(sandbox_endpoints, host, method, rest, operation, scope):
    endpoints, devops, vssps = sandbox_endpoints
    mapped = map_request(method, f"{vssps if host == 'vssps' else devops}/{rest}", endpoints)
    assert (mapped.operation, mapped.scope, mapped.plane) == (operation, scope, "devops")


def test_routes_match_in_any_case_and_decide_on_the_documented_names():
    mapped = map_request("GET", PUBLIC_DEVOPS.replace("contoso", "CONTOSO")
                         + "/storefront/_APIS/GIT/Repositories/Storefront-Web/PULLREQUESTS/7/Threads", PUBLIC)
    assert mapped.operation == "AzureDevOps/git/repositories/pullRequests/threads/read"
    # the organization as configured; project and repository as written (AssignableScopes compare case-insensitively)
    assert mapped.scope == "/organizations/contoso/projects/storefront/repositories/Storefront-Web"
    decision, _ = decide_request(STOREFRONT_FENCE, PUBLIC, "GET", PUBLIC_DEVOPS + "/STOREFRONT/_APIS/git/Repositories")
    assert decision.effect.value == "allow"


def test_names_are_scoped_in_their_canonical_escaped_form():
    a = map_request("GET", PUBLIC_DEVOPS + "/My%20Project/_apis/git/repositories/web%21app", PUBLIC)
    b = map_request("GET", PUBLIC_DEVOPS + "/My%20Project/_apis/git/repositories/web!app", PUBLIC)
    assert a.scope == b.scope == "/organizations/contoso/projects/My%20Project/repositories/web!app"


@pytest.mark.parametrize("segment", ["$Bug", "%24Bug", "$User%20Story", "%24User%20Story"])
def test_a_dollar_work_item_type_is_a_create_and_never_reaches_the_operation(segment):
    mapped = map_request("POST", f"{PUBLIC_DEVOPS}/Storefront/_apis/wit/workitems/{segment}", PUBLIC)
    assert (mapped.operation, mapped.scope) == ("AzureDevOps/wit/workItems/write", STOREFRONT)
    template = map_request("GET", f"{PUBLIC_DEVOPS}/Storefront/_apis/wit/workitems/{segment}", PUBLIC)
    assert template.operation == "AzureDevOps/wit/workItems/read"


@pytest.mark.parametrize("segment", ["$", "%24", "$Bug$", "Bug", "12a", "-1", "1.0", "12345678901"])
def test_a_work_item_segment_is_a_number_or_a_dollar_type(segment):
    with pytest.raises(UnmappableRequestError):
        map_request("POST", f"{PUBLIC_DEVOPS}/Storefront/_apis/wit/workitems/{segment}", PUBLIC)


@pytest.mark.parametrize("method, rest, operation", [
    ("POST", "Storefront/_apis/wit/wiql", "AzureDevOps/wit/wiql/read"),
    ("POST", "Storefront/_apis/wit/workitemsbatch", "AzureDevOps/wit/workItemsBatch/read"),
    ("POST", "_apis/wit/workitemsbatch", "AzureDevOps/wit/workItemsBatch/read"),
    ("POST", f"{REPO}/itemsbatch", "AzureDevOps/git/repositories/itemsBatch/read"),
    ("POST", f"{REPO}/commitsbatch", "AzureDevOps/git/repositories/commitsBatch/read"),
])
def test_posts_that_only_read_are_reads_and_read_only_allows_them(method, rest, operation):
    decision, mapped = decide_request(READ_ONLY, PUBLIC, method, f"{PUBLIC_DEVOPS}/{rest}")
    assert mapped is not None and mapped.operation == operation
    assert decision.effect.value == "allow"
    assert [r for r in devops_routes() if r.verbs.get("POST") == "read" and not r.post_read] == []


def _concrete(route: Any) -> str:
    values = {"{project}": "Storefront", "{repository}": "storefront-web", "{id}": "7", "{guid}": GUID,
              "{type}": "$Bug", "{name}": "Bug"}
    return "/".join(values.get(s, s) for s in route.template)


ROUTES = [(route, method) for route in devops_routes() for method in route.verbs]


@pytest.mark.parametrize("route, method", ROUTES, ids=[f"{m} {r.shown}" for r, m in ROUTES])
def test_every_route_decides_under_the_built_in_profiles(route, method):
    base = PUBLIC_VSSPS if route.host == "vssps" else PUBLIC_DEVOPS
    url = f"{base}/{_concrete(route)}"
    verb = route.verbs[method]
    operation = route.operation(method)
    secret = secret_bearing(operation)
    decisions = {p.name: decide_request(p, PUBLIC, method, url)[0] for p in (READ_ONLY, NO_SECRETS, UNRESTRICTED)}
    assert {d.operation for d in decisions.values()} == {operation}
    read_only = decisions["read-only"]
    if verb == "read" and not secret:
        assert read_only.effect.value == "allow", read_only.reason
    else:
        assert read_only.effect.value == "deny"
    if secret:  # agents never read secrets: denied by default, confirmed by the user under unrestricted
        assert decisions["no-secrets"].effect.value == "deny" and "secret-bearing" in decisions["no-secrets"].reason
        assert "secret-bearing" in read_only.reason
        assert decisions["unrestricted"].effect.value == "confirm"
    # the operation is exactly the route's literals after _apis, ids dropped (plus the area where the route has none)
    literals = [s for s in route.template[route.template.index("_apis") + 1:] if s not in PLACEHOLDERS]
    assert operation == "/".join(["AzureDevOps", *([route.area] if route.area else []), *literals, verb])
    assert {"GET": "read", "HEAD": "read", "DELETE": "delete"}.get(method, verb) == verb
    assert verb != "read" or method in ("GET", "POST")


@pytest.mark.parametrize("method, rest", [
    ("GET", "_apis/tokens/pats"),
    ("POST", "_apis/tokens/pats"),
    ("PUT", "_apis/tokens/pats"),
    ("DELETE", "_apis/tokens/pats?authorizationId=" + GUID),
    ("GET", "_apis/tokenadmin/personalAccessTokens/aad.OWI0ZDQ4"),
])
def test_personal_access_tokens_are_secret_bearing(method, rest):
    for policy in (READ_ONLY, NO_SECRETS):
        decision, _ = decide_request(policy, PUBLIC, method, f"{PUBLIC_VSSPS}/{rest}")
        assert decision.effect.value == "deny" and "secret-bearing" in decision.reason


@pytest.mark.parametrize("rest", [
    "Storefront/_apis/serviceendpoint/endpoints?includeDetails=true",
    f"Storefront/_apis/serviceendpoint/endpoints/{GUID}",
    "Storefront/_apis/distributedtask/variablegroups",
    "Storefront/_apis/distributedtask/variablegroups/4",
    f"Storefront/_apis/distributedtask/securefiles/{GUID}?download=true",
    "Storefront/_apis/build/definitions/4",
    "_apis/hooks/subscriptions",
])
def test_secret_bearing_reads_are_refused_by_default(rest):
    for policy in (READ_ONLY, NO_SECRETS):
        decision, mapped = decide_request(policy, PUBLIC, "GET", f"{PUBLIC_DEVOPS}/{rest}")
        assert mapped is not None and decision.effect.value == "deny" and "secret-bearing" in decision.reason


def test_everyday_reads_are_not_secret_bearing():
    for rest in ("_apis/projects", "Storefront/_apis/git/repositories", f"{REPO}/items", "Storefront/_apis/wit/wiql",
                 "Storefront/_apis/build/builds", "Storefront/_apis/pipelines"):
        method = "POST" if rest.endswith("wiql") else "GET"
        decision, _ = decide_request(READ_ONLY, PUBLIC, method, f"{PUBLIC_DEVOPS}/{rest}")
        assert decision.effect.value == "allow", decision.reason


# -- fences ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, rest, storefront, web", [
    ("GET", "Storefront/_apis/git/repositories", "allow", "deny"),
    ("GET", f"{REPO}/items?path=/README.md", "allow", "allow"),
    ("POST", f"{REPO}/pushes", "allow", "allow"),
    ("POST", f"{REPO}/pullrequests/7/threads", "allow", "allow"),
    ("GET", "Storefront/_apis/git/repositories/other-repo/refs", "allow", "deny"),
    ("POST", "Storefront/_apis/wit/workitems/$Bug", "allow", "deny"),
    ("POST", "Storefront/_apis/wit/wiql", "allow", "deny"),
    ("GET", "Platform/_apis/git/repositories", "deny", "deny"),
    ("GET", "Platform/_apis/git/repositories/platform-infra/items", "deny", "deny"),
    ("GET", "Platform/_apis/wit/workitems/40", "deny", "deny"),
    # a work item id is organization-wide: Storefront's path would answer Platform's item 40
    ("GET", "Storefront/_apis/wit/workitems/40", "deny", "deny"),
    ("PATCH", "Storefront/_apis/wit/workitems/40", "deny", "deny"),
    ("POST", "Storefront/_apis/wit/workItems/40/comments", "deny", "deny"),
    ("GET", "Storefront/_apis/wit/workitems?ids=12,40", "deny", "deny"),
    ("POST", "Storefront/_apis/wit/workitemsbatch", "deny", "deny"),
    ("GET", "Storefront/_apis/git/pullrequests/7", "deny", "deny"),
    ("GET", "Storefront/_apis/git/pullrequests", "allow", "deny"),
    ("GET", "Storefront/_apis/wit/workitemtypes", "allow", "deny"),
    ("POST", "Platform/_apis/wit/workitems/$Task", "deny", "deny"),
    ("GET", "Storefront-Old/_apis/git/repositories", "deny", "deny"),  # a prefix is not containment
    # organization-level routes reach every project's data: scoped to the organization, outside both fences
    ("GET", "_apis/projects", "deny", "deny"),
    ("GET", "_apis/wit/workitems/12", "deny", "deny"),
    ("GET", "_apis/wit/workitems?ids=12,40", "deny", "deny"),
    ("POST", "_apis/wit/workitemsbatch", "deny", "deny"),
    ("POST", "_apis/wit/wiql", "deny", "deny"),
    ("PATCH", "_apis/wit/workitems/40", "deny", "deny"),
    ("GET", "_apis/projects/Storefront", "allow", "deny"),
    ("GET", "_apis/projects/Platform", "deny", "deny"),
])
def test_assignable_scopes_fence_an_agent_to_a_project_or_a_repository(method, rest, storefront, web):
    url = f"{PUBLIC_DEVOPS}/{rest}"
    assert decide_request(STOREFRONT_FENCE, PUBLIC, method, url)[0].effect.value == storefront
    assert decide_request(REPO_FENCE, PUBLIC, method, url)[0].effect.value == web


def test_work_items_addressed_by_id_are_decided_at_the_organization_whatever_project_the_path_names():
    """The contract scoped ``{p}/_apis/wit/workitems/{id}`` to the project; the service does not confine an id to it.

    Azure DevOps' own reference (wit/work-items/get-work-item, api-version 7.1) asks project
    Fabrikam-Fiber-Git for item 12 and answers an item whose System.TeamProject is MyAgilePrj2. A
    project fence on such a route would let a Storefront agent read and update Platform's items by id.
    """
    for method, rest in [("GET", "wit/workitems/40"), ("PATCH", "wit/workitems/40"), ("DELETE", "wit/workitems/40"),
                         ("GET", "wit/workitems?ids=40"), ("POST", "wit/workitemsbatch"),
                         ("GET", "wit/workItems/40/comments"), ("POST", "wit/workItems/40/comments"),
                         ("GET", "wit/workItems/40/updates"), ("GET", "wit/workItems/40/revisions")]:
        mapped = map_request(method, f"{PUBLIC_DEVOPS}/Storefront/_apis/{rest}", PUBLIC)
        assert mapped.scope == ORG_SCOPE, rest
        assert mapped.path.startswith("/contoso/Storefront/")  # the audit still shows the path as sent
    # creating a work item, a WIQL query and the project's metadata stay in the project the path names
    for method, rest in [("POST", "wit/workitems/$Bug"), ("POST", "wit/wiql"), ("GET", "wit/workitemtypes"),
                         ("GET", "wit/fields"), ("GET", "wit/classificationNodes"), ("GET", "wit/queries")]:
        assert map_request(method, f"{PUBLIC_DEVOPS}/Storefront/_apis/{rest}", PUBLIC).scope == STOREFRONT, rest
    reasons = {r.reaches_organization for r in devops_routes() if r.reaches_organization}
    assert reasons and all("organization-wide" in reason for reason in reasons)


def test_identities_and_pats_are_organization_wide_and_outside_a_project_fence():
    for rest in ("_apis/identities?searchFilter=General&filterValue=x", "_apis/tokens/pats"):
        decision, mapped = decide_request(STOREFRONT_FENCE, PUBLIC, "GET", f"{PUBLIC_VSSPS}/{rest}")
        assert mapped is not None and mapped.scope == ORG_SCOPE and decision.effect.value == "deny"
        assert "outside AssignableScopes" in decision.rule


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("project", [
    GUID, GUID.upper(), GUID.replace("-", ""), f"({GUID})", f"%28{GUID}%29", f"%20{GUID}",
])
def test_a_project_given_as_a_guid_is_refused_and_the_error_says_to_use_its_name(project):
    for rest in (f"{project}/_apis/git/repositories", f"{project}/_apis/wit/workitems/1", f"_apis/projects/{project}"):
        with pytest.raises(UnmappableRequestError) as caught:
            map_request("GET", f"{PUBLIC_DEVOPS}/{rest}", PUBLIC)
        assert "GUID" in caught.value.problem or "white space" in caught.value.problem
    with pytest.raises(UnmappableRequestError) as caught:
        map_request("GET", f"{PUBLIC_DEVOPS}/{project}/_apis/git/repositories", PUBLIC)
    if "%20" not in project:
        assert "by name" in caught.value.problem and "use the project's name" in caught.value.problem


@pytest.mark.parametrize("repository", [GUID, GUID.replace("-", "").upper()])
def test_a_repository_given_as_a_guid_is_refused(repository):
    with pytest.raises(UnmappableRequestError) as caught:
        map_request("GET", f"{PUBLIC_DEVOPS}/Storefront/_apis/git/repositories/{repository}/items", PUBLIC)
    assert "repository" in caught.value.problem and "GUID" in caught.value.problem


@pytest.mark.parametrize("url, problem", [
    (PUBLIC_DEVOPS + "/_apis/_apis/git/repositories", "'_apis' is not an Azure DevOps project name"),
    (PUBLIC_DEVOPS + "/Storefront/_apis/_apis/git/repositories", "not an Azure DevOps route"),
    (PUBLIC_DEVOPS + "/_apis/git/repositories", "not an Azure DevOps route"),  # org-level repositories: not mapped
    (PUBLIC_DEVOPS + "/Storefront/_apis/git/repositories/", "trailing"),
    (PUBLIC_DEVOPS + "//Storefront/_apis/git/repositories", "empty segment"),
    (PUBLIC_DEVOPS + "/Storefront//_apis/git/repositories", "empty segment"),
    (PUBLIC_DEVOPS + "/Platform/../Storefront/_apis/git/repositories", "dot segment"),
    (PUBLIC_DEVOPS + "/Storefront/./_apis/git/repositories", "dot segment"),
    (PUBLIC_DEVOPS + "/Storefront/%2e%2e/Platform/_apis/git/repositories", "unreserved"),
    (PUBLIC_DEVOPS + "/Storefront/%2E/_apis/git/repositories", "unreserved"),
    (PUBLIC_DEVOPS + "/Storefront%2F_apis/git/repositories", "separator"),
    (PUBLIC_DEVOPS + "/Storefront%2f..%2fPlatform/_apis/git/repositories", "separator"),
    (PUBLIC_DEVOPS + "/Storefront/%5Fapis/git/repositories", "unreserved"),
    (PUBLIC_DEVOPS + "/Storefront\\_apis/git/repositories", "backslash"),
    (PUBLIC_DEVOPS + "/Storefront/_apis/git/repositories#x", "fragment"),
    (PUBLIC_DEVOPS + "/_apis/_apis/wit/workitems/1", "'_apis' is not an Azure DevOps project name"),
    (PUBLIC_DEVOPS + "/_apis/projects/_apis", "'_apis' is not an Azure DevOps project name"),
    (PUBLIC_DEVOPS + "/Store%3Afront/_apis/git/repositories", "not an Azure DevOps project name"),
    (PUBLIC_DEVOPS + "/Storefront./_apis/git/repositories", "'.'"),
    (PUBLIC_DEVOPS + "/.Storefront/_apis/git/repositories", "'.'"),
    (PUBLIC_DEVOPS + "/_Storefront/_apis/git/repositories", "'_'"),
    (PUBLIC_DEVOPS + "/CON/_apis/git/repositories", "reserves"),
    (PUBLIC_DEVOPS + "/DefaultCollection/_apis/git/repositories", "reserves"),
    (PUBLIC_DEVOPS + "/" + "p" * 65 + "/_apis/git/repositories", "64"),
    (PUBLIC_DEVOPS + "/Storefront/_apis/git/repositories/_web/items", "'_'"),
    (PUBLIC_DEVOPS + "/Storefront/_apis/git/repositories/storefront-web/pullrequests/x", "numeric id"),
    (PUBLIC_DEVOPS + "/Storefront/_apis/wit/wiql", "POST"),  # GET on a POST-only route: the methods are named
    ("https://dev.azure.com/", "names its organization first"),
    (PUBLIC_DEVOPS, "not an Azure DevOps route"),
    ("https://dev.azure.com/fabrikam/Storefront/_apis/git/repositories", "not the configured Azure DevOps organization"),
    ("https://vssps.dev.azure.com/fabrikam/_apis/tokens/pats", "not the configured Azure DevOps organization"),
    ("https://contoso.visualstudio.com/Storefront/_apis/git/repositories", "neither"),
    ("https://vsrm.dev.azure.com/contoso/Storefront/_apis/release/definitions", "neither"),
    ("https://dev.azure.com:8443/contoso/Storefront/_apis/git/repositories", "neither"),
    ("http://dev.azure.com/contoso/Storefront/_apis/git/repositories", "neither"),
    ("https://user@dev.azure.com/contoso/Storefront/_apis/git/repositories", "user information"),
    ("https://dev.azure.com.evil.example/contoso/_apis/projects", "neither"),
])
def test_hostile_and_unknown_paths_are_refused_with_the_reason(url, problem):
    with pytest.raises(UnmappableRequestError) as caught:
        map_request("GET", url, PUBLIC)
    assert problem in caught.value.problem
    decision, mapped = decide_request(UNRESTRICTED, PUBLIC, "GET", url)
    assert mapped is None and decision.effect.value == "deny" and decision.rule == "unmappable request"


@pytest.mark.parametrize("query", [
    "project=Platform", "Project=Platform", "%70roject=Platform", "PROJECTID=" + GUID, "teamProject=Platform",
    "api-version=7.1&project=Storefront", "projectIds=1,2", "project",
])
def test_a_query_that_names_a_project_never_widens_a_project_route(query):
    with pytest.raises(UnmappableRequestError) as caught:
        map_request("GET", f"{PUBLIC_DEVOPS}/Storefront/_apis/git/repositories?{query}", PUBLIC)
    assert "query names a project" in caught.value.problem
    # on an organization route the scope is the organization already: nothing to widen, nothing narrowed
    mapped = map_request("GET", f"{PUBLIC_DEVOPS}/_apis/wit/workitems?ids=1&{query}", PUBLIC)
    assert mapped.scope == ORG_SCOPE
    assert decide_request(STOREFRONT_FENCE, PUBLIC, "GET", f"{PUBLIC_DEVOPS}/_apis/wit/workitems?ids=1&{query}")[
        0].effect.value == "deny"


@pytest.mark.parametrize("url", [
    "https://dev.azure.com/contoso/_apis/projects",
    "https://vssps.dev.azure.com/contoso/_apis/tokens/pats",
])
def test_without_an_organization_every_azure_devops_url_is_refused_naming_the_flag(url):
    for endpoints in (Endpoints.public_cloud(), Endpoints("https://127.0.0.1:8443", "https://127.0.0.1:8443/vaults/{vault}",
                      "https://127.0.0.1:8443/loganalytics", "https://127.0.0.1:8443/devops",
                      "https://127.0.0.1:8443/vssps")):
        target = url if endpoints.arm_endpoint.startswith("https://management") else url.replace(
            "https://dev.azure.com", "https://127.0.0.1:8443/devops").replace(
            "https://vssps.dev.azure.com", "https://127.0.0.1:8443/vssps")
        with pytest.raises(UnmappableRequestError) as caught:
            map_request("GET", target, endpoints)
        assert "--devops-organization" in caught.value.problem


def test_the_sandbox_devops_paths_are_not_read_as_arm(sandbox_endpoints):
    endpoints, devops, _ = sandbox_endpoints
    assert map_request("GET", devops + "/_apis/projects", endpoints).plane == "devops"
    unconfigured = Endpoints(endpoints.arm_endpoint, endpoints.keyvault_url_template, endpoints.logs_endpoint,
                             endpoints.devops_endpoint, endpoints.devops_vssps_endpoint)
    with pytest.raises(UnmappableRequestError) as caught:
        map_request("GET", devops + "/_apis/projects", unconfigured)
    assert "--devops-organization" in caught.value.problem


@pytest.mark.parametrize("organization", ["", "-contoso", "contoso-", "con toso", "con/toso", "c" * 51, "contoso.com"])
def test_a_bad_configured_organization_is_a_construction_error_naming_the_flag(organization):
    with pytest.raises(ValueError, match="--devops-organization"):
        Endpoints.public_cloud(organization)


def test_the_organization_matches_in_any_case_and_is_scoped_as_configured():
    mapped = map_request("GET", "https://dev.azure.com/CONTOSO/_apis/projects", PUBLIC)
    assert mapped.scope == ORG_SCOPE


def test_policy_explain_takes_the_organization_from_the_url():
    assert devops_organization_in("https://dev.azure.com/fabrikam/_apis/projects", Endpoints.public_cloud()) == "fabrikam"
    assert devops_organization_in("https://management.azure.com/subscriptions", Endpoints.public_cloud()) is None
    assert devops_organization_in("https://dev.azure.com/-bad-/_apis/projects", Endpoints.public_cloud()) is None


def test_the_readme_table_is_current():
    assert routes_table() in README.read_text(encoding="utf-8"), (
        "README.md's Azure DevOps table is stale: paste azure_agent_mcp.policy.devops_mapping.routes_table()"
    )


def test_no_two_routes_can_match_the_same_path():
    for route in devops_routes():
        path = _concrete(route)
        base = PUBLIC_VSSPS if route.host == "vssps" else PUBLIC_DEVOPS
        method = next(iter(route.verbs))
        assert map_request(method, f"{base}/{path}", PUBLIC).operation == route.operation(method)
    shapes = [(r.host, tuple("{}" if s in PLACEHOLDERS else s.lower() for s in r.template)) for r in devops_routes()]
    duplicates = {s for s in shapes if shapes.count(s) > 1}
    # the one shape two routes share: workItems/{id} (a number) and workItems/{type} ('$Type'), disjoint by value
    assert all(s[1][-2] == "workitems" for s in duplicates), duplicates


# -- hostile paths, against an independent reading of the URL ------------------------------------

TOKENS = [
    "contoso", "CONTOSO", "fabrikam", "_apis", "_APIS", "_Apis", "git", "GIT", "repositories", "Repositories",
    "storefront-web", "platform-infra", "Storefront", "storefront", "Platform", "pullRequests", "pullrequests",
    "threads", "comments", "wit", "workitems", "workItems", "wiql", "workitemsbatch", "$Bug", "%24Bug", "1", "42",
    "projects", "tokens", "pats", "identities", "items", "refs", "pushes", ".", "..", "%2e", "%2E", "%2e%2e", "%2F",
    "%2f", "", GUID, GUID.replace("-", ""), "Store%20front", "%5Fapis", "%5F%61pis", "a%2Fb", "x;y", "x%3By",
    "serviceendpoint", "endpoints", "core", "Web", "_x",
]
HOSTS = {"devops": "https://dev.azure.com", "vssps": "https://vssps.dev.azure.com"}
_NUM = re.compile(r"[0-9]+")
_NAMED_COLLECTIONS = frozenset({"workitemtypes", "commits", "personalaccesstokens"})


def _service_reading(path: str) -> dict[str, Any] | None:
    """What the service would read in ``path`` (decode each segment once), or None where it would normalise first."""
    raw = path.split("/")[1:]
    if any(s in ("", ".", "..") for s in raw):
        return None
    decoded = [unquote(s) for s in raw]
    if any(s in (".", "..") or "/" in s or "\\" in s for s in decoded):
        return None
    lowered = [s.lower() for s in decoded]
    if "_apis" not in lowered:
        return {"apis": None}
    at = lowered.index("_apis")
    after, after_decoded = lowered[at + 1:], decoded[at + 1:]
    reading: dict[str, Any] = {"apis": at, "org": lowered[0], "project": None, "repository": None}
    names: set[int] = set()  # positions (below _apis) that hold a project's or repository's name
    if at == 2:
        reading["project"] = decoded[1]
        # the service's own knowledge: work item and pull request ids are organization-wide
        reading["org_wide"] = (after[:2] == ["wit", "workitems"] and (len(after) == 2 or bool(_NUM.fullmatch(after[2])))
                               or after[:2] == ["wit", "workitemsbatch"]
                               or (after[:2] == ["git", "pullrequests"] and len(after) > 2))
        if after[:2] == ["git", "repositories"] and len(after) > 2:
            reading["repository"] = after_decoded[2]
            names.add(2)
    elif after[:1] == ["projects"] and len(after) > 1:
        reading["project"] = after_decoded[1]
        names.add(1)
    # the service's own knowledge: these collections are followed by a free-form name (a type, a commit, a descriptor)
    names |= {i + 1 for i, s in enumerate(after) if s in _NAMED_COLLECTIONS}
    reading["literals"] = [s for i, s in enumerate(after) if i not in names
                           and not (_NUM.fullmatch(s) or s.startswith("$") or looks_like_guid(s))]
    return reading


def _check_reading(method: str, path: str, query: str, url: str) -> bool:
    """Map ``url``; if it is not refused, check it against the service's reading. True when it mapped."""
    try:
        mapped = map_request(method, url, PUBLIC)
    except UnmappableRequestError:
        return False
    reading = _service_reading(path)
    assert reading is not None and reading["apis"] in (1, 2), path  # nothing the service would normalise is decided
    assert reading["org"] == ORG and not path.endswith("/")
    expected = ORG_SCOPE
    if reading["project"] is not None and not reading.get("org_wide"):
        assert not looks_like_guid(reading["project"]) and not reading["project"].startswith("_")
        expected += "/projects/" + reading["project"]
        if reading["apis"] == 2:
            assert "project" not in query.lower()
        if reading["repository"] is not None:
            assert not looks_like_guid(reading["repository"])
            expected += "/repositories/" + reading["repository"]
    assert unquote(mapped.scope).lower() == expected.lower(), (path, mapped.scope)
    # the operation names the route's collections, ids dropped, and nothing the path does not say
    resource = mapped.operation.split("/")[1:-1]
    if resource[0] in ("core", "location") and reading["literals"][:1] != [resource[0]]:
        resource = resource[1:]
    assert [r.lower() for r in resource] == reading["literals"], (path, mapped.operation)
    verb = mapped.operation.rsplit("/", 1)[1]
    assert verb == {"GET": "read", "HEAD": "read", "DELETE": "delete"}.get(method, verb)
    assert verb != "read" or method in ("GET", "HEAD", "POST")
    # the fence: allowed only where the path names Storefront
    decision, _ = decide_request(STOREFRONT_FENCE, PUBLIC, method, url)
    in_storefront = expected.lower() == STOREFRONT.lower() or expected.lower().startswith(STOREFRONT.lower() + "/")
    assert (decision.effect.value == "allow") == in_storefront, (path, decision.reason)
    return True


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(host=st.sampled_from(sorted(HOSTS)), segments=st.lists(st.sampled_from(TOKENS), min_size=1, max_size=9),
       method=st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"]),
       trailing=st.booleans(), query=st.sampled_from(["", "?api-version=7.1", "?project=Platform", "?ids=1,2"]))
def test_a_hostile_path_is_refused_or_decided_as_what_it_means(host, segments, method, trailing, query):
    path = "/" + "/".join(segments) + ("/" if trailing else "")
    _check_reading(method, path, query, HOSTS[host] + path + query)


HOSTILE_VALUES = ["Storefront", "storefront", "Platform", "STOREFRONT", "Store%20front", "storefront-web", "_apis",
                  "_APIS", "%5Fapis", GUID, GUID.upper(), GUID.replace("-", ""), f"%28{GUID}%29", "1", "42", "$Bug",
                  "%24Bug", "%2e", "%2E%2E", ".", "..", "", "a%2Fb", "Storefront.", "Store%3Bfront", "Web", "x" * 65,
                  "Platform%2F..%2FStorefront", "projects", "git"]


@st.composite
def _mutated_route(draw: Any) -> tuple[str, str, str, str]:
    route = draw(st.sampled_from(devops_routes()))
    method = draw(st.sampled_from(sorted(route.verbs) + ["HEAD", "DELETE", "POST"]))
    segments = []
    for template in route.template:
        if template in PLACEHOLDERS:
            segments.append(draw(st.sampled_from(HOSTILE_VALUES + [_concrete_value(template)] * 4)))
        else:
            segments.append(draw(st.sampled_from([template, template.lower(), template.upper()])))
    if draw(st.booleans()):  # one hostile segment somewhere
        segments.insert(draw(st.integers(0, len(segments))), draw(st.sampled_from(HOSTILE_VALUES)))
    org = draw(st.sampled_from(["contoso", "Contoso", "fabrikam"]))
    path = "/" + "/".join([org, *segments]) + draw(st.sampled_from(["", "", "", "/"]))
    query = draw(st.sampled_from(["", "?api-version=7.1", "?project=Platform", "?%70roject=x", "?ids=1,40"]))
    return method, path, query, HOSTS[route.host] + path + query


def _concrete_value(placeholder: str) -> str:
    return {"{project}": "Storefront", "{repository}": "storefront-web", "{id}": "7", "{guid}": GUID,
            "{type}": "$Bug", "{name}": "Bug"}[placeholder]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_mutated_route())
def test_a_mutated_known_route_is_refused_or_decided_as_what_it_means(case):
    method, path, query, url = case
    _check_reading(method, path, query, url)


def test_the_mutation_strategy_reaches_both_outcomes():
    outcomes = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(case=_mutated_route())
    def run(case: tuple[str, str, str, str]) -> None:
        outcomes.add(_check_reading(case[0], case[1], case[2], case[3]))

    run()
    assert outcomes == {True, False}


# -- the guard ---------------------------------------------------------------------------------


def _audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_guard_audits_azure_devops_requests_with_their_plane_and_scope(sandbox, sandbox_endpoints, tmp_path):
    from azure.core.pipeline.transport import RequestsTransport
    from azure.core.rest import HttpRequest

    from azure_agent_mcp.policy import AuditLog, Guard, PolicyDeniedError

    endpoints, devops, _ = sandbox_endpoints
    audit_path = tmp_path / "audit.jsonl"
    guard = Guard(load_policy("read-only"), endpoints, audit=AuditLog(audit_path))
    transport = guard.transport(RequestsTransport(connection_verify=sandbox.manifest["ca_bundle"]))
    mark = sandbox.last_seq()
    read = HttpRequest("GET", f"{devops}/Storefront/_apis/git/repositories?api-version=7.1",
                       headers={"x-ms-correlation-request-id": "devops-policy-read"})
    response = transport.send(read)
    write = HttpRequest("POST", f"{devops}/Storefront/_apis/wit/workitems/$Bug?api-version=7.1", json=[])
    with pytest.raises(PolicyDeniedError):
        transport.send(write)
    transport.close()
    records = _audit_lines(audit_path)
    intent = next(r for r in records if r["kind"] == "intent")
    assert (intent["plane"], intent["operation"], intent["scope"], intent["decision"]) == (
        "devops", "AzureDevOps/git/repositories/read", STOREFRONT, "allow")
    outcome = next(r for r in records if r["kind"] == "outcome")
    assert outcome["status"] == response.status_code
    refused = next(r for r in records if r["kind"] == "refused")
    assert (refused["plane"], refused["operation"], refused["scope"], refused["status"]) == (
        "devops", "AzureDevOps/wit/workItems/write", STOREFRONT, "not-sent")
    sent = [e["raw_path"] for e in sandbox.requests(since=mark)]
    assert intent["path"] in sent  # decided == sent
    assert not any("workitems" in p.lower() for p in sent)  # the refused write never left


def test_the_guard_refuses_a_method_override_header(sandbox, sandbox_endpoints, tmp_path):
    from azure.core.pipeline.transport import RequestsTransport
    from azure.core.rest import HttpRequest

    from azure_agent_mcp.policy import AuditLog, Guard, PolicyDeniedError

    endpoints, devops, _ = sandbox_endpoints
    audit_path = tmp_path / "audit.jsonl"
    guard = Guard(load_policy("unrestricted"), endpoints, audit=AuditLog(audit_path))
    transport = guard.transport(RequestsTransport(connection_verify=sandbox.manifest["ca_bundle"]))
    mark = sandbox.last_seq()
    request = HttpRequest("POST", f"{devops}/Storefront/_apis/wit/wiql?api-version=7.1", json={"query": "x"},
                          headers={"X-HTTP-Method-Override": "DELETE"})
    with pytest.raises(PolicyDeniedError) as caught:
        transport.send(request)
    transport.close()
    assert caught.value.decision.rule == "method override header"
    assert [r["rule"] for r in _audit_lines(audit_path)] == ["method override header"]
    assert not [e for e in sandbox.requests(since=mark) if "wiql" in e["raw_path"].lower()]


# -- policy explain --url ------------------------------------------------------------------------


def _explain(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    from azure_agent_mcp.cli import main

    try:
        code = main(["policy", "explain", "--policy", "read-only", "--json", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, _ = capsys.readouterr()
    return code, json.loads(out)


@pytest.mark.parametrize("argv, code, operation, scope", [
    (["--method", "GET", "--url", f"{PUBLIC_DEVOPS}/Storefront/_apis/wit/workitems/12?api-version=7.1"], 0,
     "AzureDevOps/wit/workItems/read", ORG_SCOPE),
    (["--method", "POST", "--url", f"{PUBLIC_DEVOPS}/Storefront/_apis/wit/wiql?api-version=7.1"], 0,
     "AzureDevOps/wit/wiql/read", STOREFRONT),
    (["--method", "POST", "--url", f"{PUBLIC_DEVOPS}/Storefront/_apis/wit/workitems/$Bug"], 3,
     "AzureDevOps/wit/workItems/write", STOREFRONT),
    (["--method", "POST", "--url", f"{PUBLIC_VSSPS}/_apis/tokens/pats"], 3, "AzureDevOps/tokens/pats/write", ORG_SCOPE),
    (["--method", "GET", "--url", "https://127.0.0.1:8443/devops/contoso/_apis/projects",
      "--arm-endpoint", "https://127.0.0.1:8443", "--keyvault-endpoint", "https://127.0.0.1:8443/vaults/{vault}",
      "--devops-endpoint", "https://127.0.0.1:8443/devops", "--devops-vssps-endpoint", "https://127.0.0.1:8443/vssps"],
     0, "AzureDevOps/core/projects/read", ORG_SCOPE),
])
def test_policy_explain_decides_azure_devops_urls(capsys, argv, code, operation, scope):
    got, data = _explain(capsys, *argv)
    assert (got, data["operation"], data["scope"], data["plane"]) == (code, operation, scope, "devops")


def test_policy_explain_with_another_organization_refuses_the_url(capsys):
    got, data = _explain(capsys, "--method", "GET", "--url", f"{PUBLIC_DEVOPS}/_apis/projects",
                         "--devops-organization", "fabrikam")
    assert got == 3 and data["rule"] == "unmappable request" and "'fabrikam'" in data["reason"]


@pytest.mark.parametrize("rest, problem", [
    ("contoso/Storefront/_apis/git/repositories/", "trailing"),  # the sandbox's vault plane admits one; this is not it
    ("fabrikam/_apis/projects", "not the configured Azure DevOps organization"),
    ("contoso/_apis/_apis/projects", "not an Azure DevOps route"),
    ("contoso/_apis/_apis/git/repositories", "'_apis' is not an Azure DevOps project name"),
    (f"contoso/{GUID}/_apis/git/repositories", "GUID"),
    ("contoso/Storefront/_apis/git/repositories/storefront-web/items/..", "dot segment"),
])
def test_the_sandbox_paths_are_refused_like_the_public_ones(sandbox_endpoints, rest, problem):
    endpoints, devops, _ = sandbox_endpoints
    base = devops.rsplit("/", 1)[0]
    with pytest.raises(UnmappableRequestError) as caught:
        map_request("GET", f"{base}/{rest}", endpoints)
    assert problem in caught.value.problem
