"""activity_log_list, metrics_list and metrics_get through `serve` over stdio, with the official MCP client."""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client, StdioServerParameters
from server_helpers import audit_records

from azure_agent_mcp.sandbox import metric_series

pytestmark = pytest.mark.anyio

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
NETWORK = f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-network"
VM = f"{NETWORK}/providers/Microsoft.Compute/virtualMachines/vm-worker-01"
SITE = f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app/providers/Microsoft.Web/sites/app-orders-prod"
YESTERDAY = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).replace(
    hour=9, minute=0, second=0, microsecond=0)
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.")
SPAN = f"{YESTERDAY:%Y-%m-%dT%H:%M:%SZ}/{YESTERDAY + datetime.timedelta(minutes=30):%Y-%m-%dT%H:%M:%SZ}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _params(sandbox, tmp_path: Path, session: str, *extra: str, **env_extra: str) -> StdioServerParameters:
    env = dict(os.environ)
    env["AZURE_AGENT_MCP_STATE_DIR"] = str(tmp_path / "state")
    for key in ("AZURE_AGENT_MCP_POLICY", "AZURE_AGENT_MCP_READ_ONLY", "AZURE_AGENT_MCP_AUDIT_LOG"):
        env.pop(key, None)
    env["COPILOT_AGENT_SESSION_ID"] = session
    env.update(env_extra)
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "azure_agent_mcp", "serve", "--sandbox", str(sandbox.manifest_path), "--audit-log",
              str(tmp_path / "audit.jsonl"), *extra],
        env=env,
    )


class Checked:
    """Calls tools and validates every structuredContent against the tool's outputSchema (where it has one)."""

    def __init__(self, client: Client, schemas: dict[str, Any]) -> None:
        self.client = client
        self.schemas = schemas

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        result = await self.client.call_tool(name, arguments)
        if not result.is_error and name in self.schemas:
            jsonschema.validate(result.structured_content, self.schemas[name])
        return result


async def _checked(client: Client) -> Checked:
    listed = await client.list_tools()
    return Checked(client, {t.name: t.output_schema for t in listed.tools if t.output_schema})


def _tool_correlation(tmp_path: Path, tool: str) -> str:
    [record] = [r for r in audit_records(tmp_path / "audit.jsonl", "tool") if r.get("tool") == tool]
    return record["correlation_id"]


async def test_the_activity_log_shows_what_this_agent_session_did(fresh_sandbox_state, sandbox_tokens, tmp_path):
    sandbox = fresh_sandbox_state
    session = f"activity-{uuid.uuid4().hex[:8]}"
    group = f"rg-agent-{uuid.uuid4().hex[:6]}"
    async with Client(_params(sandbox, tmp_path, session, "--policy", "unrestricted")) as client:
        tools = await _checked(client)
        made = await tools.call("group_create", {"name": group, "location": "westeurope", "subscription": SUB_A})
        assert not made.is_error, made.content
        who = await tools.call("whoami", {})
        since = sandbox.last_seq()
        listed = await tools.call("activity_log_list", {"resource_group": group, "timespan": "PT1H"})
    assert not listed.is_error, listed.content
    [event] = listed.structured_content["items"]
    assert event["operation"] == "Microsoft.Resources/subscriptions/resourceGroups/write"
    assert event["status"] == "Succeeded" and event["sub_status"] == "Created"
    assert event["resource_id"] == f"/subscriptions/{SUB_A}/resourceGroups/{group}"
    assert event["agent_session"] == session
    assert event["correlation_id"] == _tool_correlation(tmp_path, "group_create")
    identity = json.dumps(who.structured_content)
    assert event["caller"] and event["caller"] in identity
    # No token anywhere the agent or the audit sees: not in the result, not in the audit's bytes.
    audit_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("audit.jsonl*") if p.is_file())
    assert JWT.search(sandbox_tokens.user_token().encode()), "the pattern finds a real token"
    for captured in (json.dumps(listed.structured_content).encode(), audit_bytes):
        assert not JWT.search(captured)
    # What the tool sent: one activity log read, filtered in Azure by the group and a window.
    [sent] = [e for e in sandbox.requests(kind="arm", since=since) if e["token_session"] == session]
    assert sent["operation"] == "Microsoft.Insights/eventtypes/values/read" and sent["status"] == 200
    assert f"resourceGroupName eq '{group}'" in sent["query"]["$filter"]
    assert sent["query"]["$filter"].startswith("eventTimestamp ge '")
    assert sent["correlation_id"] == _tool_correlation(tmp_path, "activity_log_list")


async def test_filters_and_continuation_under_read_only(fresh_sandbox_state, sandbox_tokens, tmp_path):
    sandbox = fresh_sandbox_state
    developer = sandbox_tokens.user_token(session="other-session")
    client_http = __import__("conftest").httpx_client(sandbox.manifest)
    base = sandbox.manifest["arm_endpoint"]
    for name in ("rg-f1", "rg-f2", "rg-f3"):
        response = client_http.put(f"{base}/subscriptions/{SUB_A}/resourceGroups/{name}",
                                   params={"api-version": "2022-09-01"}, json={"location": "eastus"},
                                   headers={"Authorization": f"Bearer {developer}"})
        assert response.status_code == 201
    refused = client_http.put(f"{base}/subscriptions/{SUB_A}/resourceGroups/rg-f4", params={"api-version": "2022-09-01"},
                              json={}, headers={"Authorization": f"Bearer {developer}"})
    assert refused.status_code == 400
    tagged = client_http.patch(f"{base}{SITE}", params={"api-version": "2023-12-01"}, json={"tags": {"x": "y"}},
                               headers={"Authorization": f"Bearer {developer}"})
    assert tagged.status_code == 200
    session = f"filters-{uuid.uuid4().hex[:8]}"
    async with Client(_params(sandbox, tmp_path, session)) as client:
        tools = await _checked(client)
        first = await tools.call("activity_log_list", {"top": 2})
        assert not first.is_error, first.content
        assert [e["resource_id"].rsplit("/", 1)[1] for e in first.structured_content["items"]] == [
            "app-orders-prod", "rg-f4"]
        token = first.structured_content["continuation"]
        assert token
        second = await tools.call("activity_log_list", {"top": 2, "continuation": token})
        assert [e["resource_id"].rsplit("/", 1)[1] for e in second.structured_content["items"]] == ["rg-f3", "rg-f2"]
        third = await tools.call("activity_log_list", {"top": 2, "continuation": second.structured_content["continuation"]})
        assert [e["resource_id"].rsplit("/", 1)[1] for e in third.structured_content["items"]] == ["rg-f1"]
        assert third.structured_content["continuation"] is None

        failed = await tools.call("activity_log_list", {"status": "Failed"})
        [bad] = failed.structured_content["items"]
        assert bad["resource_id"].endswith("/rg-f4") and bad["error_code"] == "LocationRequired"
        assert bad["agent_session"] == "other-session"

        writes = await tools.call("activity_log_list", {"operation": "microsoft.web/*"})
        assert [e["operation"] for e in writes.structured_content["items"]] == ["Microsoft.Web/sites/write"]
        one = await tools.call("activity_log_list", {"resource_id": SITE})
        assert [e["resource_id"] for e in one.structured_content["items"]] == [SITE]
        upn = next(u["upn"] for u in sandbox.manifest["users"] if u["name"] == "developer")
        by_caller = await tools.call("activity_log_list", {"caller": upn, "top": 200})
        assert len(by_caller.structured_content["items"]) == 5
        nobody = await tools.call("activity_log_list", {"caller": "nobody@example.com"})
        assert nobody.structured_content["items"] == []
        old = await tools.call("activity_log_list", {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"})
        assert old.structured_content["items"] == []

        forged = await tools.call("activity_log_list", {"continuation": token[:-2] + "xx"})
        assert forged.is_error and forged.structured_content["error"]["code"] == "InvalidContinuation"
        elsewhere = await tools.call("activity_log_list", {"resource_id": VM.replace(SUB_A, "5a1db0c5-b000-4000-a000-00000000000b")})
        assert elsewhere.is_error and "not in" in elsewhere.structured_content["error"]["message"]


BAD_TIME_ARGUMENTS = [
    ("activity_log_list", {"timespan": "1h"}, "ISO 8601 duration"),
    ("activity_log_list", {"start": "yesterday"}, "ISO 8601 date-time"),
    ("activity_log_list", {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "before it starts"),
    ("activity_log_list", {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "timespan": "P1D"},
     "at most two"),
    ("metrics_get", {"resource_id": VM, "timespan": "last hour"}, "ISO 8601 duration"),
    ("metrics_get", {"resource_id": VM, "interval": "1 minute"}, "ISO 8601 duration"),
    ("metrics_get", {"resource_id": VM, "interval": "PT30S"}, "shorter than a minute"),
    ("metrics_get", {"resource_id": VM, "timespan": "P30D"}, "the limit is 1440"),
    ("metrics_get", {"resource_id": f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app"}, "belong to a resource"),
]


async def test_bad_time_arguments_are_refused_before_anything_is_sent(sandbox, tmp_path):
    session = f"badtime-{uuid.uuid4().hex[:8]}"
    since = sandbox.last_seq()
    async with Client(_params(sandbox, tmp_path, session)) as client:
        for tool, arguments, fragment in BAD_TIME_ARGUMENTS:
            result = await client.call_tool(tool, arguments)
            assert result.is_error, (tool, arguments)
            error = result.structured_content["error"]
            assert error["code"] == "InvalidArgument" and fragment in error["message"], (arguments, error)
            assert error["hint"]
        alive = await client.call_tool("whoami", {})  # the server keeps serving
        assert not alive.is_error
    assert [e for e in sandbox.requests(kind="arm", since=since) if e.get("token_session") == session] == []


async def test_metrics_definitions_and_deterministic_values(sandbox, tmp_path):
    session = f"metrics-{uuid.uuid4().hex[:8]}"
    arguments = {"resource_id": VM, "metric_names": ["Percentage CPU"], "timespan": SPAN, "interval": "PT5M",
                 "aggregation": ["Average", "Maximum"]}
    async with Client(_params(sandbox, tmp_path, session)) as client:
        tools = await _checked(client)
        definitions = await tools.call("metrics_list", {"resource_id": VM})
        assert not definitions.is_error, definitions.content
        names = {d["name"]: d for d in definitions.structured_content["items"]}
        assert set(names) == {"Percentage CPU", "Network In Total", "Available Memory Bytes"}
        assert names["Percentage CPU"]["unit"] == "Percent" and "PT1M" in names["Percentage CPU"]["intervals"]
        first = await tools.call("metrics_get", arguments)
        second = await tools.call("metrics_get", arguments)
        site = await tools.call("metrics_get", {"resource_id": SITE, "metric_names": ["Http5xx"], "timespan": SPAN})
        default = await tools.call("metrics_get", {"resource_id": VM})
        unknown = await tools.call("metrics_get", {"resource_id": VM, "metric_names": ["Disk Magic"], "timespan": SPAN})
    assert unknown.is_error  # Azure's 400, passed on with its code and message
    error = unknown.structured_content["error"]
    assert error["code"] == "BadRequest" and error["status"] == 400
    assert "Disk Magic" in error["message"] and "Percentage CPU" in error["message"]
    assert not first.is_error, first.content
    assert first.structured_content == second.structured_content
    [cpu] = first.structured_content["metrics"]
    assert cpu["name"] == "Percentage CPU" and cpu["unit"] == "Percent" and len(cpu["points"]) == 6
    spec = next(s for s in metric_series.metrics_for("Microsoft.Compute/virtualMachines") if s.name == "Percentage CPU")
    start_minute = int(YESTERDAY.timestamp()) // 60
    for i, point in enumerate(cpu["points"]):
        expected = metric_series.bucket(VM, spec, start_minute + 5 * i, 5)
        assert point == {"time": f"{YESTERDAY + datetime.timedelta(minutes=5 * i):%Y-%m-%dT%H:%M:%SZ}",
                         "average": expected["average"], "maximum": expected["maximum"]}
    assert min(p["average"] for p in cpu["points"]) > 90, "vm-worker-01 is pegged"
    [errors] = site.structured_content["metrics"]
    assert len(errors["points"]) == 30 and sum(p["total"] for p in errors["points"]) > 0
    assert default.structured_content["interval"] == "PT1M"
    assert [m["name"] for m in default.structured_content["metrics"]] == ["Percentage CPU"]
    sent = [e for e in sandbox.requests(kind="arm") if e.get("token_session") == session]
    operations = [e["operation"] for e in sent]
    assert operations.count("Microsoft.Insights/metrics/read") == 5
    assert operations.count("Microsoft.Insights/metricDefinitions/read") == 1
    assert [e["status"] for e in sent].count(400) == 1 and all(e["status"] in (200, 400) for e in sent)


async def test_an_identity_without_rights_gets_arms_403_explained(sandbox, tmp_path):
    sp = sandbox.manifest["service_principals"][0]
    session = f"norights-{uuid.uuid4().hex[:8]}"
    params = _params(sandbox, tmp_path, session, "--credential", "service-principal", "--subscription", SUB_A,
                     AZURE_CLIENT_ID=sp["client_id"], AZURE_CLIENT_SECRET=sp["client_secret"],
                     AZURE_TENANT_ID=sandbox.manifest["tenant_id"])
    async with Client(params) as client:
        activity = await client.call_tool("activity_log_list", {})
        metrics = await client.call_tool("metrics_get", {"resource_id": VM, "timespan": SPAN})
        allowed = await client.call_tool("metrics_get", {"resource_id": SITE, "timespan": SPAN})
    for result, operation in ((activity, "Microsoft.Insights/eventtypes/values/read"),
                              (metrics, "Microsoft.Insights/metrics/read")):
        assert result.is_error
        error = result.structured_content["error"]
        assert error["code"] == "AuthorizationFailed" and error["status"] == 403
        assert operation in error["message"] and "role assignment" in error["hint"]
        assert sp["client_secret"] not in json.dumps(result.structured_content)
    assert not allowed.is_error, allowed.content  # Contributor on the web app's group reads its metrics


async def test_read_only_lists_the_monitor_tools_with_schemas_and_annotations(sandbox, tmp_path):
    async with Client(_params(sandbox, tmp_path, f"list-{uuid.uuid4().hex[:8]}")) as client:
        listed = await client.list_tools()
    tools = {t.name: t for t in listed.tools}
    for name in ("activity_log_list", "metrics_list", "metrics_get"):
        tool = tools[name]
        assert tool.annotations.read_only_hint is True and not tool.annotations.destructive_hint
        assert tool.output_schema and tool.output_schema["type"] == "object"
    assert tools["activity_log_list"].input_schema["properties"]["status"]
    catalog_bytes = len(json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools]))
    assert catalog_bytes < 12 * 1024
