"""OpenTelemetry through `serve`: spans and audit log records exported over OTLP/HTTP to a loopback
receiver that decodes them with opentelemetry-proto, checked against what the sandbox received and
what the audit file holds; and nothing of the SDK imported, nothing exported, without the variables.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from otlp_receiver import OTLPReceiver, Span
from serve_helpers import HttpServe, StdioServe, error_of, new_session
from server_helpers import audit_records

from azure_agent_mcp.telemetry import Signals, requested_signals
from azure_agent_mcp.telemetry.urls import KEPT_QUERY_VALUES, REDACTED, span_url

SERVER, CLIENT = 2, 3  # OTLP Span.SpanKind
STATUS_ERROR = 2
ARM_LIST = "Microsoft.Resources/subscriptions/resources/read"
# so nothing is exported before the server shuts down: what arrives proves the flush at exit
NO_EXPORT_BEFORE_EXIT = {"OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_BLRP_SCHEDULE_DELAY": "600000"}
HEAVY_MODULES = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto", "google.protobuf")


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _otel_env(receiver: OTLPReceiver, **extra: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **extra}


def _sub(sandbox: Any) -> str:
    return sandbox.manifest["subscriptions"][0]["id"]


def _account(sandbox: Any) -> str:
    return f"/subscriptions/{_sub(sandbox)}/resourceGroups/rg-prod-app/providers/Microsoft.Storage/storageAccounts/stprodapp01"


def _tool_span(spans: list[Span], correlation: str) -> Span:
    [found] = [s for s in spans if s.kind == SERVER and s.attributes.get("azure_agent_mcp.correlation_id") == correlation]
    return found


def _request_spans(spans: list[Span], correlation: str) -> list[Span]:
    return [s for s in spans if s.kind == CLIENT and s.attributes.get("azure_agent_mcp.call.correlation_id") == correlation]


def _seeded_secrets(sandbox: Any) -> list[str]:
    """Every secret value the sandbox seeds: vault secrets, storage keys, passwords, client secrets."""
    world = sandbox.state.world
    values = [v.value for vault in world.vaults.values() for versions in vault.secrets.values() for v in versions]
    values += [entry["value"] for entries in world.keys.values() for entry in entries]
    values += [u["password"] for u in sandbox.manifest["users"] if u.get("password")]
    values += [sp["client_secret"] for sp in sandbox.manifest["service_principals"] if sp.get("client_secret")]
    return [v for v in values if v and len(v) >= 8]


def _session_token(sandbox: Any, session: str) -> str:
    """A token of the server's agent session, fetched the way the server does (the sandbox credential)."""
    from azure_agent_mcp.identity import build_credential, resolve_session

    env = sandbox.environment()
    credential = build_credential("sandbox", env, resolve_session(session_id=session, environ={}))
    return credential.get_token(env.arm_scope).token


def _assert_no_secret(captured: bytes, secrets_: list[str]) -> None:
    assert b"eyJ" not in captured, "a JWT (header prefix eyJ) reached the captured bytes"
    assert b"Bearer" not in captured and b"authorization" not in captured.lower()
    for value in secrets_:
        assert value.encode() not in captured, f"a secret value ({value[:4]}...) reached the captured bytes"


# -- through serve over stdio --------------------------------------------------------------------------------


def test_a_call_is_traced_and_its_audit_records_logged_over_otlp(sandbox, tmp_path):
    audit = tmp_path / "audit.jsonl"
    traceparent, client_trace, client_span = _traceparent()
    with OTLPReceiver() as receiver:
        env = _otel_env(receiver, OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=otel-test", **NO_EXPORT_BEFORE_EXIT)
        mark = sandbox.last_seq()
        with StdioServe(sandbox, audit, tmp_path / "state", "--read-only", env=env) as server:
            listed = server.request("tools/call", {"name": "resource_list", "arguments": {"top": 3},
                                                   "_meta": {"traceparent": traceparent, "tracestate": "rojo=00f067aa0ba902b7",
                                                             "baggage": "user.id=not-for-azure"}})["result"]
            assert not listed["isError"], listed
            again = server.call("group_list", {"subscription": _sub(sandbox)})
            assert not again["isError"], again
            keys = server.call("storage_account_keys", {"resource_id": _account(sandbox)})
            assert keys["isError"] and error_of(keys)["code"] == "PolicyDenied"
            assert receiver.received.raw == [], "exported before shutdown: the flush at exit would go untested"
            assert server.close() == 0
        received = receiver.received  # complete: the server flushed before it exited
        stderr = server.stderr_bytes()
    spans, logs = received.spans, received.logs
    assert set(received.paths) == {"/v1/traces", "/v1/logs"}

    tools = {r["tool"]: r for r in audit_records(audit, "tool")}
    journal = [e for e in sandbox.requests(since=mark) if e.get("kind") == "arm"]

    # the tool span continues the client's trace from params._meta (MCP semantic conventions)
    listing = tools["resource_list"]
    tool_span = _tool_span(spans, listing["correlation_id"])
    assert tool_span.name == "tools/call resource_list"
    assert (tool_span.trace_id, tool_span.parent_span_id) == (client_trace, client_span)
    assert tool_span.attributes["mcp.method.name"] == "tools/call"
    assert tool_span.attributes["gen_ai.tool.name"] == "resource_list"
    assert tool_span.attributes["network.transport"] == "pipe"
    assert tool_span.attributes["azure_agent_mcp.agent_session.id"] == server.session == listing["session_id"]
    assert tool_span.attributes["azure_agent_mcp.decision"] == "allow"
    assert tool_span.status_code != STATUS_ERROR

    # its Azure request: a CLIENT child span, with what the sandbox saw
    [request_span] = _request_spans(spans, listing["correlation_id"])
    assert request_span.trace_id == client_trace and request_span.parent_span_id == tool_span.span_id
    [seen] = [e for e in journal if e["correlation_id"] == listing["correlation_id"]]
    attributes = request_span.attributes
    assert attributes["azure_agent_mcp.correlation_id"] == seen["correlation_id"]
    assert attributes["azure_agent_mcp.agent_session.id"] == server.session == seen["token_session"]
    assert attributes["azure_agent_mcp.rbac.operation"] == ARM_LIST
    assert attributes["azure_agent_mcp.rbac.scope"] == f"/subscriptions/{_sub(sandbox)}"
    assert (attributes["azure_agent_mcp.decision"], attributes["azure_agent_mcp.decision.effect"]) == ("allow", "allow")
    assert attributes["azure_agent_mcp.decision.policy"] == "read-only" and attributes["azure_agent_mcp.decision.rule"]
    assert attributes["http.request.method"] == "GET" and attributes["http.response.status_code"] == seen["status"] == 200
    assert attributes["url.full"].endswith(seen["raw_path"] + "?%24top=3&api-version=2022-09-01")
    assert attributes["server.address"] == "127.0.0.1"
    [intent] = [r for r in audit_records(audit, "intent") if r["correlation_id"] == listing["correlation_id"]]
    assert attributes["azure_agent_mcp.audit.request_id"] == intent["request_id"]
    # the request went out naming its span as parent
    assert seen["traceparent"] == f"00-{client_trace}-{request_span.span_id}-01"
    assert seen["tracestate"] == "rojo=00f067aa0ba902b7" and seen["baggage"] is False  # the client's baggage stays here

    # a call without trace context starts its own trace; its requests are still its children
    grouping = _tool_span(spans, tools["group_list"]["correlation_id"])
    assert grouping.trace_id != client_trace and grouping.parent_span_id == ""
    children = _request_spans(spans, tools["group_list"]["correlation_id"])
    assert children and all(c.trace_id == grouping.trace_id and c.parent_span_id == grouping.span_id for c in children)
    sent = [e for e in journal if e["correlation_id"] == tools["group_list"]["correlation_id"]]
    # (a new root trace's flags may also mark its id random, W3C level 2: compare the ids)
    assert sorted(e["traceparent"].split("-")[1:3] for e in sent) == sorted([c.trace_id, c.span_id] for c in children)

    # refused by the policy before anything was sent: the decision on the tool span, no request span
    refused = tools["storage_account_keys"]
    denied = _tool_span(spans, refused["correlation_id"])
    assert denied.status_code == STATUS_ERROR
    assert denied.attributes["azure_agent_mcp.decision"] == "deny" == refused["decision"]
    assert denied.attributes["azure_agent_mcp.decision.rule"] == refused["rule"]
    assert denied.attributes["azure_agent_mcp.rbac.operation"] == "Microsoft.Storage/storageAccounts/listKeys/action"
    assert _request_spans(spans, refused["correlation_id"]) == []
    assert not [e for e in journal if e["correlation_id"] == refused["correlation_id"]]

    # every audit record is a log record, equal to the file's, with the ids of the span it was written in
    on_file = {r["seq"]: r for r in audit_records(audit)}
    as_logged = {log.body["seq"]: log for log in logs}
    assert {seq: log.body for seq, log in as_logged.items()} == on_file
    assert all(log.event_name == "azure_agent_mcp.audit" for log in logs)
    logged_tool = next(log for log in logs if log.body.get("correlation_id") == listing["correlation_id"]
                       and log.body["kind"] == "tool")
    assert (logged_tool.trace_id, logged_tool.span_id) == (client_trace, tool_span.span_id)
    assert logged_tool.severity_text == "INFO"
    logged_intent = as_logged[intent["seq"]]
    assert (logged_intent.trace_id, logged_intent.span_id) == (client_trace, request_span.span_id)
    assert logged_intent.attributes["azure_agent_mcp.audit.kind"] == "intent"
    assert logged_intent.attributes["azure_agent_mcp.correlation_id"] == listing["correlation_id"]
    logged_refusal = as_logged[refused["seq"]]
    assert logged_refusal.severity_text == "WARN" and logged_refusal.span_id == denied.span_id

    # the resource: our default service name, the version, and the environment's attributes
    for item in (*spans, *logs):
        assert item.resource["service.name"] == "azure-agent-mcp"
        assert item.resource["service.version"]
        assert item.resource["deployment.environment.name"] == "otel-test"

    _assert_no_secret(b"".join(received.raw) + stderr, [_session_token(sandbox, server.session), *_seeded_secrets(sandbox)])


def test_secrets_the_server_reads_never_reach_spans_or_logs(fresh_sandbox_state, tmp_path):
    """Under unrestricted the tools return storage keys and a vault secret: spans and logs still hold none."""
    sandbox = fresh_sandbox_state
    sandbox.set_agent_rule(False)  # the sandbox's own agent-session rule would refuse secret reads (reset after)
    audit = tmp_path / "audit.jsonl"
    vault = next(v["name"] for v in sandbox.manifest["vaults"] if v["name"] == "kv-sandbox-prod")
    with OTLPReceiver() as receiver:
        # short batch delays, and gzip: the SDK's own variables, honoured as given
        env = _otel_env(receiver, OTEL_BSP_SCHEDULE_DELAY="50", OTEL_BLRP_SCHEDULE_DELAY="50",
                        OTEL_EXPORTER_OTLP_COMPRESSION="gzip")
        with StdioServe(sandbox, audit, tmp_path / "state", "--policy", "unrestricted",
                        "--dangerously-skip-confirmation", env=env) as server:
            keys = server.call("storage_account_keys", {"resource_id": _account(sandbox)})
            secret = server.call("keyvault_secret_get", {"vault": vault, "name": "db-password"})
            assert server.close() == 0
        stderr = server.stderr_bytes()
    assert not keys["isError"] and not secret["isError"], (keys, secret)
    read = [k["value"] for k in keys["structuredContent"]["keys"]] + [secret["structuredContent"]["value"]]
    assert all(len(v) >= 16 for v in read)
    planes = {s.attributes.get("azure_agent_mcp.plane") for s in receiver.received.spans if s.kind == CLIENT}
    assert planes == {"arm", "keyvault"}  # the reads were traced: the absence below is not for want of spans
    assert len(receiver.received.logs) == len(audit_records(audit))
    assert receiver.received.encodings and set(receiver.received.encodings) == {"gzip"}
    _assert_no_secret(b"".join(receiver.received.raw) + stderr, [*read, *_seeded_secrets(sandbox)])


def test_long_running_operation_polls_are_spans_of_the_call_that_started_them(fresh_sandbox_state, tmp_path):
    """resource_delete's DELETE and its polls: each a child span of the tool span, each sent with its own traceparent."""
    sandbox = fresh_sandbox_state
    audit = tmp_path / "audit.jsonl"
    group = f"/subscriptions/{_sub(sandbox)}/resourceGroups/rg-otel-doomed"
    with OTLPReceiver() as receiver:
        with StdioServe(sandbox, audit, tmp_path / "state", "--policy", "unrestricted", "--dangerously-skip-confirmation",
                        env=_otel_env(receiver, **NO_EXPORT_BEFORE_EXIT)) as server:
            assert not server.call("group_create", {"name": "rg-otel-doomed", "location": "eastus"})["isError"]
            mark = sandbox.last_seq()
            deleted = server.call("resource_delete", {"resource_id": group})
            assert not deleted["isError"], deleted
            assert server.close() == 0
    spans = receiver.received.spans
    [record] = [r for r in audit_records(audit, "tool") if r["tool"] == "resource_delete"]
    tool_span = _tool_span(spans, record["correlation_id"])
    attempts = _request_spans(spans, record["correlation_id"])
    polls = [s for s in attempts if s.attributes["azure_agent_mcp.rbac.operation"].endswith("/operationresults/read")]
    assert polls and "DELETE" in [s.attributes["http.request.method"] for s in attempts]
    assert all((s.trace_id, s.parent_span_id) == (tool_span.trace_id, tool_span.span_id) for s in attempts)
    sent = [e for e in sandbox.requests(since=mark) if e.get("kind") == "arm"]
    assert len(sent) == len(attempts)
    assert sorted(e["traceparent"].split("-")[1:3] for e in sent) == sorted([s.trace_id, s.span_id] for s in attempts)


def test_without_the_variables_nothing_of_the_sdk_is_imported_and_nothing_exported(sandbox, tmp_path):
    def imported(env: dict[str, str], label: str) -> set[str]:
        with StdioServe(sandbox, tmp_path / f"{label}.jsonl", tmp_path / "state", "--read-only",
                        env=env, python=("-X", "importtime"), session=new_session(label)) as server:
            assert not server.call("resource_list", {"top": 1})["isError"]
            assert server.close() == 0
        lines = server.stderr_path.read_text(errors="replace").splitlines()
        return {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}

    with OTLPReceiver() as receiver:
        off = imported({}, "off")
        disabled = imported({**_otel_env(receiver), "OTEL_SDK_DISABLED": "true"}, "disabled")
        assert receiver.received.raw == []  # OTEL_SDK_DISABLED wins over the endpoint
        on = imported(_otel_env(receiver), "on")  # the control: the same measure sees the SDK when it is on
    for modules in (off, disabled):
        assert "azure_agent_mcp.server.app" in modules  # the measure saw the server's own imports
        assert not [m for m in modules if m.startswith(HEAVY_MODULES)], sorted(m for m in modules if m.startswith(HEAVY_MODULES))
        assert not [m for m in modules if m.startswith("azure_agent_mcp.telemetry.")]
    assert {"opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter"} <= on
    assert receiver.received.spans and receiver.received.logs


# -- over HTTP: W3C trace context in the request headers ---------------------------------------------------


@pytest.mark.anyio
async def test_http_trace_context_in_headers_is_continued_and_meta_wins(sandbox, tmp_path):
    import httpx
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    audit = tmp_path / "audit.jsonl"
    header, header_trace, header_span = _traceparent()
    meta, meta_trace, _ = _traceparent()
    with OTLPReceiver() as receiver:
        server = HttpServe(sandbox, audit, tmp_path / "state", "--read-only",
                           env=_otel_env(receiver, **NO_EXPORT_BEFORE_EXIT))
        try:
            async with httpx.AsyncClient(headers={"traceparent": header}, timeout=30) as http:
                async with Client(streamable_http_client(server.url, http_client=http), mode="legacy") as client:
                    assert not (await client.call_tool("subscription_list", {})).is_error
                    assert not (await client.call_tool("group_list", {"subscription": _sub(sandbox)},
                                                       meta={"traceparent": meta})).is_error
        finally:
            assert server.terminate() == 0  # SIGTERM: drained, flushed, exit 0
    spans = receiver.received.spans
    tools = {r["tool"]: r for r in audit_records(audit, "tool")}
    by_header = _tool_span(spans, tools["subscription_list"]["correlation_id"])
    assert (by_header.trace_id, by_header.parent_span_id) == (header_trace, header_span)
    assert by_header.attributes["network.transport"] == "tcp"
    assert by_header.attributes["mcp.session.id"]
    by_meta = _tool_span(spans, tools["group_list"]["correlation_id"])
    assert by_meta.trace_id == meta_trace
    for tool in ("subscription_list", "group_list"):
        parent = _tool_span(spans, tools[tool]["correlation_id"])
        children = _request_spans(spans, tools[tool]["correlation_id"])
        assert children and all(c.parent_span_id == parent.span_id for c in children)


def test_team_mode_spans_name_each_caller_and_carry_no_token(sandbox, tmp_path):
    """Two users signed in through the public client, one authenticated HTTP server: each tool span names
    its caller, and neither the callers' bearer tokens nor the on-behalf-of tokens reach the exports."""
    import anyio
    import httpx
    from auth_helpers import AuthServe, sign_in, user
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    tokens = {name: sign_in(sandbox, name)["access_token"] for name in ("developer", "reader")}
    with OTLPReceiver() as receiver:
        with AuthServe(sandbox, tmp_path, env=_otel_env(receiver, **NO_EXPORT_BEFORE_EXIT)) as served:
            async def work(name: str) -> None:
                async with httpx.AsyncClient(headers={"Authorization": f"Bearer {tokens[name]}"}, timeout=60) as http:
                    async with Client(streamable_http_client(served.url, http_client=http), mode="legacy") as client:
                        assert not (await client.call_tool("resource_list", {"top": 2})).is_error

            async def together() -> None:
                async with anyio.create_task_group() as group:
                    for name in tokens:
                        group.start_soon(work, name)

            anyio.run(together)
            served.stop()  # SIGTERM: flushed on the way out
            stderr = bytes(served.stderr_bytes)
    spans = receiver.received.spans
    records = [r for r in audit_records(served.audit, "tool") if r["tool"] == "resource_list"]
    assert len(records) == 2
    for record in records:
        tool_span = _tool_span(spans, record["correlation_id"])
        assert tool_span.attributes["azure_agent_mcp.caller.oid"] == record["caller"]["oid"]
        assert tool_span.attributes["azure_agent_mcp.caller.tid"] == record["caller"]["tid"]
        children = _request_spans(spans, record["correlation_id"])
        assert children and {c.attributes["azure_agent_mcp.agent_session.id"] for c in children} == {record["session_id"]}
    assert {r["caller"]["oid"] for r in records} == {user(sandbox, n)["object_id"] for n in tokens}
    logged = [log.body for log in receiver.received.logs if log.body.get("kind") == "tool"]
    assert sorted(r["caller"]["oid"] for r in logged if r["tool"] == "resource_list") == sorted(
        r["caller"]["oid"] for r in records)
    captured = b"".join(receiver.received.raw)
    for token in tokens.values():
        assert token.rsplit(".", 1)[-1].encode() not in captured + stderr  # not even a signature
    _assert_no_secret(captured, [*tokens.values(), *_seeded_secrets(sandbox)])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the guard's own span of a refused attempt, in process ---------------------------------------------------


def test_the_guard_spans_a_refused_attempt_with_its_decision_and_sends_nothing(sandbox, tmp_path):
    from azure.core.rest import HttpRequest
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    from azure_agent_mcp.policy import AuditLog, Endpoints, Guard, PolicyDeniedError, load_policy
    from azure_agent_mcp.telemetry.requests import RequestSpan

    exported = InMemorySpanExporter()
    provider = TracerProvider()  # local: the process's global provider stays the no-op one
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("test")
    guard = Guard(load_policy("read-only"), Endpoints.from_environment(sandbox.environment()),
                  audit=AuditLog(tmp_path / "audit.jsonl"), spans=lambda request: RequestSpan(tracer, request))
    sas = "sv=2024&sig=" + secrets.token_urlsafe(24) + "&skoid=" + secrets.token_hex(8)
    url = (f"{sandbox.manifest['arm_endpoint']}{_account(sandbox)}/listKeys?api-version=2023-05-01&{sas}")
    mark = sandbox.last_seq()
    with guard.transport(connection_verify=sandbox.manifest["ca_bundle"]) as transport:
        with pytest.raises(PolicyDeniedError) as caught:
            transport.send(HttpRequest("POST", url))
    assert [e for e in sandbox.requests(since=mark) if e.get("kind") == "arm"] == []
    [span] = exported.get_finished_spans()
    assert span.kind is SpanKind.CLIENT and span.name == "POST"
    assert span.status.status_code is StatusCode.ERROR and "deny" in (span.status.description or "")
    assert span.attributes["azure_agent_mcp.decision"] == "deny"
    assert span.attributes["azure_agent_mcp.decision.rule"] == caught.value.decision.rule
    assert span.attributes["azure_agent_mcp.rbac.operation"] == "Microsoft.Storage/storageAccounts/listKeys/action"
    assert span.attributes["error.type"] == "PolicyDeniedError"
    assert "http.response.status_code" not in span.attributes
    assert span.attributes["url.full"].endswith("listKeys?api-version=2023-05-01&sv=REDACTED&sig=REDACTED&skoid=REDACTED")
    [refused] = audit_records(tmp_path / "audit.jsonl", "refused")
    assert refused["decision"] == "deny"
    provider.shutdown()


def test_polls_on_the_sdk_poller_thread_are_children_of_the_call_span(fresh_sandbox_state, tmp_path, developer_credential):
    """azure-core's LROPoller polls on a thread of its own, where neither the call's context nor the
    span is current: the guard finds the call by the poll URL, the span its parent by the call."""
    from azure.mgmt.resource.resources import ResourceManagementClient
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from azure_agent_mcp.callcontext import call_scope
    from azure_agent_mcp.identity import CorrelationPolicy
    from azure_agent_mcp.policy import AuditLog, Endpoints, Guard, load_policy
    from azure_agent_mcp.telemetry.requests import RequestSpan

    sandbox = fresh_sandbox_state
    manifest = sandbox.manifest
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("test")
    guard = Guard(load_policy("unrestricted"), Endpoints.from_environment(sandbox.environment()),
                  confirmer=lambda decision: True, audit=AuditLog(tmp_path / "audit.jsonl"),
                  spans=lambda request: RequestSpan(tracer, request))
    client = ResourceManagementClient(
        developer_credential, _sub(sandbox), base_url=manifest["arm_endpoint"],
        credential_scopes=[manifest["arm_audience"] + ".default"], per_call_policies=[CorrelationPolicy()],
        transport=guard.transport(connection_verify=manifest["ca_bundle"]), connection_verify=manifest["ca_bundle"],
    )
    client.resource_groups.create_or_update("rg-otel-polled", {"location": "eastus"})
    exported.clear()
    mark = sandbox.last_seq()
    with call_scope(session_id="otel-poller", tool="resource_delete"), tracer.start_as_current_span("tools/call x") as call_span:
        client.resource_groups.begin_delete("rg-otel-polled", polling_interval=0.05).result()
    attempts = [s for s in exported.get_finished_spans() if s.kind is trace.SpanKind.CLIENT]
    polls = [s for s in attempts if s.attributes["azure_agent_mcp.rbac.operation"].endswith("/operationresults/read")]
    assert polls, [s.attributes for s in attempts]
    parent = call_span.get_span_context()
    assert all(s.parent is not None and s.parent.span_id == parent.span_id and s.context.trace_id == parent.trace_id
               for s in attempts)
    assert {s.attributes["azure_agent_mcp.agent_session.id"] for s in attempts} == {"otel-poller"}
    sent = [e for e in sandbox.requests(since=mark) if e.get("kind") == "arm"]
    assert sorted(e["traceparent"].split("-")[2] for e in sent) == sorted(f"{s.context.span_id:016x}" for s in attempts)
    client.close()
    provider.shutdown()


# -- pure parts ------------------------------------------------------------------------------------------------


_VALUES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=12, max_size=40)


@given(pairs=st.lists(st.tuples(st.sampled_from(["sig", "skoid", "skt", "$skiptoken", "api-version", "$top", "Comp",
                                                  "code", "x"]), _VALUES), max_size=6),
       bare=st.lists(_VALUES, max_size=2), fragment=_VALUES)
def test_span_urls_keep_only_allow_listed_query_values(pairs, bare, fragment):
    """As azure-core sends them: names raw, values percent-encoded; bare pieces and fragments never shown."""
    from urllib.parse import parse_qsl, quote, urlsplit

    query = "&".join([f"{name}={quote(value, safe='')}" for name, value in pairs] + [quote(b, safe="") for b in bare])
    url = f"https://user:pw@vault.example:8443/secrets/x?{query}#{quote(fragment, safe='')}"
    shown = span_url(url)
    parts = urlsplit(shown)
    assert (parts.username, parts.password, parts.hostname, parts.port) == (None, None, "vault.example", 8443)
    assert parts.fragment == "" and "#" not in shown
    expected = [(name, value if name.lower() in KEPT_QUERY_VALUES else REDACTED) for name, value in pairs]
    assert parse_qsl(parts.query, keep_blank_values=True)[:len(pairs)] == expected
    assert [p for p in parts.query.split("&") if p][len(pairs):] == [REDACTED] * len(bare)


def test_span_urls_fail_closed_on_odd_pieces():
    assert span_url("https://u:p@h/p?%24top=5&api-version=1&a%20b=s3cr3t&s3cr3t-bare&a&b=c=d#frag") == (
        "https://h/p?%24top=5&api-version=1&a%20b=REDACTED&REDACTED&REDACTED&b=REDACTED")
    assert span_url("https://h/p") == "https://h/p" and span_url("https://h/p?") == "https://h/p"


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, Signals()),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, Signals(True, True)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, Signals()),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/traces"}, Signals(True, False)),
    ({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://c/v1/logs"}, Signals(False, True)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_SDK_DISABLED": "TRUE"}, Signals()),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_LOGS_EXPORTER": "none"}, Signals(True, False)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_TRACES_EXPORTER": "none"}, Signals(False, True)),
    ({"OTEL_SERVICE_NAME": "x", "OTEL_RESOURCE_ATTRIBUTES": "a=b"}, Signals()),
])
def test_which_signals_the_environment_asks_for(environ, expected):
    assert requested_signals(environ) == expected


def test_a_failing_audit_listener_never_fails_the_append(tmp_path):
    from azure_agent_mcp.policy import AuditLog

    seen: list[dict[str, Any]] = []

    def broken(record: dict[str, Any]) -> None:
        raise RuntimeError("listener down")

    with AuditLog(tmp_path / "audit.jsonl") as audit:
        audit.listeners += [broken, seen.append]
        stored = audit.append({"kind": "tool", "tool": "t", "status": "ok"})
    assert seen == [stored]
    assert [json.loads(line)["seq"] for line in Path(tmp_path / "audit.jsonl").read_text().splitlines()] == [stored["seq"]]
