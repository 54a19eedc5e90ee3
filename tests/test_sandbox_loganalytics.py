"""The sandbox's Log Analytics query API, spoken to with azure-monitor-query's LogsQueryClient and plain HTTPS."""

from __future__ import annotations

import datetime
import json
import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryClient, LogsQueryStatus
from conftest import ARM_SCOPE, SandboxTokens, UserCredential, decode_claims, httpx_client

from azure_agent_mcp.sandbox.timespans import TimespanError, parse_timespan

LOGS_SCOPE = "https://api.loganalytics.io/.default"
HOUR = datetime.timedelta(hours=1)


def _client(sandbox, user: str = "developer", session: str | None = None) -> LogsQueryClient:
    credential = UserCredential(SandboxTokens(sandbox.manifest), user, session=session)
    return LogsQueryClient(credential, endpoint=sandbox.manifest["logs_endpoint"], credential_scopes=[LOGS_SCOPE],
                           connection_verify=sandbox.manifest["ca_bundle"], retry_total=0)


def _workspace(sandbox, name: str) -> dict:
    return next(w for w in sandbox.manifest["workspaces"] if w["name"] == name)


def _error(exc: HttpResponseError) -> dict:
    return json.loads(exc.response.text())["error"]


def _rows(result) -> list[dict]:
    table = result.tables[0]
    return [dict(zip(table.columns, row)) for row in table.rows]


def test_the_manifest_names_the_endpoint_audience_and_workspaces(sandbox):
    manifest = sandbox.manifest
    assert manifest["logs_endpoint"] == manifest["arm_endpoint"] + "/loganalytics"
    assert manifest["logs_audience"] == "https://api.loganalytics.io"
    names = {w["name"] for w in manifest["workspaces"]}
    assert names == {"log-sandbox-prod", "log-sandbox-dev"}
    for workspace in manifest["workspaces"]:
        uuid.UUID(workspace["customer_id"])
    env = sandbox.environment()
    assert env.logs_endpoint == manifest["logs_endpoint"] and env.logs_scope == LOGS_SCOPE


def test_entra_issues_tokens_for_log_analytics(sandbox_tokens):
    claims = decode_claims(sandbox_tokens.user_token("developer", LOGS_SCOPE))
    assert claims["aud"] == "https://api.loganalytics.io"


def test_app_requests_answer_why_the_app_returns_500s(sandbox):
    workspace = _workspace(sandbox, "log-sandbox-prod")
    result = _client(sandbox).query_resource(
        workspace["id"], "AppRequests | where ResultCode == '500' | summarize failures = count() by Name, AppRoleName",
        timespan=HOUR)
    assert result.status == LogsQueryStatus.SUCCESS
    table = result.tables[0]
    assert table.name == "PrimaryResult" and table.columns == ["Name", "AppRoleName", "failures"]
    assert table.columns_types == ["string", "string", "long"]
    rows = _rows(result)
    assert [(r["Name"], r["AppRoleName"]) for r in rows] == [("POST /api/orders", "app-orders-prod")]
    assert rows[0]["failures"] >= 5
    # they are slow too (the database times out), and none happened before the last hour
    slow = _rows(_client(sandbox).query_resource(
        workspace["id"], "AppRequests | where ResultCode == '500' and DurationMs < 2000 | count", timespan=HOUR))
    assert slow == [{"Count": 0}]
    earlier = _rows(_client(sandbox).query_resource(
        workspace["id"], "AppRequests | where ResultCode == '500' | count",
        timespan=(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=20), HOUR)))
    assert earlier == [{"Count": 0}]


def test_datetimes_come_back_as_datetimes_and_the_timespan_filters_time_generated(sandbox):
    workspace = _workspace(sandbox, "log-sandbox-prod")
    client = _client(sandbox)
    day = _rows(client.query_resource(workspace["id"], "AppRequests | count", timespan=datetime.timedelta(days=2)))
    hour = _rows(client.query_resource(workspace["id"], "AppRequests | count", timespan=HOUR))
    assert day == [{"Count": 720}] and 25 <= hour[0]["Count"] <= 31
    newest = client.query_resource(workspace["id"], "AppRequests | top 1 by TimeGenerated | project TimeGenerated, Url",
                                   timespan=HOUR)
    at = _rows(newest)[0]["TimeGenerated"]
    assert isinstance(at, datetime.datetime) and at.tzinfo is not None
    assert datetime.datetime.now(datetime.timezone.utc) - at < datetime.timedelta(hours=1)
    # the dev workspace holds the dev app's requests, and no 500s
    dev = _workspace(sandbox, "log-sandbox-dev")
    names = _rows(client.query_resource(dev["id"], "AppRequests | distinct AppRoleName", timespan=None))
    assert names == [{"AppRoleName": "app-orders-dev"}]


def test_the_guid_form_answers_like_the_resource_form(sandbox):
    workspace = _workspace(sandbox, "log-sandbox-prod")
    client = _client(sandbox)
    by_guid = client.query_workspace(workspace["customer_id"], "AppRequests | count", timespan=None)
    by_id = client.query_resource(workspace["id"], "AppRequests | count", timespan=None)
    assert _rows(by_guid) == _rows(by_id) == [{"Count": 720}]
    with pytest.raises(HttpResponseError) as caught:
        client.query_workspace(str(uuid.uuid4()), "AppRequests | count", timespan=None)
    assert caught.value.status_code == 404 and _error(caught.value)["code"] == "WorkspaceNotFoundError"


def test_azure_activity_holds_what_arm_logged_with_the_agent_session(sandbox, sandbox_tokens):
    session = f"logs-{uuid.uuid4().hex[:8]}"
    sub = sandbox.manifest["subscriptions"][0]["id"]
    group = f"rg-logs-{uuid.uuid4().hex[:6]}"
    http = httpx_client(sandbox.manifest)
    token = sandbox_tokens.user_token("developer", ARM_SCOPE, session=session)
    correlation = str(uuid.uuid4())
    url = f"{sandbox.manifest['arm_endpoint']}/subscriptions/{sub}/resourcegroups/{group}?api-version=2022-09-01"
    headers = {"authorization": f"Bearer {token}", "x-ms-correlation-request-id": correlation}
    try:
        assert http.put(url, json={"location": "eastus"}, headers=headers).status_code in (200, 201)
        workspace = _workspace(sandbox, "log-sandbox-prod")
        result = _client(sandbox).query_resource(
            workspace["id"],
            f"AzureActivity | where CorrelationId == '{correlation}' | project TimeGenerated, OperationNameValue, "
            "Caller, ActivityStatusValue, ResourceGroup, _ResourceId, Claims_d, CategoryValue, Level",
            timespan=HOUR)
        rows = _rows(result)
        assert len(rows) == 1
        row = rows[0]
        assert row["OperationNameValue"] == "MICROSOFT.RESOURCES/SUBSCRIPTIONS/RESOURCEGROUPS/WRITE"
        assert row["Caller"] == "developer@sandbox.onmicrosoft.com"
        assert row["ActivityStatusValue"] == "Success" and row["CategoryValue"] == "Administrative"
        assert row["ResourceGroup"] == group.upper()
        assert row["_ResourceId"] == f"/subscriptions/{sub}/resourcegroups/{group}".lower()
        claims = json.loads(row["Claims_d"])  # dynamic comes back as Log Analytics writes it: JSON text
        assert claims["xms_cli_ses"] == session
        assert token not in json.dumps(rows, default=str)
        # the other subscription's workspace does not see it
        dev = _workspace(sandbox, "log-sandbox-dev")
        other = _client(sandbox).query_resource(dev["id"], f"AzureActivity | where CorrelationId == '{correlation}'",
                                                timespan=HOUR)
        assert _rows(other) == []
    finally:
        http.delete(url, headers={"authorization": f"Bearer {token}"})


def test_a_workspace_the_caller_cannot_read_is_log_analytics_403(sandbox):
    dev = _workspace(sandbox, "log-sandbox-dev")  # reader has Reader on subscription A only
    with pytest.raises(HttpResponseError) as caught:
        _client(sandbox, "reader").query_resource(dev["id"], "AppRequests | take 1", timespan=None)
    error = _error(caught.value)
    assert caught.value.status_code == 403 and error["code"] == "InsufficientAccessError"
    assert error["innererror"]["code"] == "AuthorizationFailedError"
    assert "workspaces/query/read" in error["innererror"]["message"] and dev["id"] in error["innererror"]["message"]
    prod = _workspace(sandbox, "log-sandbox-prod")
    assert _rows(_client(sandbox, "reader").query_resource(prod["id"], "AppRequests | count", timespan=None))


@pytest.mark.parametrize("query, inner, innermost, names", [
    ("AppRequests | whre ResultCode == '500'", "SyntaxError", "SYN0002", "whre"),
    ("AppRequests | where ResultCode == ", "SyntaxError", "SYN0002", None),
    ("AppRequests | join (AzureActivity) on CorrelationId", "SemanticError", "SEM0002", "join"),
    ("AppRequests | where NoSuchColumn == 1", "SemanticError", "SEM0100", "NoSuchColumn"),
    ("NoSuchTable | take 1", "SemanticError", "SEM0100", "NoSuchTable"),
])
def test_kql_errors_are_bad_argument_errors_naming_the_problem(sandbox, query, inner, innermost, names):
    workspace = _workspace(sandbox, "log-sandbox-prod")
    with pytest.raises(HttpResponseError) as caught:
        _client(sandbox).query_resource(workspace["id"], query, timespan=None)
    error = _error(caught.value)
    assert caught.value.status_code == 400
    assert (error["code"], error["message"]) == ("BadArgumentError", "The request had some invalid properties")
    assert error["innererror"]["code"] == inner
    detail = error["innererror"]["innererror"]
    assert detail["code"] == innermost and detail["line"] == 1 and isinstance(detail["pos"], int)
    if names:
        assert names in detail["message"]


def test_bad_timespans_long_queries_and_bodies_are_refused_in_log_analytics_shape(sandbox, sandbox_tokens):
    workspace = _workspace(sandbox, "log-sandbox-prod")
    url = f"{sandbox.manifest['logs_endpoint']}/v1{workspace['id']}/query"
    headers = {"authorization": f"Bearer {sandbox_tokens.user_token('developer', LOGS_SCOPE)}"}
    http = httpx_client(sandbox.manifest)
    for body, inner in [
        ({"query": "AppRequests | take 1", "timespan": "yesterday"}, "InvalidTimespan"),
        ({"query": "AppRequests | take 1", "timespan": "2026-12-02T00:00:00Z/2026-12-01T00:00:00Z"}, "InvalidTimespan"),
        ({"query": "AppRequests | take 1 " + "//" + "x" * 70_000}, "QueryTooLong"),
        ({"timespan": "PT1H"}, "MissingQuery"),
        ({"query": "AppRequests", "workspaces": ["other"]}, "UnsupportedProperty"),
    ]:
        response = http.post(url, json=body, headers=headers)
        error = response.json()["error"]
        assert response.status_code == 400 and error["code"] == "BadArgumentError", body
        assert error["innererror"]["code"] == inner
    # GET with ?query= works like POST
    response = http.get(url, params={"query": "AppRequests | count", "timespan": "P2D"}, headers=headers)
    assert response.status_code == 200 and response.json()["tables"][0]["rows"] == [[720]]
    missing = http.post(url.replace("log-sandbox-prod", "log-nope"), json={"query": "AppRequests"}, headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFoundError"
    other = http.post(f"{sandbox.manifest['logs_endpoint']}/v1/nothing/here", json={}, headers=headers)
    assert other.status_code == 404 and other.json()["error"]["code"] == "PathNotFoundError"


def test_only_log_analytics_tokens_open_log_analytics_and_they_open_nothing_else(sandbox, sandbox_tokens):
    workspace = _workspace(sandbox, "log-sandbox-prod")
    url = f"{sandbox.manifest['logs_endpoint']}/v1{workspace['id']}/query"
    http = httpx_client(sandbox.manifest)
    arm_token = sandbox_tokens.user_token("developer", ARM_SCOPE)
    refused = http.post(url, json={"query": "AppRequests"}, headers={"authorization": f"Bearer {arm_token}"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    anonymous = http.post(url, json={"query": "AppRequests"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AuthenticationFailed"
    assert "bearer" in anonymous.headers["www-authenticate"].lower()
    logs_token = sandbox_tokens.user_token("developer", LOGS_SCOPE)
    sub = sandbox.manifest["subscriptions"][0]["id"]
    arm = http.get(f"{sandbox.manifest['arm_endpoint']}/subscriptions/{sub}/resourcegroups?api-version=2022-09-01",
                   headers={"authorization": f"Bearer {logs_token}"})
    assert arm.status_code == 401 and "audience" in arm.text.lower()
    vault = sandbox.manifest["vaults"][0]["url"]
    kv = http.get(f"{vault}/secrets?api-version=7.5", headers={"authorization": f"Bearer {logs_token}"})
    assert kv.status_code == 401


def test_a_result_over_the_record_limit_is_a_partial_error(fresh_sandbox_state):
    sandbox = fresh_sandbox_state
    sandbox.set_logs_record_limit(25)
    workspace = _workspace(sandbox, "log-sandbox-prod")
    result = _client(sandbox).query_resource(workspace["id"], "AppRequests | project TimeGenerated, Name", timespan=None)
    assert result.status == LogsQueryStatus.PARTIAL
    assert len(result.partial_data[0].rows) == 25
    assert result.partial_error.code == "PartialError"
    assert "record count limit 25" in json.dumps(result.partial_error.details, default=dict)
    sandbox.reset()
    again = _client(sandbox).query_resource(workspace["id"], "AppRequests | count", timespan=None)
    assert again.status == LogsQueryStatus.SUCCESS


def test_the_journal_records_log_queries_with_operation_scope_and_session(sandbox):
    session = f"journal-{uuid.uuid4().hex[:8]}"
    since = sandbox.last_seq()
    workspace = _workspace(sandbox, "log-sandbox-prod")
    _client(sandbox, session=session).query_resource(workspace["id"], "AppRequests | take 1", timespan=HOUR)
    entries = sandbox.requests(kind="logs", since=since)
    assert [(e["method"], e["status"], e["operation"], e["scope"], e["token_session"]) for e in entries] == [
        ("POST", 200, "Microsoft.OperationalInsights/workspaces/query/read", workspace["id"], session)]


@pytest.mark.parametrize("text, hours", [
    ("PT1H", 1), ("PT3600.0S", 1), ("P1D", 24), ("P1DT12H", 36), ("PT90M", 1.5), ("P1W", 168),
    ("2026-12-01T00:00:00Z/2026-12-01T06:00:00Z", 6), ("2026-12-01T00:00:00.000Z/PT6H", 6),
    ("PT6H/2026-12-01T06:00:00Z", 6),
])
def test_sandbox_timespans(text, hours):
    now = datetime.datetime(2026, 12, 1, 12, tzinfo=datetime.timezone.utc)
    start, end = parse_timespan(text, now)
    assert end - start == datetime.timedelta(hours=hours)


@pytest.mark.parametrize("text", ["", "P", "PT", "1H", "P1H", "PT1D", "yesterday", "2026-13-01T00:00:00Z/PT1H",
                                  "2026-12-02T00:00:00Z/2026-12-01T00:00:00Z"])
def test_sandbox_timespans_refused(text):
    with pytest.raises(TimespanError):
        parse_timespan(text, datetime.datetime.now(datetime.timezone.utc))
