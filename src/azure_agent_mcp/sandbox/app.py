"""The ASGI application that puts the planes behind one origin, with faults, limits and the log.

Dispatch by first path segment: ``/_sandbox`` admin, ``/_sidecar`` the Entra SDK auth sidecar,
``/vaults`` Key Vault, ``/loganalytics`` Log Analytics' query API, ``/devops`` and ``/vssps`` Azure
DevOps (dev.azure.com and vssps.dev.azure.com), ``/v1.0|beta/servicePrincipals`` Microsoft Graph's agent
identities (``graph_agents``), Entra's tenant paths, everything
else ARM. Faults apply to every plane
but the admin API before normal handling. Bodies over 4 MB get 413; an unexpected failure
becomes a 500 in ARM's shape. The server keeps serving whatever it is sent. Handlers are synchronous: the state is in memory and cheap to touch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from azure_agent_mcp.sandbox.activity_room import ActivityLogRoom
from azure_agent_mcp.sandbox.admin import AdminPlane
from azure_agent_mcp.sandbox.arm import ArmPlane
from azure_agent_mcp.sandbox.deployments import DeploymentsRoom
from azure_agent_mcp.sandbox.devops import DevOpsPlane
from azure_agent_mcp.sandbox.devops_errors import DevOpsFailure, devops_error
from azure_agent_mcp.sandbox.entra import EntraPlane
from azure_agent_mcp.sandbox.graph_agents import GraphAgentsPlane
from azure_agent_mcp.sandbox.graph_agents import handles as graph_handles
from azure_agent_mcp.sandbox.journal import redact_query
from azure_agent_mcp.sandbox.keyvault import VaultPlane
from azure_agent_mcp.sandbox.loganalytics import LogAnalyticsPlane
from azure_agent_mcp.sandbox.metrics import MetricsRoom
from azure_agent_mcp.sandbox.pim import PimRoom
from azure_agent_mcp.sandbox.protocol import Request, Response, arm_error, json_response
from azure_agent_mcp.sandbox.resourcegraph import ResourceGraphRoom
from azure_agent_mcp.sandbox.sidecar import SidecarPlane, problem
from azure_agent_mcp.sandbox.web_actions import WebActionsRoom

MAX_BODY = 4 * 1024 * 1024
TRANSPORT_KEY = "azure_agent_mcp.sandbox.transport"
logger = logging.getLogger("azure_agent_mcp.sandbox")


class BodyTooLargeError(Exception):
    pass


class SandboxApp:
    def __init__(self, state: Any) -> None:
        self.state = state
        self.entra = EntraPlane(state)
        self.arm = ArmPlane(state)
        self.arm.listeners.append(state.activity.listener)
        self.arm.rooms.extend([ActivityLogRoom(self.arm), MetricsRoom(self.arm)])
        self.arm.rooms.append(DeploymentsRoom(self.arm))
        self.arm.rooms.append(ResourceGraphRoom(state))
        self.arm.rooms.extend([PimRoom(self.arm), WebActionsRoom(self.arm)])
        self.vault = VaultPlane(state)
        self.logs = LogAnalyticsPlane(state)
        self.devops = DevOpsPlane(state)
        self.admin = AdminPlane(state)
        self.sidecar = SidecarPlane(state, self.entra)
        self.graph = GraphAgentsPlane(state)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        client = scope.get("client") or ("", 0)
        request = Request(
            method=scope["method"].upper(),
            path=scope.get("path") or "/",
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=b"",
            client_host=client[0] if client else "",
            origin=self.state.origin,
            raw_path=(scope.get("raw_path") or b"").decode("latin-1") or (scope.get("path") or "/"),
        )
        parts = [p for p in request.path.split("/") if p]
        first = parts[0].lower() if parts else ""
        lowered = [p.lower() for p in parts]
        if first == "_sandbox":
            kind = "admin"
        elif first == "_sidecar":
            kind = "sidecar"
        elif first == "vaults":
            kind = "vault"
        elif first == "loganalytics":
            kind = "logs"
        elif first in ("devops", "vssps"):
            kind = "devops"
        elif graph_handles(lowered):
            kind = "graph"
        elif self.entra.handles(lowered):
            kind = "token" if lowered[-3:] == ["oauth2", "v2.0", "token"] else "entra"
        else:
            kind = "arm"

        try:
            request.body = await self._read_body(receive, headers)
        except BodyTooLargeError:
            response = arm_error(413, "RequestEntityTooLarge",
                                 f"The request body is larger than the sandbox limit of {MAX_BODY} bytes.",
                                 [("connection", "close")])
            if kind != "admin":
                self._log(request, kind, response, started, {})
            await self._send(send, response, request)
            return

        if kind != "admin":
            fault = self.state.take_fault(request.path)
            if fault is not None:
                if fault.latency_ms:
                    await asyncio.sleep(fault.latency_ms / 1000)
                extra = {"fault": True, **self._plane_fields(request, kind)}
                if fault.drop:
                    self._log(request, kind, None, started, {**extra, "dropped": True})
                    await self._drop(scope)
                    return
                if fault.status is not None:
                    response = self._fault_response(kind, fault)
                    self._log(request, kind, response, started, extra)
                    await self._send(send, response, request)
                    return

        try:
            if kind == "admin":
                response = self.admin.handle(request, parts)
            elif kind == "vault":
                response = self.vault.handle(request, parts)
            elif kind == "logs":
                response = self.logs.handle(request, parts)
            elif kind == "devops":
                response = self.devops.handle(request, parts)
            elif kind == "sidecar":
                response = self.sidecar.handle(request, parts)
            elif kind == "graph":
                response = self.graph.handle(request, lowered)
            elif kind in ("token", "entra"):
                response = self.entra.handle(request, lowered)
            else:
                response = self.arm.handle(request)
        except Exception as exc:  # the sandbox must keep serving: answer, log, carry on
            logger.exception("sandbox handler failed on %s %s", request.method, request.path)
            message = f"The sandbox failed on this request ({type(exc).__name__}). This is a sandbox bug."
            response = (devops_error(DevOpsFailure(500, "VssServiceResponseException", message)) if kind == "devops"
                        else arm_error(500, "InternalServerError", message))
        if kind != "admin":
            self._log(request, kind, response, started, {})
        await self._send(send, response, request)

    async def _read_body(self, receive: Any, headers: dict[str, str]) -> bytes:
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY:
            raise BodyTooLargeError
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > MAX_BODY:
                raise BodyTooLargeError
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _plane_fields(self, request: Request, kind: str) -> dict[str, Any]:
        """What a plane would have logged, for requests a fault answered before the plane saw them."""
        if kind == "token":
            return self.entra.token_log_fields(request)
        if kind in ("arm", "vault", "logs", "devops"):
            return {"token_session": None, "token_claims": None}
        return {}

    def _fault_response(self, kind: str, fault: Any) -> Response:
        headers = [("retry-after", fault.retry_after)] if fault.retry_after is not None else []
        status = fault.status
        message = f"Injected by the sandbox: a fault matching '{fault.pattern.pattern}' answered HTTP {status}."
        if kind == "sidecar":
            return problem(status, message, headers)
        if kind == "devops":
            return devops_error(DevOpsFailure(status, "VssServiceResponseException", message, headers))
        if kind in ("token", "entra"):
            return json_response(status, {
                "error": "temporarily_unavailable",
                "error_description": f"AADSTS50196: {message}",
                "error_codes": [50196],
            }, headers, error_code="temporarily_unavailable")
        code = {429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable",
                504: "GatewayTimeout"}.get(status, "InjectedFault")
        return arm_error(status, code, message, headers)

    async def _drop(self, scope: dict[str, Any]) -> None:
        transport = (scope.get("state") or {}).get(TRANSPORT_KEY)
        if transport is None:
            raise ConnectionAbortedError("sandbox fault: drop the connection")  # uvicorn answers 500 and closes
        transport.abort()
        for _ in range(3):  # let connection_lost run so the server does not try to answer
            await asyncio.sleep(0)

    async def _send(self, send: Any, response: Response, request: Request) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        correlation = request.headers.get("x-ms-correlation-request-id")
        if correlation:
            headers.append((b"x-ms-correlation-request-id", correlation.encode("latin-1")))
        headers.append((b"x-ms-request-id", uuid.uuid4().hex.encode()))
        headers.append((b"date", self.state.clock.http_date().encode()))  # the sandbox clock's time, not uvicorn's
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    def _log(self, request: Request, kind: str, response: Response | None, started: float,
             extra: dict[str, Any]) -> None:
        entry: dict[str, Any] = {
            "time": time.time(),
            "kind": kind,
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "query": redact_query(request.query),
            "status": response.status if response is not None else None,
            "correlation_id": request.headers.get("x-ms-correlation-request-id"),
            "client_request_id": request.headers.get("client-request-id"),
            "user_agent": request.headers.get("user-agent"),
            # W3C trace context the client propagated (ids only, never a secret)
            "traceparent": request.headers.get("traceparent"),
            "tracestate": request.headers.get("tracestate"),
            "baggage": "baggage" in request.headers,  # whether any was sent, never its value
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        if kind in ("arm", "vault", "logs", "devops"):
            entry["token_session"] = None
            entry["token_claims"] = None
        if response is not None:
            entry.update(response.log)
            if response.status >= 400 and "error_code" not in entry:
                entry["error_code"] = _error_code(response.body)
        entry.update(extra)
        self.state.journal.record(entry)


def _error_code(body: bytes) -> str | None:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return error.get("code")
        if isinstance(error, str):
            return error
    return None
