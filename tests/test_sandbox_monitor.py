"""Azure Monitor in the sandbox: the activity log API and metrics, driven by azure-mgmt-monitor and plain HTTPS."""

from __future__ import annotations

import datetime
import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from conftest import ARM_SCOPE, UserCredential, httpx_client

from azure_agent_mcp.sandbox import metric_series

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
SUB_B = "5a1db0c5-b000-4000-a000-00000000000b"
GROUP = f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app"
NETWORK = f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-network"
VM = f"{NETWORK}/providers/Microsoft.Compute/virtualMachines/vm-worker-01"
STORAGE = f"{GROUP}/providers/Microsoft.Storage/storageAccounts/stprodapp01"
SITE = f"{GROUP}/providers/Microsoft.Web/sites/app-orders-prod"
VALUES = "/providers/Microsoft.Insights/eventtypes/management/values"


def _monitor(sandbox, credential, subscription=SUB_A):
    from azure.mgmt.monitor import MonitorManagementClient

    return MonitorManagementClient(credential, subscription, base_url=sandbox.manifest["arm_endpoint"],
                                   credential_scopes=[ARM_SCOPE], connection_verify=sandbox.manifest["ca_bundle"])


def _arm(sandbox, method, path, token, params=None, body=None, correlation=None):
    headers = {"Authorization": f"Bearer {token}", "x-ms-correlation-request-id": correlation or str(uuid.uuid4())}
    return httpx_client(sandbox.manifest).request(method, sandbox.manifest["arm_endpoint"] + path,
                                                  params=params or {}, headers=headers, json=body)


def _window(minutes=30):
    now = datetime.datetime.now(datetime.timezone.utc)
    start = (now - datetime.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (now + datetime.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"eventTimestamp ge '{start}' and eventTimestamp le '{end}'"


def _put_group(sandbox, token, name, sub=SUB_A, correlation=None):
    response = _arm(sandbox, "PUT", f"/subscriptions/{sub}/resourceGroups/{name}", token,
                    {"api-version": "2022-09-01"}, {"location": "eastus"}, correlation)
    assert response.status_code in (200, 201, 403), response.text
    return response


# -- activity log ----------------------------------------------------------------------------------


def test_the_sdk_lists_what_arm_changed_newest_first(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    token = sandbox_tokens.user_token(session="agent-monitor-1")
    correlation = str(uuid.uuid4())
    _put_group(sandbox, token, "rg-first")
    _put_group(sandbox, token, "rg-second", correlation=correlation)
    _put_group(sandbox, token, "rg-other-sub", sub=SUB_B)
    _arm(sandbox, "GET", GROUP, token, {"api-version": "2022-09-01"})
    monitor = _monitor(sandbox, UserCredential(sandbox_tokens, "developer"))
    events = list(monitor.activity_logs.list(filter=_window()))
    assert [e.resource_group_name for e in events] == ["rg-second", "rg-first"]
    newest = events[0]
    assert newest.correlation_id == correlation
    assert newest.operation_name.value == "Microsoft.Resources/subscriptions/resourceGroups/write"
    assert newest.status.value == "Succeeded" and newest.sub_status.value == "Created"
    assert newest.claims["xms_cli_ses"] == "agent-monitor-1"
    assert newest.caller.startswith("developer@")
    assert newest.event_timestamp.tzinfo is not None
    assert newest.http_request.method == "PUT"
    entry = sandbox.requests(kind="arm")[-1]
    assert entry["operation"] == "Microsoft.Insights/eventtypes/values/read" and entry["status"] == 200


def test_filters_narrow_server_side(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    developer = sandbox_tokens.user_token()
    reader = sandbox_tokens.user_token("reader")
    correlation = str(uuid.uuid4())
    _put_group(sandbox, developer, "rg-one", correlation=correlation)
    _put_group(sandbox, reader, "rg-refused")
    _arm(sandbox, "PATCH", STORAGE, developer, {"api-version": "2023-05-01"}, {"tags": {"a": "b"}})
    monitor = _monitor(sandbox, UserCredential(sandbox_tokens, "developer"))

    def names(extra, select=None):
        return [(e.operation_name.value if e.operation_name else None, e.resource_id)
                for e in monitor.activity_logs.list(filter=_window() + extra, select=select)]

    assert names(f" and correlationId eq '{correlation}'") == [
        ("Microsoft.Resources/subscriptions/resourceGroups/write", f"/subscriptions/{SUB_A}/resourceGroups/rg-one")]
    assert [r for _, r in names(" and status eq 'Failed'")] == [f"/subscriptions/{SUB_A}/resourceGroups/rg-refused"]
    reader_upn = next(u["upn"] for u in sandbox.manifest["users"] if u["name"] == "reader")
    assert [r for _, r in names(f" and caller eq '{reader_upn.upper()}'")] == [
        f"/subscriptions/{SUB_A}/resourceGroups/rg-refused"]
    assert names(" and resourceProvider eq 'microsoft.storage'") == [
        ("Microsoft.Storage/storageAccounts/write", STORAGE)]
    assert names(f" and resourceUri eq '{STORAGE.upper()}'") == [("Microsoft.Storage/storageAccounts/write", STORAGE)]
    assert [r for _, r in names(" and resourceGroupName eq 'rg-prod-app'")] == [STORAGE]
    assert len(names(" and levels eq 'Error,Critical'")) == 1
    selected = list(monitor.activity_logs.list(filter=_window(), select="caller,status"))
    assert len(selected) == 3
    assert all(e.operation_name is None and e.caller and e.status.value for e in selected)
    old = "eventTimestamp ge '2020-01-01T00:00:00Z' and eventTimestamp le '2020-01-02T00:00:00Z'"
    assert list(monitor.activity_logs.list(filter=old)) == []


@pytest.mark.parametrize("query, fragment", [
    ({}, "$filter query parameter is required"),
    ({"$filter": "resourceGroupName eq 'rg-prod-app'"}, "eventTimestamp ge"),
    ({"$filter": "eventTimestamp ge 'yesterday'"}, "'yesterday' is not a valid ISO 8601"),
    ({"$filter": "eventTimestamp ge '2026-01-01T00:00:00Z' and operationName eq 'x'"}, "'operationName eq 'x''"),
    ({"$filter": "eventTimestamp ge '2026-01-01T00:00:00Z' and resourceGroupName eq 'a' and correlationId eq 'b'"},
     "one of resourceGroupName"),
    ({"$filter": "eventTimestamp ge '2026-01-02T00:00:00Z' and eventTimestamp le '2026-01-01T00:00:00Z'"},
     "earlier than"),
    ({"$filter": "eventTimestamp ge '2026-01-01T00:00:00Z'", "$select": "caller,secrets"}, "'secrets'"),
    ({"$filter": "eventTimestamp ge '2026-01-01T00:00:00Z'", "$skiptoken": "!!!"}, "$skiptoken is not valid"),
])
def test_a_bad_filter_is_azures_bad_request_naming_it(sandbox, sandbox_tokens, query, fragment):
    token = sandbox_tokens.user_token()
    response = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}{VALUES}", token, {"api-version": "2015-04-01", **query})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "BadRequest" and fragment in body["message"], body


def test_the_sdk_raises_the_bad_request_with_its_code(sandbox, sandbox_tokens):
    monitor = _monitor(sandbox, UserCredential(sandbox_tokens, "developer"))
    with pytest.raises(HttpResponseError) as raised:
        list(monitor.activity_logs.list(filter="eventTimestamp ge 'soon'"))
    assert raised.value.status_code == 400 and raised.value.error.code == "BadRequest"
    assert "'soon'" in raised.value.error.message


def test_rbac_and_api_version_are_arms(sandbox, sandbox_tokens):
    reader = sandbox_tokens.user_token("reader")
    denied = _arm(sandbox, "GET", f"/subscriptions/{SUB_B}{VALUES}", reader,
                  {"api-version": "2015-04-01", "$filter": _window()})
    assert denied.status_code == 403
    error = denied.json()["error"]
    assert error["code"] == "AuthorizationFailed"
    assert "Microsoft.Insights/eventtypes/values/read" in error["message"] and f"/subscriptions/{SUB_B}'" in \
        error["message"]
    allowed = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}{VALUES}", reader,
                   {"api-version": "2015-04-01", "$filter": _window()})
    assert allowed.status_code == 200
    version = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}{VALUES}", reader,
                   {"api-version": "2019-01-01", "$filter": _window()})
    assert version.status_code == 400 and version.json()["error"]["code"] == "NoRegisteredProviderFound"


def test_pages_link_with_next_link_and_never_repeat(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    token = sandbox_tokens.user_token()
    for i in range(205):
        response = _arm(sandbox, "PATCH", GROUP, token, {"api-version": "2022-09-01"}, {"tags": {"n": str(i)}})
        assert response.status_code == 200
    first = _arm(sandbox, "GET", f"/subscriptions/{SUB_A}{VALUES}", token,
                 {"api-version": "2015-04-01", "$filter": _window()}).json()
    assert len(first["value"]) == 200 and first["nextLink"].startswith(sandbox.manifest["arm_endpoint"])
    # an event arriving between the pages goes to the front and does not shift the second page
    _arm(sandbox, "PATCH", GROUP, token, {"api-version": "2022-09-01"}, {"tags": {"n": "late"}})
    second = httpx_client(sandbox.manifest).get(first["nextLink"], headers={"Authorization": f"Bearer {token}"}).json()
    assert len(second["value"]) == 5 and "nextLink" not in second
    ids = [e["eventDataId"] for e in first["value"] + second["value"]]
    assert len(set(ids)) == 205
    monitor = _monitor(sandbox, UserCredential(sandbox_tokens, "developer"))
    assert len(list(monitor.activity_logs.list(filter=_window()))) == 206


# -- metrics ---------------------------------------------------------------------------------------

# Yesterday 10:00-11:00 UTC: within the retention, and the same hour all day long.
YESTERDAY = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).replace(
    hour=10, minute=0, second=0, microsecond=0)
SPAN = f"{YESTERDAY:%Y-%m-%dT%H:%M:%SZ}/{YESTERDAY + datetime.timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"


def _expected(resource_id, metric, start_minute, minutes):
    spec = next(s for s in metric_series.metrics_for(resource_id.split("/providers/")[1].rsplit("/", 1)[0])
                if s.name == metric)
    return metric_series.bucket(resource_id, spec, start_minute, minutes)


def test_metric_definitions_of_a_vm_through_the_sdk(sandbox, developer_credential):
    monitor = _monitor(sandbox, developer_credential)
    definitions = {d.name.value: d for d in monitor.metric_definitions.list(VM)}
    assert set(definitions) == {"Percentage CPU", "Network In Total", "Available Memory Bytes"}
    cpu = definitions["Percentage CPU"]
    assert cpu.unit == "Percent" and cpu.primary_aggregation_type == "Average"
    assert "Maximum" in cpu.supported_aggregation_types
    assert datetime.timedelta(minutes=1) in [a.time_grain for a in cpu.metric_availabilities]
    storage = {d.name.value: d for d in monitor.metric_definitions.list(STORAGE)}
    assert [a.time_grain for a in storage["UsedCapacity"].metric_availabilities] == [datetime.timedelta(hours=1)]
    entry = sandbox.requests(kind="arm")[-1]
    assert entry["operation"] == "Microsoft.Insights/metricDefinitions/read"


def test_metric_values_are_deterministic_and_aggregate_their_minutes(sandbox, developer_credential):
    monitor = _monitor(sandbox, developer_credential)
    answer = monitor.metrics.list(VM, timespan=SPAN, interval="PT5M", metricnames="Percentage CPU,Network In Total",
                                  aggregation="Average,Maximum,Total")
    assert answer.interval == "PT5M" and answer.namespace == "Microsoft.Compute/virtualMachines"
    cpu, network = answer.value
    assert cpu.name.value == "Percentage CPU" and cpu.unit == "Percent"
    points = cpu.timeseries[0].data
    assert len(points) == 12
    start_minute = int(YESTERDAY.timestamp()) // 60
    for i, point in enumerate(points):
        expected = _expected(VM, "Percentage CPU", start_minute + 5 * i, 5)
        assert point.time_stamp == YESTERDAY + datetime.timedelta(minutes=5 * i)
        assert (point.average, point.maximum, point.total) == (expected["average"], expected["maximum"],
                                                               expected["total"])
        assert point.minimum is None and point.count is None
    assert all(p.average > 90 for p in points), "vm-worker-01's CPU is pegged"
    assert all(float(p.total).is_integer() for p in network.timeseries[0].data)
    again = monitor.metrics.list(VM, timespan=SPAN, interval="PT5M", metricnames="Percentage CPU",
                                 aggregation="Average,Maximum,Total")
    assert [p.average for p in again.value[0].timeseries[0].data] == [p.average for p in points]


def test_metric_defaults_and_the_web_apps_errors(sandbox, developer_credential):
    monitor = _monitor(sandbox, developer_credential)
    answer = monitor.metrics.list(SITE, timespan=SPAN, metricnames="Http5xx,Requests")
    assert answer.interval == "PT1M"
    errors, requests = answer.value
    assert len(errors.timeseries[0].data) == 60
    assert sum(p.total for p in errors.timeseries[0].data) > 0
    assert all(p.average is None for p in requests.timeseries[0].data), "the primary aggregation only (Total)"
    latest = monitor.metrics.list(STORAGE, metricnames="UsedCapacity", interval="PT1H")
    assert latest.value[0].timeseries[0].data and latest.value[0].unit == "Bytes"


@pytest.mark.parametrize("params, fragment", [
    ({"timespan": "yesterday"}, "'startDateTime_ISO/endDateTime_ISO'"),
    ({"timespan": "2026-11-01T10:00:00Z/soon"}, "'soon' is not a valid ISO 8601"),
    ({"timespan": "2026-03-01T11:00:00Z/2026-03-01T10:00:00Z"}, "ends before it starts"),
    ({"timespan": SPAN, "interval": "1m"}, "'1m' is not an ISO 8601 duration"),
    ({"timespan": SPAN, "interval": "PT30S"}, "not a time grain"),
    ({"timespan": SPAN, "metricnames": "Percentage CPU,Disk Magic"}, "metric: Disk Magic, Valid metrics: Percentage"),
    ({"timespan": SPAN, "aggregation": "Average,Median"}, "Invalid aggregation type 'Median'"),
    ({"timespan": "2026-01-01T00:00:00Z/2026-03-01T00:00:00Z", "interval": "PT1M"}, "the limit is 1440"),
])
def test_bad_metric_parameters_are_bad_requests_naming_them(sandbox, sandbox_tokens, params, fragment):
    token = sandbox_tokens.user_token()
    response = _arm(sandbox, "GET", f"{VM}/providers/Microsoft.Insights/metrics", token,
                    {"api-version": "2018-01-01", **params})
    assert response.status_code == 400
    assert response.json()["code"] == "BadRequest" and fragment in response.json()["message"], response.json()


def test_used_capacity_has_an_hourly_grain_only(sandbox, sandbox_tokens):
    token = sandbox_tokens.user_token()
    response = _arm(sandbox, "GET", f"{STORAGE}/providers/Microsoft.Insights/metrics", token,
                    {"api-version": "2024-02-01", "timespan": SPAN, "metricnames": "UsedCapacity", "interval": "PT1M"})
    assert response.status_code == 400 and "time grains are PT1H" in response.json()["message"]


def test_metrics_check_rbac_at_the_resource_and_that_it_exists(sandbox, sandbox_tokens):
    reader = sandbox_tokens.user_token("reader")
    dev_vm = (f"/subscriptions/{SUB_B}/resourceGroups/rg-dev-sandbox/providers/Microsoft.Compute/virtualMachines/vm-dev-01")
    denied = _arm(sandbox, "GET", f"{dev_vm}/providers/Microsoft.Insights/metrics", reader,
                  {"api-version": "2018-01-01", "timespan": SPAN})
    assert denied.status_code == 403
    assert "Microsoft.Insights/metrics/read" in denied.json()["error"]["message"]
    definitions = _arm(sandbox, "GET", f"{dev_vm}/providers/Microsoft.Insights/metricDefinitions", reader,
                       {"api-version": "2018-01-01"})
    assert definitions.status_code == 403
    assert "Microsoft.Insights/metricDefinitions/read" in definitions.json()["error"]["message"]
    token = sandbox_tokens.user_token()
    missing = _arm(sandbox, "GET", f"{NETWORK}/providers/Microsoft.Compute/virtualMachines/vm-nope/providers/"
                   "Microsoft.Insights/metrics", token, {"api-version": "2018-01-01", "timespan": SPAN})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
    assert sandbox.state.activity.events() == [] or all(
        e["httpRequest"]["method"] != "GET" for e in sandbox.state.activity.events()), "metric reads are not activity"
