"""The Log Analytics query endpoint in the policy's endpoint table: what maps, what is refused, and why."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azure_agent_mcp.policy import decide_request, load_policy
from azure_agent_mcp.policy.errors import UnmappableRequestError
from azure_agent_mcp.policy.logs_mapping import WORKSPACE_QUERY
from azure_agent_mcp.policy.operations import Endpoints, map_request

ORIGIN = "https://127.0.0.1:8443"
SANDBOX = Endpoints(ORIGIN, ORIGIN + "/vaults/{vault}", ORIGIN + "/loganalytics")
PUBLIC = Endpoints.public_cloud()
SUB = "5a1db0c5-a000-4000-a000-00000000000a"
WORKSPACE = f"/subscriptions/{SUB}/resourceGroups/rg-prod-app/providers/Microsoft.OperationalInsights/workspaces/log-prod"
LOGS = ORIGIN + "/loganalytics/v1"
READ_ONLY = load_policy("read-only")
UNRESTRICTED = load_policy("unrestricted")


@pytest.mark.parametrize("method", ["GET", "POST", "post"])
@pytest.mark.parametrize("endpoints, base", [(SANDBOX, LOGS), (PUBLIC, "https://api.loganalytics.io/v1")])
def test_the_resource_centric_workspace_query_is_workspaces_query_read_at_the_workspace(endpoints, base, method):
    mapped = map_request(method, base + WORKSPACE + "/query", endpoints)
    assert mapped.operation == WORKSPACE_QUERY
    assert mapped.scope == WORKSPACE
    assert mapped.plane == "loganalytics"
    assert mapped.data_action is False  # an Action in azure-docs permissions/monitor.md
    assert mapped.unknown_operation is False
    decision, _ = decide_request(READ_ONLY, endpoints, method, base + WORKSPACE + "/query?query=AppRequests")
    assert decision.effect.value == "allow"


def test_case_of_version_namespace_and_query_does_not_matter_but_scope_keeps_the_id_as_written():
    path = WORKSPACE.replace("Microsoft.OperationalInsights", "microsoft.operationalinsights").replace(
        "workspaces", "Workspaces")
    mapped = map_request("POST", ORIGIN + "/LogAnalytics/V1" + path + "/Query", SANDBOX)
    assert mapped.operation == WORKSPACE_QUERY and mapped.scope == path


def test_a_workspace_guid_names_no_scope_and_is_refused_with_the_way_out():
    url = LOGS + "/workspaces/854f3a9a-7170-5057-94aa-4f78dc4ab345/query"
    with pytest.raises(UnmappableRequestError) as caught:
        map_request("POST", url, SANDBOX)
    assert "resource id" in caught.value.problem and "/v1/subscriptions/" in caught.value.problem
    for policy in (READ_ONLY, UNRESTRICTED):
        decision, mapped = decide_request(policy, SANDBOX, "POST", url)
        assert decision.effect.value == "deny" and mapped is None and decision.rule == "unmappable request"


@pytest.mark.parametrize("method, path, problem", [
    ("POST", "/v1/$batch", "bundles"),
    ("GET", "/v1/workspaces/854f3a9a-7170-5057-94aa-4f78dc4ab345/metadata", "resource id"),
    ("DELETE", "/v1" + WORKSPACE + "/query", "GET or POST"),
    ("PUT", "/v1" + WORKSPACE + "/query", "GET or POST"),
    ("POST", "/v2" + WORKSPACE + "/query", "/v1"),
    ("POST", WORKSPACE + "/query", "/v1"),
    ("GET", "/v1" + WORKSPACE + "/metadata", "not a Log Analytics query path"),
    ("GET", "/v1" + WORKSPACE, "not a Log Analytics query path"),
    ("POST", "/v1/query", "not a Log Analytics query path"),
    ("POST", "/v1/tenants/x/query", "not a subscription"),
    ("POST", f"/v1/subscriptions/{SUB}/resourceGroups/query", "without a group"),
    ("POST", f"/v1/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.Compute/query", "not a resource id"),
    ("POST", f"/v1/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/query", "ends with a type"),
    ("GET", "", "/v1"),
])
def test_other_shapes_on_the_logs_endpoint_are_refused_under_every_policy(method, path, problem):
    url = ORIGIN + "/loganalytics" + path
    with pytest.raises(UnmappableRequestError) as caught:
        map_request(method, url, SANDBOX)
    assert problem in caught.value.problem
    decision, _ = decide_request(UNRESTRICTED, SANDBOX, method, url)
    assert decision.effect.value == "deny"


@pytest.mark.parametrize("scope, operation", [
    (f"/subscriptions/{SUB}", "Microsoft.Resources/subscriptions/query/read"),
    (f"/subscriptions/{SUB}/resourceGroups/rg-prod-app", "Microsoft.Resources/subscriptions/resourceGroups/query/read"),
    (f"/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm",
     "Microsoft.Compute/virtualMachines/query/read"),
    (f"/subscriptions/{SUB}/resourceGroups/g/providers/Contoso.Widgets/widgets/w", "Contoso.Widgets/widgets/query/read"),
    # a workspace dressed up as an extension of a VM is not the workspace query
    (f"/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm/providers/"
     "Microsoft.OperationalInsights/workspaces/w", "Microsoft.OperationalInsights/workspaces/query/read"),
    (WORKSPACE + "/tables/AppRequests", "Microsoft.OperationalInsights/workspaces/tables/query/read"),
])
def test_other_resource_centric_queries_are_unknown_operations_refused_by_read_only(scope, operation):
    url = LOGS + scope + "/query"
    mapped = map_request("POST", url, SANDBOX)
    assert mapped.operation == operation and mapped.scope == scope
    assert mapped.unknown_operation is True
    decision, _ = decide_request(READ_ONLY, SANDBOX, "POST", url)
    assert decision.effect.value == "deny" and decision.rule == "unknown_operation"
    assert "publishes" in decision.reason
    assert decide_request(UNRESTRICTED, SANDBOX, "POST", url)[0].effect.value == "allow"


@pytest.mark.parametrize("path", [
    "/v1" + WORKSPACE + "/query/",
    "/v1" + WORKSPACE + "//query",
    "/v1" + WORKSPACE + "/../log-other/query",
    "/v1" + WORKSPACE + "/./query",
    "/v1" + WORKSPACE + "/%71uery",
    "/v1" + WORKSPACE.replace("/workspaces/log-prod", "/workspaces/log%2Fprod") + "/query",
    "/v1" + WORKSPACE.replace("/workspaces/log-prod", "/workspaces/log%2fprod") + "/query",
    "/v1" + WORKSPACE.replace("log-prod", "log\u00e9prod") + "/query",
    "/v1" + WORKSPACE.replace("log-prod", "log prod") + "/query",
    "/v1" + WORKSPACE + "/query#x",
    "/%2E%2E/v1" + WORKSPACE + "/query",
])
def test_non_canonical_paths_on_the_logs_endpoint_are_refused(path):
    decision, mapped = decide_request(UNRESTRICTED, SANDBOX, "POST", ORIGIN + "/loganalytics" + path)
    assert decision.effect.value == "deny" and mapped is None


@pytest.mark.parametrize("url", [
    "https://api.loganalytics.io:8443/v1" + WORKSPACE + "/query",
    "http://api.loganalytics.io/v1" + WORKSPACE + "/query",
    "https://api.loganalytics.io.evil.example/v1" + WORKSPACE + "/query",
    "https://evil@api.loganalytics.io/v1" + WORKSPACE + "/query",
    "https://api.loganalytics.azure.com/v1" + WORKSPACE + "/query",
])
def test_only_the_configured_logs_origin_is_log_analytics(url):
    decision, mapped = decide_request(UNRESTRICTED, PUBLIC, "POST", url)
    assert decision.effect.value == "deny" and mapped is None


def test_the_sandbox_logs_prefix_is_matched_by_whole_segment():
    # /loganalyticsx/... is ARM's (and no ARM path), not Log Analytics'
    decision, mapped = decide_request(UNRESTRICTED, SANDBOX, "POST", ORIGIN + "/loganalyticsx/v1" + WORKSPACE + "/query")
    assert decision.effect.value == "deny" and mapped is None
    # and the public ARM host does not serve the logs API's paths
    decision, mapped = decide_request(UNRESTRICTED, PUBLIC, "POST", "https://management.azure.com/v1" + WORKSPACE + "/query")
    assert decision.effect.value == "deny" and mapped is None


def test_the_logs_endpoint_cannot_be_the_arm_endpoint():
    with pytest.raises(ValueError, match="cannot be the ARM endpoint"):
        Endpoints(ORIGIN, ORIGIN + "/vaults/{vault}", ORIGIN)


_SEGMENT = st.one_of(
    st.sampled_from(["v1", "V1", "subscriptions", SUB, "resourceGroups", "rg", "providers",
                     "Microsoft.OperationalInsights", "workspaces", "log-prod", "query", "Query", "$batch",
                     "Microsoft.Compute", "virtualMachines", "..", ".", "", "%2F", "%41", "tables"]),
    st.text(alphabet="abcXYZ09-_.~%/\\:@", min_size=0, max_size=6),
)


@settings(max_examples=400, deadline=None)
@given(segments=st.lists(_SEGMENT, min_size=0, max_size=12), method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
def test_the_known_operation_is_granted_only_for_exactly_the_workspace_query_shape(segments, method):
    path = "/loganalytics/" + "/".join(segments)
    try:
        mapped = map_request(method, ORIGIN + path, SANDBOX)
    except UnmappableRequestError:
        return
    if mapped.plane != "loganalytics":
        return
    # what is decided is what is sent: the path recorded is the path given, and the scope is inside it
    assert mapped.path == path
    assert path.lower().startswith("/loganalytics/v1" + mapped.scope.lower() + "/")
    if not mapped.unknown_operation:
        parts = mapped.scope.split("/")
        assert mapped.operation == WORKSPACE_QUERY and method in ("GET", "POST")
        assert len(parts) == 9 and parts[1].lower() == "subscriptions" and parts[3].lower() == "resourcegroups"
        assert parts[5].lower() == "providers" and parts[6].lower() == "microsoft.operationalinsights"
        assert parts[7].lower() == "workspaces" and path.lower().endswith("/query")


def test_policy_explain_knows_the_logs_endpoint(capsys, monkeypatch):
    import json

    monkeypatch.delenv("AZURE_AGENT_MCP_POLICY", raising=False)
    monkeypatch.delenv("AZURE_AGENT_MCP_READ_ONLY", raising=False)
    from azure_agent_mcp.cli import main

    def explain(*argv: str) -> tuple[int, dict]:
        try:
            code = main(["policy", "explain", "--json", *argv])
        except SystemExit as exc:
            code = int(exc.code or 0)
        return code, json.loads(capsys.readouterr().out)

    code, data = explain("--method", "POST", "--url", "https://api.loganalytics.io/v1" + WORKSPACE + "/query")
    assert code == 0 and data["effect"] == "allow" and data["plane"] == "loganalytics"
    assert (data["operation"], data["scope"]) == (WORKSPACE_QUERY, WORKSPACE)
    code, data = explain("--method", "POST", "--logs-endpoint", ORIGIN + "/loganalytics",
                         "--url", LOGS + "/workspaces/854f3a9a-7170-5057-94aa-4f78dc4ab345/query")
    assert code == 3 and data["effect"] == "deny" and "resource id" in data["reason"]
