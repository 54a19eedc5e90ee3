"""The sandbox's Microsoft Graph agent identity endpoints, spoken to over HTTPS as Graph is: shapes,
errors, who may do what, and that a created identity is a real principal (tokens, RBAC) until deleted."""

from __future__ import annotations

import uuid

import pytest
from ephemeral_helpers import AGENTS, Graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

@pytest.fixture
def graph(fresh_sandbox_state):
    return Graph(fresh_sandbox_state)


def test_create_read_list_delete_round_trip(graph, fresh_sandbox_state):
    token = graph.token()
    created = graph.send("POST", AGENTS, token, json=graph.body(tags=["team:orders", "run:1"]))
    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent["@odata.type"] == "#microsoft.graph.agentIdentity"
    assert agent["agentIdentityBlueprintId"] == graph.blueprint_id
    assert agent["createdByAppId"] == graph.blueprint_id
    assert agent["servicePrincipalType"] == "ServiceIdentity"
    assert agent["tags"] == ["team:orders", "run:1"]
    assert created.headers["location"].endswith(f"/servicePrincipals/{agent['id']}")

    got = graph.send("GET", f"/beta/servicePrincipals/{agent['id']}?$expand=sponsors", token)
    assert got.status_code == 200
    assert got.json()["sponsors"] == [{"@odata.type": "#microsoft.graph.user", "id": graph.developer}]

    listed = graph.send("GET", AGENTS, token, params={"$filter": "tags/any(t:t eq 'team:orders')"})
    assert [a["id"] for a in listed.json()["value"]] == [agent["id"]]
    none = graph.send("GET", AGENTS, token, params={"$filter": "tags/any(t:t eq 'team:other')"})
    assert none.json()["value"] == []

    patched = graph.send("PATCH", f"/beta/servicePrincipals/{agent['id']}/microsoft.graph.agentIdentity", token,
                         json={"tags": ["team:orders", "run:2"]})
    assert patched.status_code == 204
    assert graph.send("GET", f"/v1.0/servicePrincipals/{agent['id']}", token).json()["tags"] == ["team:orders", "run:2"]

    deleted = graph.send("DELETE", f"/beta/servicePrincipals/{agent['id']}/microsoft.graph.agentIdentity", token)
    assert deleted.status_code == 204
    gone = graph.send("GET", f"/beta/servicePrincipals/{agent['id']}", token)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "Request_ResourceNotFound"
    assert graph.send("DELETE", f"/beta/servicePrincipals/{agent['id']}", token).status_code == 404
    journal = fresh_sandbox_state.requests(kind="graph")
    assert [e["graph_operation"] for e in journal] == ["create", "get", "list", "list", "update", "get", "delete",
                                                       "get", "delete"]


def test_a_created_identity_is_a_real_principal_until_deleted(graph, fresh_sandbox_state):
    """Its blueprint gets exchange tokens for it, it gets ARM tokens, RBAC sees its assignments; deleted: none of it."""
    token = graph.token()
    agent_id = graph.send("POST", AGENTS, token, json=graph.body()).json()["id"]
    exchange = graph.client.post(graph.token_url, data={
        "grant_type": "client_credentials", "client_id": graph.blueprint_id, "client_secret": graph.blueprint_secret,
        "scope": "api://AzureADTokenExchange/.default", "fmi_path": agent_id}).json()["access_token"]

    def agent_token():
        return graph.client.post(graph.token_url, data={
            "grant_type": "client_credentials", "client_id": agent_id, "scope": "https://management.azure.com/.default",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": exchange})

    issued = agent_token()
    assert issued.status_code == 200, issued.text
    arm_token = issued.json()["access_token"]
    subscription = fresh_sandbox_state.manifest["subscriptions"][0]["id"]
    groups = f"{fresh_sandbox_state.manifest['arm_endpoint']}/subscriptions/{subscription}/resourcegroups?api-version=2022-09-01"
    assert graph.client.get(groups, headers={"authorization": f"Bearer {arm_token}"}).status_code == 403  # no role yet
    from azure_agent_mcp.sandbox.rbac import READER, RoleAssignment

    fresh_sandbox_state.state.world.role_assignments.append(
        RoleAssignment(str(uuid.uuid4()), agent_id, "ServicePrincipal", READER, f"/subscriptions/{subscription}"))
    fresh_sandbox_state.state.authorizer.invalidate()
    assert graph.client.get(groups, headers={"authorization": f"Bearer {arm_token}"}).status_code == 200

    assert graph.send("DELETE", f"/beta/servicePrincipals/{agent_id}", token).status_code == 204
    assert not [a for a in fresh_sandbox_state.state.world.role_assignments if a.principal_id == agent_id]
    refused = graph.client.get(groups, headers={"authorization": f"Bearer {arm_token}"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "AuthorizationFailed"
    again = agent_token()
    assert again.status_code == 400 and 700016 in again.json()["error_codes"]  # the directory no longer knows it


@pytest.mark.parametrize("change, status, code", [
    ({"displayName": ""}, 400, "Request_BadRequest"),
    ({"agentIdentityBlueprintId": "not-a-guid"}, 400, "Request_BadRequest"),
    ({"agentIdentityBlueprintId": "5a1db0c5-a990-4000-a000-000000000a01"}, 400, "AgentIdentity_IncompatibleParentType"),
    ({"agentIdentityBlueprintId": str(uuid.UUID(int=7))}, 400, "AgentIdentity_AgentBlueprintPrincipalDoesNotExist"),
    ({"sponsors@odata.bind": []}, 400, "Request_BadRequest"),
    ({"sponsors@odata.bind": ["https://graph.microsoft.com/v1.0/users/" + str(uuid.UUID(int=9))]}, 404,
     "Request_ResourceNotFound"),
    ({"passwordCredentials": [{"secretText": "x"}]}, 400, "AgentBlueprintPrincipal_AgentIdentity_IncompatibleProperty"),
    ({"tags": ["x" * 300]}, 400, "Request_BadRequest"),
])
def test_bad_creations_get_graphs_errors(graph, change, status, code):
    answer = graph.send("POST", AGENTS, graph.token(), json=graph.body(**change))
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["message"] and error["innerError"]["request-id"]


def test_who_may_create_and_manage(graph, fresh_sandbox_state):
    manifest = fresh_sandbox_state.manifest
    assert graph.send("POST", AGENTS, None, json=graph.body()).json()["error"]["code"] == "InvalidAuthenticationToken"
    arm_token = graph.token(scope="https://management.azure.com/.default")
    wrong_audience = graph.send("POST", AGENTS, arm_token, json=graph.body())
    assert wrong_audience.status_code == 401 and "audience" in wrong_audience.json()["error"]["message"]
    # an ordinary app without AgentIdentity.* permissions
    automation = manifest["service_principals"][0]
    plain = graph.token(client_id=automation["client_id"], secret=automation["client_secret"])
    refused = graph.send("POST", AGENTS, plain, json=graph.body())
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "Authorization_RequestDenied"
    assert graph.send("GET", AGENTS, plain).status_code == 403
    # the blueprint sees and deletes only its own; the seeded agent identity is its own too
    token = graph.token()
    seeded = manifest["agent_identity"]["agent_identity_id"]
    listed = graph.send("GET", AGENTS, token, params={"$filter": f"agentIdentityBlueprintId eq '{graph.blueprint_id}'"})
    assert seeded in [a["id"] for a in listed.json()["value"]]
    unsupported = graph.send("GET", AGENTS, token, params={"$filter": "startswith(displayName,'a')"})
    assert unsupported.status_code == 400 and unsupported.json()["error"]["code"] == "Request_UnsupportedQuery"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40))
def test_tag_filters_find_exactly_the_tagged(graph, tag):
    """Any tag (quotes included, doubled as OData escapes them) finds the identity carrying it and no other."""
    token = graph.token()
    agent_id = graph.send("POST", AGENTS, token, json=graph.body(tags=[tag])).json()["id"]
    other = graph.send("POST", AGENTS, token, json=graph.body(tags=[tag + "x"])).json()["id"]
    try:
        escaped = tag.replace("'", "''")
        listed = graph.send("GET", AGENTS, token, params={"$filter": f"tags/any(t:t eq '{escaped}')"})
        assert listed.status_code == 200, listed.text
        assert [a["id"] for a in listed.json()["value"]] == [agent_id]
    finally:
        for each in (agent_id, other):
            graph.send("DELETE", f"/beta/servicePrincipals/{each}", token)


def test_an_agent_identity_cannot_make_agent_identities(graph, fresh_sandbox_state):
    """Even its own Graph token gets Error_AgentIdentitiesCreatingAgentIdentitiesNotAllowed: an agent cannot multiply."""
    seeded = fresh_sandbox_state.manifest["agent_identity"]["agent_identity_id"]
    exchange = graph.client.post(graph.token_url, data={
        "grant_type": "client_credentials", "client_id": graph.blueprint_id, "client_secret": graph.blueprint_secret,
        "scope": "api://AzureADTokenExchange/.default", "fmi_path": seeded}).json()["access_token"]
    answer = graph.client.post(graph.token_url, data={
        "grant_type": "client_credentials", "client_id": seeded, "scope": "https://graph.microsoft.com/.default",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": exchange})
    agent_token = answer.json()["access_token"]
    refused = graph.send("POST", AGENTS, agent_token, json=graph.body())
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "Error_AgentIdentitiesCreatingAgentIdentitiesNotAllowed"
    assert graph.send("DELETE", f"/beta/servicePrincipals/{seeded}", agent_token).status_code == 403
