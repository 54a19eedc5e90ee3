"""The monitor tools' argument handling: time windows, compact input schemas, sealed page offsets, event items.

No network here: these are the pure functions the tools run before (and after) a request.
"""

from __future__ import annotations

import datetime
import inspect
import typing
from typing import Literal

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azure_agent_mcp.sandbox import activity_room
from azure_agent_mcp.sandbox.activitylog import build_event
from azure_agent_mcp.tools import continuation, timespans
from azure_agent_mcp.tools.base import ToolInputError
from azure_agent_mcp.tools.schemas import compact_input_schema

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def clock() -> datetime.datetime:
    return NOW


def _window(start=None, end=None, timespan=None):
    return timespans.window(start, end, timespan, default=datetime.timedelta(hours=24), clock=clock)


def test_the_window_forms():
    ceiled = NOW.replace(microsecond=0) + datetime.timedelta(seconds=1)
    assert _window() == timespans.Window(ceiled - datetime.timedelta(hours=24), ceiled)
    assert _window(timespan="PT1H") == timespans.Window(ceiled - datetime.timedelta(hours=1), ceiled)
    start = datetime.datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert _window(start="2026-11-30T08:00:00Z", timespan="P1DT2H").end == start + datetime.timedelta(hours=26)
    assert _window(end="2026-11-30T08:00:00Z", timespan="PT30M").start == start - datetime.timedelta(minutes=30)
    assert _window(start="2026-11-30T08:00:00Z").end == ceiled
    assert _window(end="2026-11-30T08:00:00Z").start == start - datetime.timedelta(hours=24)
    # no offset means UTC; an offset is honoured; seven fractional digits (as Azure writes them) parse
    assert _window(start="2026-11-30T08:00:00", end="2026-11-30T10:00:00+01:00") == timespans.Window(
        start, start + datetime.timedelta(hours=1))
    assert _window(start="2026-11-30T08:00:00.1234567Z", timespan="PT1M").start.microsecond == 123456


@pytest.mark.parametrize("kwargs, fragment", [
    ({"timespan": "1h"}, "ISO 8601 duration"),
    ({"timespan": "P"}, "ISO 8601 duration"),
    ({"timespan": "PT"}, "ISO 8601 duration"),
    ({"timespan": "P1Y"}, "ISO 8601 duration"),
    ({"start": "last tuesday"}, "ISO 8601 date-time"),
    ({"start": "2026-11-30T08:00:00Z", "end": "2026-11-30T07:00:00Z"}, "before it starts"),
    ({"start": "2026-11-30T08:00:00Z", "end": "2026-11-30T09:00:00Z", "timespan": "PT1H"}, "at most two"),
])
def test_bad_windows_name_the_format(kwargs, fragment):
    with pytest.raises(ToolInputError) as raised:
        _window(**kwargs)
    assert fragment in str(raised.value) and raised.value.hint


def test_metrics_timespan_forms():
    ceiled = NOW.replace(microsecond=0) + datetime.timedelta(seconds=1)
    span = timespans.metrics_timespan("PT2H", default=datetime.timedelta(hours=1), clock=clock)
    assert span == timespans.Window(ceiled - datetime.timedelta(hours=2), ceiled)
    fixed = timespans.metrics_timespan("2026-11-30T08:00:00Z/2026-11-30T09:00:00Z", default=datetime.timedelta(1))
    assert timespans.iso(fixed.start) == "2026-11-30T08:00:00Z" and timespans.iso(fixed.end) == "2026-11-30T09:00:00Z"
    forward = timespans.metrics_timespan("2026-11-30T08:00:00Z/PT15M", default=datetime.timedelta(1))
    assert timespans.iso(forward.end) == "2026-11-30T08:15:00Z"
    with pytest.raises(ToolInputError, match="neither"):
        timespans.metrics_timespan("yesterday", default=datetime.timedelta(1))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_a_duration_or_a_clear_error(text):
    try:
        value = timespans.duration(text, "timespan")
    except ToolInputError as exc:
        assert "ISO 8601 duration" in str(exc)
    else:
        assert value >= datetime.timedelta(0)


# -- compact input schemas ---------------------------------------------------------------------


def _sample(name: str, subscription: str | None = None, top: int | None = None, status: Literal["A", "B"] | None = None,
            names: list[str] | None = None, flag: bool = False) -> None:
    """A tool signature with every shape the catalog uses."""


def _schema_of(fn) -> dict:
    from pydantic import create_model

    hints = typing.get_type_hints(fn)
    fields = {name: (hints[name], param.default if param.default is not inspect.Parameter.empty else ...)
              for name, param in inspect.signature(fn).parameters.items()}
    return create_model("SampleArguments", **fields).model_json_schema()


def _both() -> tuple[dict, dict]:
    import copy

    original = _schema_of(_sample)
    return original, compact_input_schema(copy.deepcopy(original))


_SCHEMAS = _both()  # pydantic's schema of the signature, and the one tools/list publishes
_VALIDATORS = tuple(jsonschema.Draft202012Validator(s) for s in _SCHEMAS)


def test_compaction_saves_bytes_and_keeps_required():
    original, compacted = _SCHEMAS
    assert len(str(compacted)) < 0.7 * len(str(original))
    assert original["required"] == compacted["required"] == ["name"]
    assert compacted["properties"]["status"] == {"enum": ["A", "B"], "type": "string"}
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                     max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "subscription", "top", "status", "names", "flag", "other"]),
                       _JSON | st.sampled_from(["A", "B", "C"]), max_size=6))
def test_compacted_schemas_accept_what_the_originals_accept_without_nulls(instance):
    """The published schema says "pass T or leave it out" where the signature says ``T | None = None``:
    it accepts nothing the signature would refuse, and everything it would take except an explicit null."""
    original, compacted = _VALIDATORS
    if compacted.is_valid(instance):
        assert original.is_valid(instance)
    if original.is_valid(instance) and not any(v is None for v in instance.values()):
        assert compacted.is_valid(instance)


# -- sealed page offsets -------------------------------------------------------------------------


def test_an_offset_is_sealed_with_the_link():
    token = continuation.seal("https://arm/x?a=1", tool="t", session_id="s", scope="/x", offset=7)
    assert continuation.unseal_at(token, tool="t", session_id="s", scope="/x") == ("https://arm/x?a=1", "/x", 7)
    assert continuation.unseal(token, tool="t", session_id="s") == ("https://arm/x?a=1", "/x")
    plain = continuation.seal("https://arm/x", tool="t", session_id="s", scope="/x")
    assert continuation.unseal_at(plain, tool="t", session_id="s")[2] == 0
    body, _, tag = token.partition(".")
    import base64
    import json

    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["offset"] = 0
    edited = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()).decode()
    with pytest.raises(continuation.ContinuationRefused):
        continuation.unseal_at(edited.rstrip("=") + "." + tag, tool="t", session_id="s")


# -- what the tool sends is what the service reads --------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=1, max_size=60))
def test_a_caller_with_quotes_stays_one_literal_value(caller):
    from urllib.parse import parse_qs, urlsplit

    from azure_agent_mcp.tools.monitor import _first_link

    class Session:
        def arm_url(self, path, api_version):
            return "https://arm.example" + path

    caller = caller.strip() or "x"
    link = _first_link(Session(), "5a1db0c5-a000-4000-a000-00000000000a", None, None, caller, "Failed",
                       "2026-11-30T08:00:00Z", "2026-11-30T09:00:00Z", None)
    raw = parse_qs(urlsplit(link).query)["$filter"][0]
    parsed = activity_room.parse_filter(raw, NOW)
    assert parsed.equals == {"caller": caller, "status": "Failed"}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_the_sandbox_filter_parser_answers_bad_request_or_a_filter(raw):
    try:
        parsed = activity_room.parse_filter("eventTimestamp ge '2026-11-30T08:00:00Z' and " + raw, NOW)
    except activity_room.MonitorError as exc:
        assert exc.status == 400 and exc.code == "BadRequest"
    else:
        assert parsed.start <= parsed.end


def test_an_event_item_from_the_sdk_model_names_the_agent_session_and_the_error():
    from azure.mgmt.monitor.models import EventData

    from azure_agent_mcp.sandbox.access import Principal
    from azure_agent_mcp.sandbox.protocol import Request, arm_error
    from azure_agent_mcp.tools.monitor import event_item

    request = Request("POST", "/x", "", {"x-ms-correlation-request-id": "c-1"}, b"", "127.0.0.1", "https://o")
    response = arm_error(403, "AgentSessionSecretAccessDenied", "no")
    scope = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a"
    response.log.update({"operation": "Microsoft.Storage/storageAccounts/listKeys/action", "scope": scope})
    principal = Principal({"oid": "o", "upn": "dev@example.com", "xms_cli_sid": "agent-7", "tid": "t"})
    wire = build_event(request, principal, response, tenant_id="t", now=1_764_590_400.5)
    assert wire is not None
    item = event_item(EventData.deserialize(wire))
    assert item == {
        "time": "2025-12-01T12:00:00Z", "caller": "dev@example.com",
        "operation": "Microsoft.Storage/storageAccounts/listKeys/action", "status": "Failed",
        "sub_status": "Forbidden", "resource_id": scope, "correlation_id": "c-1", "agent_session": "agent-7",
        "error_code": "AgentSessionSecretAccessDenied",
    }


@pytest.mark.parametrize("text", ["P1Y", "P2M", "P1Y2M3D", "P1MT2H"])
def test_calendar_durations_are_refused_by_every_time_argument(text):
    """One parser for metrics, the activity log and log queries: months and years mean nothing fixed."""
    from azure_agent_mcp.tools.logs_timespan import parse_timespan

    with pytest.raises(ValueError, match="calendar"):
        timespans.parse_duration(text)
    with pytest.raises(ToolInputError):
        timespans.duration(text, "timespan")
    with pytest.raises(ToolInputError, match="calendar"):
        parse_timespan(text)


def test_durations_read_the_same_everywhere():
    from azure_agent_mcp.tools.logs_timespan import parse_timespan

    for text, expected in [("PT90S", 90), ("PT1.5S", 1.5), ("P1W", 7 * 86400), ("p1dt2h", 26 * 3600)]:
        assert timespans.parse_duration(text).total_seconds() == expected
        assert parse_timespan(text).total_seconds() == expected
