"""The MCP server: the tool catalog filtered by the active policy, wired to the agent runtime.

Each catalog tool becomes an MCP tool whose input schema is its ``run`` signature. Around the
tool body: the up-front decision (and confirmation) from ``confirmation``, one call scope (so
every Azure request carries this call's correlation id and is audited with it), redaction of
secret fields when the policy denies secrets, and exactly one audit record per call.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import typing
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver import (
    AcceptedElicitation,
    Context,
    ElicitationResult,
    MCPServer,
    Resolve,
)
from mcp_types import CallToolResult, InputRequiredResult, ToolAnnotations

from azure_agent_mcp import __version__
from azure_agent_mcp.callcontext import DEFAULT_CALL_TIMEOUT, CallControl, call_scope
from azure_agent_mcp.server.confirmation import Approval, Verdict, approved_keys, make_resolver
from azure_agent_mcp.policy.audit_errors import AuditError
from azure_agent_mcp.server.lifecycle import CallRegistry, InFlight, loop_scheduler
from azure_agent_mcp.server.results import cancelled_failure, deadline_failure, error_payload, failure, success
from azure_agent_mcp.server.callers import caller_of, request_caller
from azure_agent_mcp.server.runtime import AgentRuntime, SessionHeaderError, SessionOwnershipError
from azure_agent_mcp.server.sessions import SessionEntry, SessionLimitReached
from azure_agent_mcp.server.workers import WORKERS
from azure_agent_mcp.tools import catalog
from azure_agent_mcp.tools.base import IDENTIFYING_ARGUMENTS, AzureTool
from azure_agent_mcp.tools.schemas import compact_input_schema

_LOG = logging.getLogger("azure_agent_mcp.server")
META_PREFIX = "azure-agent-mcp/"
ARM_METHODS = ("GET", "PUT", "PATCH", "POST", "DELETE")
# A representative operation per HTTP method, to ask "could the policy allow any request of this kind?"
_METHOD_PROBES = {
    "GET": "Microsoft.Example/widgets/read",
    "PUT": "Microsoft.Example/widgets/write",
    "PATCH": "Microsoft.Example/widgets/write",
    "POST": "Microsoft.Example/widgets/restart/action",
    "DELETE": "Microsoft.Example/widgets/delete",
}

INSTRUCTIONS = (
    "Azure tools acting as an AI agent in a tagged agent session. Every Azure request is checked "
    "against a local RBAC-shaped policy before it is sent; refusals name the rule. Use policy_explain "
    "to ask what is allowed and whoami to see the identity in use."
)


def allowed_arm_methods(runtime: AgentRuntime) -> list[str]:
    from azure_agent_mcp.policy import tool_visibility

    elevated = _elevation_methods(runtime.policy.elevation)
    return [
        method
        for method in ARM_METHODS
        if method in elevated or tool_visibility(runtime.policy, [(_METHOD_PROBES[method], False)]).effect.value != "deny"
    ]


def _elevation_methods(elevation: Any) -> set[str]:
    """The methods a grant under the Elevation block could allow (a role: any; an operation: its verb's)."""
    if elevation is None:
        return set()
    if elevation.roles:
        return set(ARM_METHODS)
    methods: set[str] = set()
    for operation in elevation.operations:
        verb = operation.lower().rsplit("/", 1)[-1]
        methods |= {"action": {"POST"}, "write": {"PUT", "PATCH"}, "delete": {"DELETE"}}.get(verb, set())
        if "*" in verb:
            methods |= set(ARM_METHODS)
    return methods


def visible(tool: AzureTool, runtime: AgentRuntime) -> bool:
    if tool.needs_elevation:
        return runtime.policy.elevation is not None
    if tool.local_only:
        return True
    from azure_agent_mcp.policy import tool_visibility

    decision = tool_visibility(runtime.policy, [(op.operation, op.data_action) for op in tool.operations])
    return decision.effect.value != "deny"


def recorded_arguments(tool: AzureTool | None, arguments: dict[str, Any] | None) -> Any:
    """A call's arguments as its audit record keeps them: writes, secret-bearing and unknown tools
    keep only their identifying arguments; every other value is kept as size and SHA-256."""
    from azure_agent_mcp.policy.redaction import audit_arguments

    if arguments is None:
        return None
    if tool is None:
        return audit_arguments(arguments, frozenset())
    sensitive = tool.secret_bearing or not tool.read_only
    return audit_arguments(arguments, IDENTIFYING_ARGUMENTS if sensitive else None)


# The audit record of the tools/call being handled: opened by ToolAuditMiddleware, filled by the tool body.
_tool_record: ContextVar[dict[str, Any] | None] = ContextVar("azure_agent_mcp_tool_record", default=None)
# Its entry in the server's in-flight registry (deadline, cancellation).
_in_flight: ContextVar[InFlight | None] = ContextVar("azure_agent_mcp_in_flight", default=None)

CALL_LOG = logging.getLogger("azure_agent_mcp.calls")
"""One WARNING line per failed or cancelled tool call (stderr under ``serve``): tool, error code,
HTTP status, endpoint and cause for network failures, correlation id, session id, duration. Never
an argument value, a message from Azure, a token or a secret."""

DEADLINE_SLACK = 2.0
"""Seconds past the deadline before a call's answer stops waiting for its worker; the worker's own
timeouts end at the deadline, so this only catches code those timeouts do not reach."""


class ToolAuditMiddleware:
    """Exactly one audit record per tool call, including calls that never reach a tool body.

    Unknown tools and arguments that fail validation are answered by the SDK before our code runs;
    wrapping the whole ``tools/call`` here records them too. A 2026-07-28 round that only asks the
    client for input is not a finished call, so it is not recorded; the round that answers is.
    """

    def __init__(self, runtime: AgentRuntime, tools: dict[str, AzureTool], registry: CallRegistry | None = None) -> None:
        self.runtime = runtime
        self.tools = tools
        self.registry = registry if registry is not None else CallRegistry()
        self._traced = _tracing_on()

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call" or ctx.request_id is None:
            return await call_next(ctx)
        params = ctx.params or {}
        name = params.get("name")
        raw = params.get("arguments") if isinstance(params.get("arguments"), dict) else None
        record: dict[str, Any] = {
            "kind": "tool",
            "tool": name,
            "arguments": recorded_arguments(self.tools.get(name) if isinstance(name, str) else None, raw),
            # every call has a correlation id, also one that fails before reaching Azure
            "correlation_id": str(uuid.uuid4()),
        }
        caller = request_caller(getattr(ctx, "request", None))
        if caller is not None:
            record["caller"] = caller.describe()
        if self._traced:
            from azure_agent_mcp.telemetry.tools import annotate_call_start

            request = getattr(ctx, "request", None)
            headers = getattr(request, "headers", None)
            annotate_call_start(self.runtime.options.transport, headers.get("mcp-session-id") if headers else None)
        entry = self.registry.open(name if isinstance(name, str) else None)
        token = _tool_record.set(record)
        entry_token = _in_flight.set(entry)
        started = time.perf_counter()
        try:
            try:
                with anyio.CancelScope() as scope:
                    entry.scope = scope
                    result = await call_next(ctx)
                if scope.cancelled_caught:  # cancelled by the registry before its tool body ran
                    raise _Cancelled
            except (anyio.get_cancelled_exc_class(), _Cancelled):
                # The client cancelled, went away, or the server is shutting down: the call still gets its
                # record. Its worker (if any) sends nothing more: the control refuses every next request.
                reason = entry.control.cancel_reason or "client"
                entry.control.cancel(reason)
                record.update(status="cancelled", cancelled_by=reason, error_code="Cancelled")
                with anyio.CancelScope(shield=True):
                    await self._write(record, started)
                if scope.cancelled_caught:
                    from mcp.shared.exceptions import MCPError

                    raise MCPError(code=-32000, message=cancelled_failure(reason).content[0].text) from None
                raise
            except Exception as exc:
                record.setdefault("status", "error")
                record.setdefault("error_code", type(exc).__name__)
                await self._write(record, started)
                raise
            if isinstance(result, InputRequiredResult) or (
                isinstance(result, dict) and result.get("resultType") == "input_required"
            ):
                return result
            if "status" not in record:  # answered by the SDK: unknown tool or invalid arguments
                is_error = getattr(result, "is_error", None)
                if isinstance(result, dict):
                    is_error = result.get("isError")
                record.update(status="error" if is_error else "ok", decision="error" if is_error else "allow")
                record["error_code"] = "InvalidRequest" if is_error else None
            unrecorded = await self._write(record, started, result)
            return unrecorded or result
        finally:
            _in_flight.reset(entry_token)
            _tool_record.reset(token)
            self.registry.close(entry)

    async def _write(self, record: dict[str, Any], started: float, result: Any = None) -> CallToolResult | None:
        """Append the call's record, unless its worker thread already did; when the audit refuses it,
        the answer is withheld (fail closed)."""
        entry = _in_flight.get()
        if entry is not None and not entry.claim_record():
            return entry.record_refusal  # written (or refused) by the worker, which answered with it
        # off the event loop, which serves every other HTTP client meanwhile
        return await anyio.to_thread.run_sync(functools.partial(write_record, self.runtime, record, started, result))


def write_record(runtime: AgentRuntime, record: dict[str, Any], started: float, result: Any = None) -> CallToolResult | None:
    """Append a call's record (blocking: call it off the event loop); the error answer when the audit refuses it."""
    record.setdefault("session_id", runtime.default_session.id)
    record.setdefault("duration_ms", round((time.perf_counter() - started) * 1000, 3))
    # a snapshot: a cancelled call's abandoned worker may still touch the dict
    final = {k: v for k, v in dict(record).items() if v is not None}
    log_call(final, result)
    if _tracing_on():
        from azure_agent_mcp.telemetry.tools import annotate_call_record

        annotate_call_record(final)
    # One fsync per call: a call that sent requests already fsynced their intents, so its own
    # record rides on the next fsync; a call that sent nothing makes its record durable itself.
    durable = not record.get("intents")
    try:
        runtime.audit.append(final, durable=durable)
    except AuditError as exc:
        _LOG.warning("tool call %s (%s): its audit record could not be written: %s",
                     record.get("correlation_id"), record.get("tool"), exc)
        return error_payload(exc)
    return None


def _tracer_provider_installed() -> bool:
    """Whether anyone (our telemetry, or an OpenTelemetry distro or auto-instrumentation) set a tracer provider."""
    from opentelemetry import trace  # the SDK imports the OpenTelemetry API already: no start-up cost

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _tracing_on() -> bool:
    from azure_agent_mcp import telemetry

    running = telemetry.active()
    return running is not None and running.tracer is not None


class _Cancelled(Exception):
    """The registry cancelled a call's scope (shutdown) before its tool body ran."""


def log_call(record: dict[str, Any], result: Any = None) -> None:
    """The stderr line of a failed or cancelled call (``CALL_LOG``, WARNING); nothing for a call that succeeded."""
    status = record.get("status")
    if status not in ("error", "cancelled"):
        return
    error: dict[str, Any] = {}
    content = result.get("structuredContent") if isinstance(result, dict) else getattr(result, "structured_content", None)
    if isinstance(content, dict) and isinstance(content.get("error"), dict):
        error = content["error"]
    fields = [f"tool={record.get('tool')}", f"code={record.get('error_code') or error.get('code')}"]
    if status == "cancelled":
        fields.append(f"by={record.get('cancelled_by')}")
    for key in ("status", "cause", "endpoint", "retry_after"):
        value = error.get(key)
        if value is not None:
            fields.append(f"{'http_status' if key == 'status' else key}={value}")
    fields += [
        f"correlation_id={record.get('correlation_id')}",
        f"session_id={record.get('session_id')}",
        f"duration_ms={record.get('duration_ms')}",
    ]
    CALL_LOG.warning("tool call %s: %s", "cancelled" if status == "cancelled" else "failed", " ".join(fields))


class AgentMCPServer(MCPServer):
    """An MCPServer whose ``tools/list`` leaves out the tools the active policy can never allow.

    Hidden tools stay registered so that a client calling one anyway gets the policy's refusal,
    with its rule, rather than a bare "unknown tool".
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_tools: set[str] = set()

    async def list_tools(self) -> list[Any]:
        return [tool for tool in await super().list_tools() if tool.name not in self.hidden_tools]


def build_server(runtime: AgentRuntime, *, call_timeout: float | None = DEFAULT_CALL_TIMEOUT) -> AgentMCPServer:
    """The MCP server; ``call_timeout`` is each tool call's deadline in seconds (None or 0: none)."""
    server = AgentMCPServer(
        name="azure-agent-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )
    tools = catalog(devops=bool(runtime.options.devops_organization))
    server.calls = CallRegistry(call_timeout=call_timeout or None)  # type: ignore[attr-defined]
    server.middleware.append(ToolAuditMiddleware(runtime, {tool.name: tool for tool in tools}, server.calls))  # type: ignore[attr-defined]
    if _tracing_on():
        from azure_agent_mcp.telemetry.tools import HeaderTraceContext

        server.middleware.insert(0, HeaderTraceContext())  # before the SDK's tools/call span
    elif not _tracer_provider_installed():
        # The SDK's span per message is a no-op without a tracer provider, yet still costs its
        # middleware hop, the trace-context extraction and a span context on every call.
        server.middleware[:] = [m for m in server.middleware if type(m).__name__ != "OpenTelemetryMiddleware"]
    for tool in tools:
        _register(server, tool, runtime)
        if not visible(tool, runtime):
            server.hidden_tools.add(tool.name)
    return server


def _annotations(read_only: bool, destructive: bool, tool: AzureTool) -> ToolAnnotations:
    """The hints, leaving out what MCP's defaults already say, because every byte is in ``tools/list``.

    Defaults (MCP 2025-06-18): not read-only, destructive, not idempotent, open world. The
    destructive and idempotent hints mean something only for a tool that is not read-only.
    """
    if read_only:
        return ToolAnnotations(read_only_hint=True, open_world_hint=False if tool.local_only else None)
    return ToolAnnotations(  # read-only and idempotent hints left out: false is their default
        destructive_hint=destructive,  # said either way: a client must never have to guess this one
        idempotent_hint=True if tool.idempotent else None,
        open_world_hint=False if tool.local_only else None,
    )


def _meta(tool: AzureTool) -> dict[str, Any] | None:
    """``secretBearing`` on the tools that return secrets. The operations a tool may request are
    published by ``policy_explain(tool=...)``, with the active policy's decision for each, not here:
    ``tools/list`` is paid for by every chat."""
    return {f"{META_PREFIX}secretBearing": True} if tool.secret_bearing else None


def _register(server: MCPServer, tool: AzureTool, runtime: AgentRuntime) -> None:
    methods: list[str] = []
    read_only, destructive = tool.read_only, tool.destructive
    if tool.name == "arm_request":
        methods = allowed_arm_methods(runtime)
        read_only = set(methods) <= {"GET"}
        destructive = "DELETE" in methods or "PUT" in methods or "POST" in methods
    fn = _tool_function(tool, runtime)
    server.add_tool(
        fn,
        name=tool.name,
        description=tool.description,
        annotations=_annotations(read_only, destructive, tool),
        meta=_meta(tool),
        structured_output=False,
    )
    registered = server._tool_manager.get_tool(tool.name)
    registered.parameters = compact_input_schema(registered.parameters)
    if tool.output_schema is not None:
        # published as outputSchema; the SDK advertises a schema set on the metadata without re-validating
        registered.fn_metadata.output_schema = tool.output_schema
    if methods:  # the advertised enum follows the policy
        registered.parameters["properties"]["method"]["enum"] = methods


def _tool_function(tool: AzureTool, runtime: AgentRuntime) -> Any:
    hints = typing.get_type_hints(tool.run, include_extras=True)
    parameters = [
        param.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(name, param.annotation))
        for name, param in list(inspect.signature(tool.run).parameters.items())[1:]
    ]
    resolver = (tool.resolver or make_resolver)(tool, runtime, parameters)
    confirmation_type = Annotated[ElicitationResult[Approval], Resolve(resolver)]

    async def call(ctx: Context, confirmation: Any, **arguments: Any) -> CallToolResult:
        return await run_tool_call(tool, runtime, ctx, confirmation, arguments)

    call.__name__ = call.__qualname__ = tool.name
    call.__doc__ = tool.description
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            *parameters,
            inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context),
            inspect.Parameter("confirmation", inspect.Parameter.KEYWORD_ONLY, annotation=confirmation_type),
        ],
        return_annotation=CallToolResult,
    )
    call.__annotations__ = {
        **{p.name: p.annotation for p in parameters},
        "ctx": Context,
        "confirmation": confirmation_type,
        "return": CallToolResult,
    }
    return call


def _client_name(ctx: Context) -> str | None:
    try:
        params = ctx.session.client_params
    except Exception:
        return None
    info = getattr(params, "client_info", None) if params is not None else None
    return getattr(info, "name", None)


async def run_tool_call(
    tool: AzureTool, runtime: AgentRuntime, ctx: Context, confirmation: Any, arguments: dict[str, Any]
) -> CallToolResult:
    started = time.perf_counter()
    headers = ctx.headers
    record = _tool_record.get()
    standalone = record is None  # called without the middleware (MCPServer.call_tool in-process)
    if record is None:
        record = {"kind": "tool", "tool": tool.name, "correlation_id": str(uuid.uuid4())}
    entry = _in_flight.get()
    if entry is None:
        entry = InFlight(CallControl(DEFAULT_CALL_TIMEOUT), tool.name)
    control = entry.control
    record.update(arguments=recorded_arguments(tool, arguments), client=_client_name(ctx))
    if entry.refused or control.cancel_reason == "shutdown":
        result = failure(
            "ServerShuttingDown", "The server is shutting down and accepts no new calls; nothing was sent to Azure.",
            hint="Call again once the server has restarted.",
        )
        return _finish(runtime, record, started, result, write=standalone)
    caller = caller_of(ctx)
    if caller is not None:
        record["caller"] = caller.describe()
    try:
        held = runtime.begin_call(headers, caller)  # held against eviction until the worker is done with it
    except SessionHeaderError as exc:
        hint = "Send an id of 1-128 characters from [A-Za-z0-9._:-]."
        return _finish(runtime, record, started, failure("InvalidSessionId", str(exc), hint=hint), write=standalone)
    except SessionOwnershipError as exc:  # the HTTP layer refuses these first; this is the second line
        hint = "Name an agent session of your own, or send no X-Agent-Session-Id header."
        record["decision"] = "deny"
        return _finish(runtime, record, started, failure(exc.code, str(exc), hint=hint), write=standalone)
    except SessionLimitReached as exc:
        result = failure(exc.code, str(exc), hint=f"Retry in {exc.retry_after} s, or raise --max-sessions.")
        return _finish(runtime, record, started, result, write=standalone)
    lease = _Lease(runtime, held)
    try:
        return await _call_in_session(tool, runtime, ctx, confirmation, arguments, record, started, entry, lease,
                                      standalone, caller)
    finally:
        if not lease.handed_over:  # answered before its worker started: nothing else releases it
            lease.release()


@dataclass(eq=False)
class _Lease:
    """One call's hold on its agent session; released once, by the worker when there is one."""

    runtime: AgentRuntime
    held: SessionEntry
    handed_over: bool = False
    _released: bool = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.runtime.end_call(self.held)


async def _call_in_session(
    tool: AzureTool, runtime: AgentRuntime, ctx: Context, confirmation: Any, arguments: dict[str, Any],
    record: dict[str, Any], started: float, entry: InFlight, lease: _Lease, standalone: bool, caller: Any,
) -> CallToolResult:
    held = lease.held
    headers = ctx.headers
    control = entry.control
    session = held.session
    record["session_id"] = session.id

    verdict = _verdict(confirmation)
    if verdict.status == "declined":
        if tool.resolver is not None:
            from azure_agent_mcp.server.access_approval import note_declined

            note_declined(runtime, tool, session.id, arguments, verdict.hint or "declined")
        result = failure(
            "ConfirmationDeclined", "The user declined the operation; nothing was sent to Azure.", hint=verdict.hint
        )
        record["decision"] = "declined"
        return _finish(runtime, record, started, result, write=standalone)
    if verdict.status in ("denied", "cannot-confirm"):
        decision = verdict.decision
        code = "PolicyDenied" if verdict.status == "denied" else "ConfirmationUnavailable"
        message = verdict.message or (decision.reason if decision else "Denied by policy.")
        result = failure(code, message, decision=decision, hint=verdict.hint or (decision.hint if decision else ""))
        record.update(_decision_fields(decision), decision="deny")
        return _finish(runtime, record, started, result, write=standalone)
    if verdict.status == "invalid":
        result = failure(verdict.code, verdict.message, hint=verdict.hint)
        return _finish(runtime, record, started, result, write=standalone)

    approved = verdict.approved
    if verdict.status == "approved":
        approved = approved_keys(tool, runtime, headers, arguments, caller)
        record["decision"] = "confirmed"

    def work() -> CallToolResult:
        try:
            result = _work()
        finally:
            lease.release()
        if standalone or not entry.claim_record():
            return result  # the loop writes the record (in-process call), or already did (cancelled, late)
        # The record is written here, on the call's own thread: the loop needs no second hop for it.
        _finish(runtime, record, started, result)
        refusal = write_record(runtime, record, started, result)
        entry.record_refusal = refusal
        return refusal or result

    def _work() -> CallToolResult:
        # One scope for the whole call, the token request included: it carries the correlation id
        # and the control (deadline, cancellation) that every request of this call is checked against.
        # elicited: the user approved this very call's question (what access_request requires)
        extra: dict[str, Any] = {"approved": approved, "principal": {}, "elicited": verdict.status == "approved"}
        if caller is not None:
            extra["caller"] = record["caller"]
        with call_scope(
            correlation_id=record["correlation_id"],
            session_id=session.id,
            tool=tool.name,
            client_name=record["client"],
            arguments=arguments,
            extra=extra,
            control=control,
        ):
            try:
                session.check()
                azure = runtime.azure_for(held)
                principal = runtime.principal_for(azure) if not tool.local_only else {}
            except Exception as exc:  # session expired, sign-in failed, wrong identity: nothing was sent
                record.update(getattr(exc, "audit_fields", dict)())
                return error_payload(exc)
            record["principal"] = principal
            extra["principal"] = principal
            try:
                output = tool.run(azure, **arguments)
            except Exception as exc:
                record.update(getattr(exc, "audit_fields", dict)())
                return error_payload(exc)
            finally:
                record["intents"] = extra.get("intents")
                if extra.get("grants"):  # sent under temporary grants: the call's record names them
                    record["grants"] = sorted(extra["grants"])
            return success(output, runtime.policy)

    control.start()
    entry.working = True
    lease.handed_over = True  # from here on the worker releases the session
    try:
        result = await _run_worker(work, control, tool.name)
    except anyio.get_cancelled_exc_class():
        # notifications/cancelled, the connection closed, stdin closed: the middleware writes the record
        control.cancel("client")  # keeps the first reason when the server cancelled it
        record.update(status="cancelled", cancelled_by=control.cancel_reason)
        record.setdefault("decision", "allow")  # the call was allowed and had started
        raise
    finally:
        entry.working = False
    if control.cancelled and result is None:
        record.update(status="cancelled", cancelled_by=control.cancel_reason)
        record.setdefault("decision", "allow")  # the call was allowed and had started
        result = cancelled_failure(control.cancel_reason or "client")
    elif result is None:  # the worker is past its deadline and still has not answered
        result = deadline_failure(control.timeout)
    return _finish(runtime, record, started, result, write=standalone)


async def _run_worker(work: Any, control: CallControl, name: str) -> CallToolResult | None:
    """Run ``work`` on a daemon worker thread and wait for it, for its cancellation, or for its deadline.

    The call's one thread hop: the worker also writes the call's audit record, and wakes the loop
    once. Daemon threads of our own (``workers``) rather than anyio's worker pool: a cancelled call's worker may still be waiting
    on an HTTP answer, and the process must be able to exit without waiting for it (its next
    request is refused by the enforcement point). Returns None when the call was cancelled or
    passed its deadline (plus ``DEADLINE_SLACK``) before the worker answered.
    """
    schedule = loop_scheduler()
    wake = anyio.Event()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # pragma: no cover - work() answers every Exception itself
            box["error"] = exc

    control.on_cancel(lambda: schedule(wake.set))
    WORKERS.submit(target, then=lambda: schedule(wake.set))
    left = control.remaining()
    with anyio.move_on_after(None if left is None else left + DEADLINE_SLACK):
        await wake.wait()
    if "error" in box:  # pragma: no cover
        raise box["error"]
    return box.get("result")


def _verdict(confirmation: Any) -> Verdict:
    if isinstance(confirmation, AcceptedElicitation):
        data = confirmation.data
        if isinstance(data, Verdict):
            return data
        if isinstance(data, Approval):
            return Verdict("approved") if data.approve else Verdict("declined", hint="The user answered approve=false.")
    action = getattr(confirmation, "action", "cancel")
    return Verdict("declined", hint=f"The confirmation was {action}ed." if action != "decline" else "")


def _decision_fields(decision: Any) -> dict[str, Any]:
    if decision is None:
        return {}
    return {"operation": decision.operation, "scope": decision.scope, "rule": decision.rule}


def _finish(
    runtime: AgentRuntime, record: dict[str, Any], started: float, result: CallToolResult, write: bool = False
) -> CallToolResult:
    record["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    if record.get("status") != "cancelled":
        record["status"] = "error" if result.is_error else "ok"
    if result.is_error and isinstance(result.structured_content, dict):
        error = result.structured_content.get("error", {})
        if isinstance(error, dict) and record.get("correlation_id"):
            # the id to find this call by: in the audit, on the stderr line, in ARM's Activity Log
            error.setdefault("correlation_id", record["correlation_id"])
        record["error_code"] = error.get("code")
        record.setdefault("operation", error.get("operation"))
        record.setdefault("scope", error.get("scope"))
        record.setdefault("rule", error.get("rule"))
        record.setdefault("decision", "deny" if error.get("rule") else "error")
    else:
        record.setdefault("decision", "allow")
    if write:
        final = {k: v for k, v in record.items() if v is not None}
        log_call(final, result)
        try:
            runtime.audit.append(final, durable=not record.get("intents"))
        except AuditError as exc:
            return error_payload(exc)
    return result
