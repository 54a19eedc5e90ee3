"""Resource Graph in the sandbox, driven by azure-mgmt-resourcegraph and by plain HTTPS requests."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError
from conftest import ARM_SCOPE, UserCredential, httpx_client

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
SUB_B = "5a1db0c5-b000-4000-a000-00000000000b"
RG_PATH = "/providers/Microsoft.ResourceGraph/resources"


def _client(sandbox, credential):
    from azure.mgmt.resourcegraph import ResourceGraphClient

    return ResourceGraphClient(credential, base_url=sandbox.manifest["arm_endpoint"], credential_scopes=[ARM_SCOPE],
                               connection_verify=sandbox.manifest["ca_bundle"])


def _query(sandbox, credential, query, subscriptions=None, **options):
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    request = QueryRequest(query=query, subscriptions=subscriptions,
                           options=QueryRequestOptions(**options) if options else None)
    return _client(sandbox, credential).resources(request)


def _post(sandbox, token, body, api_version="2022-10-01"):
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx_client(sandbox.manifest).post(
        sandbox.manifest["arm_endpoint"] + RG_PATH, params={"api-version": api_version}, content=raw,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def test_storage_accounts_without_tls_1_2(sandbox, developer_credential):
    answer = _query(sandbox, developer_credential,
                    "Resources | where type =~ 'Microsoft.Storage/storageAccounts' "
                    "| where properties.minimumTlsVersion != 'TLS1_2' "
                    "| project name, subscriptionId, tls = tostring(properties.minimumTlsVersion) | order by name asc",
                    subscriptions=[SUB_A, SUB_B])
    assert answer.data == [{"name": "stdevshared01", "subscriptionId": SUB_B, "tls": "TLS1_1"},
                           {"name": "stprodlogs01", "subscriptionId": SUB_A, "tls": "TLS1_0"}]
    assert (answer.total_records, answer.count, answer.result_truncated, answer.skip_token) == (2, 2, "false", None)
    total = _query(sandbox, developer_credential,
                   "Resources | where type == 'microsoft.storage/storageaccounts' | count")
    assert total.data == [{"Count": 6}]


def test_rows_have_resource_graph_columns(sandbox, developer_credential):
    answer = _query(sandbox, developer_credential, "Resources | where name == 'vm-jump-prod'", subscriptions=[SUB_A])
    (row,) = answer.data
    assert list(row) == ["id", "name", "type", "tenantId", "kind", "location", "resourceGroup", "subscriptionId",
                         "managedBy", "sku", "plan", "properties", "tags", "identity", "zones", "extendedLocation"]
    assert row["type"] == "microsoft.compute/virtualmachines"
    assert row["resourceGroup"] == "rg-prod-network" and row["subscriptionId"] == SUB_A
    assert row["tenantId"] == sandbox.manifest["tenant_id"]
    assert row["properties"]["storageProfile"]["osDisk"]["osType"] == "Linux"
    assert row["kind"] == "" and row["plan"] is None


def test_resource_containers_hold_subscriptions_and_groups(sandbox, developer_credential):
    answer = _query(sandbox, developer_credential,
                    "ResourceContainers | summarize count() by type | order by type asc")
    assert answer.data == [{"type": "microsoft.resources/subscriptions", "count_": 2},
                           {"type": "microsoft.resources/subscriptions/resourcegroups", "count_": 5}]
    groups = _query(sandbox, developer_credential, "resourcecontainers | where tags.env == 'dev' | project name",
                    subscriptions=[SUB_B])
    assert sorted(r["name"] for r in groups.data) == ["rg-dev-sandbox", "rg-dev-shared"]


def test_only_requested_subscriptions_and_only_what_rbac_lets_the_caller_read(sandbox, sandbox_tokens,
                                                                             developer_credential):
    by_sub = "Resources | summarize n = count() by subscriptionId | order by subscriptionId asc"
    developer = _query(sandbox, developer_credential, by_sub)
    assert [r["subscriptionId"] for r in developer.data] == [SUB_A, SUB_B]
    only_b = _query(sandbox, developer_credential, by_sub, subscriptions=[SUB_B])
    assert [r["subscriptionId"] for r in only_b.data] == [SUB_B]
    reader = UserCredential(sandbox_tokens, "reader")  # Reader on subscription A only
    asked_both = _query(sandbox, reader, by_sub, subscriptions=[SUB_A, SUB_B])
    assert [r["subscriptionId"] for r in asked_both.data] == [SUB_A]
    assert asked_both.data[0]["n"] == developer.data[0]["n"]
    assert _query(sandbox, reader, "Resources | count", subscriptions=[SUB_B]).data == [{"Count": 0}]
    # the automation principal is Contributor on one group: it sees that group's resources, nothing else
    from azure.core.credentials import AccessToken

    class AppCredential:
        def get_token(self, *scopes, **kwargs):
            return AccessToken(sandbox_tokens.app_token(scopes[0]), 2**31)

    groups = _query(sandbox, AppCredential(), "Resources | distinct resourceGroup")
    assert groups.data == [{"resourceGroup": "rg-prod-app"}]


def test_paging_with_skip_token_and_top(sandbox, developer_credential):
    query = "Resources | project id, name | order by name asc"
    everything = _query(sandbox, developer_credential, query)
    assert everything.skip_token is None and everything.count == everything.total_records > 20
    seen, token = [], None
    for _ in range(20):
        page = _query(sandbox, developer_credential, query, top=7, skip_token=token)
        assert page.total_records == everything.total_records and page.count == len(page.data) <= 7
        seen.extend(page.data)
        token = page.skip_token
        if token is None:
            break
    assert seen == everything.data
    table = _query(sandbox, developer_credential, query, top=2, skip=3, result_format="table")
    assert table.data["columns"] == [{"name": "id", "type": "string"}, {"name": "name", "type": "string"}]
    assert table.data["rows"] == [[r["id"], r["name"]] for r in everything.data[3:5]]


def test_skip_token_from_another_query_is_refused(sandbox, developer_credential):
    first = _query(sandbox, developer_credential, "Resources | project name", top=1)
    with pytest.raises(HttpResponseError) as error:
        _query(sandbox, developer_credential, "Resources | project id", skip_token=first.skip_token)
    assert error.value.status_code == 400
    assert error.value.error.details[0].code == "InvalidSkipToken"


def test_syntax_error_answers_parser_failure(sandbox, developer_credential):
    with pytest.raises(HttpResponseError) as error:
        _query(sandbox, developer_credential, "Resources\n| where name == 'x' garbage")
    assert error.value.status_code == 400 and error.value.error.code == "BadRequest"
    invalid, parser = error.value.error.details
    assert invalid.code == "InvalidQuery"
    assert parser.code == "ParserFailure"
    body = json.loads(error.value.response.text())
    detail = body["error"]["details"][1]
    assert (detail["line"], detail["characterPositionInLine"], detail["token"]) == (2, 20, "garbage")
    assert "correlationId" in body["error"]["message"]


def test_unsupported_operator_is_named(sandbox, sandbox_tokens):
    response = _post(sandbox, sandbox_tokens.user_token(), {
        "query": "Resources | join kind=inner (ResourceContainers) on subscriptionId", "subscriptions": [SUB_A]})
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert [d["code"] for d in details] == ["InvalidQuery", "InvalidQueryLanguage"]
    assert details[1]["token"] == "join" and details[1]["operator"] == "join" and "'join'" in details[1]["message"]


def test_unknown_table_and_unknown_column(sandbox, sandbox_tokens):
    token = sandbox_tokens.user_token()
    table = _post(sandbox, token, {"query": "SecurityResources | count"}).json()["error"]["details"]
    assert table[1]["code"] == "DisallowedLogicalTableName" and "SecurityResources" in table[1]["message"]
    column = _post(sandbox, token, {"query": "Resources | project Name"}).json()["error"]["details"]
    assert column[1]["code"] == "SemanticError" and column[1]["token"] == "Name"


def test_over_long_query_is_refused_before_parsing(sandbox, sandbox_tokens):
    from azure_agent_mcp.sandbox.resourcegraph import MAX_QUERY_LENGTH

    query = "Resources | where name == '" + "x" * MAX_QUERY_LENGTH + "'"
    response = _post(sandbox, sandbox_tokens.user_token(), {"query": query})
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert details[1]["code"] == "QueryTooLong" and str(MAX_QUERY_LENGTH) in details[1]["message"]


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", "InvalidRequestContent"),
    ([1, 2], "InvalidRequestContent"),
    ({"subscriptions": [SUB_A]}, "InvalidQuery"),
    ({"query": 5}, "InvalidQuery"),
    ({"query": "Resources", "subscriptions": "all"}, "InvalidSubscriptions"),
    ({"query": "Resources", "subscriptions": ["not-a-guid"]}, "InvalidSubscriptionId"),
    ({"query": "Resources", "managementGroups": ["mg-unknown"]}, "ManagementGroupNotFound"),
    ({"query": "Resources", "options": {"$top": 0}}, "InvalidTop"),
    ({"query": "Resources", "options": {"$top": 5000}}, "InvalidTop"),
    ({"query": "Resources", "options": {"$skip": -1}}, "InvalidSkip"),
    ({"query": "Resources", "options": {"$skipToken": "!!!"}}, "InvalidSkipToken"),
    ({"query": "Resources", "options": {"resultFormat": "csv"}}, "InvalidResultFormat"),
])
def test_bad_request_bodies_name_the_problem(sandbox, sandbox_tokens, body, code):
    response = _post(sandbox, sandbox_tokens.user_token(), body)
    assert response.status_code == 400
    assert response.json()["error"]["details"][-1]["code"] == code


def test_api_versions_the_sdk_and_the_specs_use(sandbox, sandbox_tokens):
    token = sandbox_tokens.user_token()
    for version in ("2021-03-01", "2022-10-01", "2024-04-01"):
        assert _post(sandbox, token, {"query": "Resources | count"}, api_version=version).status_code == 200
    refused = _post(sandbox, token, {"query": "Resources | count"}, api_version="2030-01-01")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "NoRegisteredProviderFound"


def test_management_group_scope_is_the_tenant_root(sandbox, sandbox_tokens):
    response = _post(sandbox, sandbox_tokens.user_token(),
                     {"query": "Resources | distinct subscriptionId | order by subscriptionId asc",
                      "managementGroups": [sandbox.manifest["tenant_id"]]})
    assert response.json()["data"] == [{"subscriptionId": SUB_A}, {"subscriptionId": SUB_B}]


def test_requests_without_a_token_are_refused(sandbox):
    response = httpx_client(sandbox.manifest).post(sandbox.manifest["arm_endpoint"] + RG_PATH,
                                                   params={"api-version": "2022-10-01"}, json={"query": "Resources"})
    assert response.status_code == 401
