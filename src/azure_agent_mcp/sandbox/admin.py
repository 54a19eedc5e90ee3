"""The admin API under ``/_sandbox`` (loopback clients only): read the log, steer the sandbox.

GET  requests?kind=token|arm|vault|entra|sidecar|devops|graph&since=SEQ  log entries with seq > since -> {"value": [...]}
GET  stats                                          counters
GET|POST|DELETE faults                              {path, count, status, retry_after, latency_ms, drop}
POST reset                                          seed world, switches, faults, log restored
GET|POST agent-rule                                 {"enabled": bool}
GET|POST wrong-identity                             {"enabled": bool}: agent identities get the
                                                    shared project identity's tokens (pinning tests)
GET|POST sidecar-drops-agent-user                   {"enabled": bool}: the sidecar ignores AgentUsername /
                                                    AgentUserId and answers as the agent identity itself
GET|POST obo-answers-for-another-user               {"enabled": bool}: the on-behalf-of grant answers with a
                                                    token for another user than the assertion's (tests that
                                                    the server refuses it)
GET|POST|DELETE claims-challenges                   {path, claims}
POST certificates                                   {client_id, certificate: PEM} for client assertions
GET|POST logs-record-limit                          {"limit": int}: Log Analytics' result record limit
                                                    (a bigger result is cut and marked PartialError)
GET  devops/state                                   the Azure DevOps organization as plain data: work items,
                                                    pull requests and threads, refs, pushes, object counts
POST devops/pull-request-comments                   {repository, pull_request_id, author: upn, content,
                                                    thread_id?}: a member comments (the demo's reviewer)
GET|POST|DELETE consents                            {user, resource, client_id?}: delegated consents
                                                    (on-behalf-of needs one per user, client, resource)
GET|POST clock                                      {"advance": "PT11M" | seconds} moves the sandbox clock
                                                    forward -> {"now", "epoch", "offset_seconds"}
GET  pim                                            PIM's requests, schedules, active instances and
                                                    eligibilities (test assertions)
POST pim/approvals                                  {"request": name, "decision": "Approve" | "Deny"}: the
                                                    approver's decision on a PendingApproval request
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.netaddr import is_loopback
from azure_agent_mcp.sandbox import pim, pim_docs
from azure_agent_mcp.sandbox.clock import ClockAdvanceError, parse_advance
from azure_agent_mcp.sandbox.devops_admin import DevOpsAdminError, add_pull_request_comment, devops_state
from azure_agent_mcp.sandbox.entra import certificate_entry
from azure_agent_mcp.sandbox.faults import FaultSpecError, parse_claims_challenge, parse_fault
from azure_agent_mcp.sandbox.mcp_world import consent_resource, consents_listing
from azure_agent_mcp.sandbox.pim_requests import approve
from azure_agent_mcp.sandbox.principals import MCP_SERVER_CLIENT_ID, Consent
from azure_agent_mcp.sandbox.protocol import BadRequestBodyError, Request, Response, json_response

KINDS = ("token", "arm", "vault", "logs", "entra", "sidecar", "devops", "graph")


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AdminPlane:
    def __init__(self, state: Any) -> None:
        self.state = state

    def handle(self, request: Request, parts: list[str]) -> Response:
        try:
            if not is_loopback(request.client_host):
                raise AdminError(403, "The sandbox admin API answers loopback clients only.")
            return self._route(request, [p.lower() for p in parts[1:]])
        except AdminError as exc:
            return json_response(exc.status, {"error": {"code": "InvalidAdminRequest", "message": exc.message}})

    def _json(self, request: Request) -> Any:
        try:
            return request.json()
        except BadRequestBodyError as exc:
            raise AdminError(400, f"The body is not valid JSON: {exc}.") from exc

    def _route(self, request: Request, route: list[str]) -> Response:
        method = request.method
        name = "/".join(route)
        state = self.state
        if name == "requests" and method == "GET":
            kind = request.query.get("kind") or None
            if kind is not None and kind not in KINDS:
                raise AdminError(400, f"'kind' must be one of {', '.join(KINDS)}.")
            try:
                since = int(request.query.get("since") or 0)
            except ValueError as exc:
                raise AdminError(400, "'since' must be an integer sequence number.") from exc
            return json_response(200, {"value": state.journal.entries(kind, since)})
        if name == "stats" and method == "GET":
            return json_response(200, state.journal.stats())
        if name == "reset" and method == "POST":
            state.reset()
            return json_response(200, {"reset": True})
        if name == "faults":
            if method == "POST":
                try:
                    fault = parse_fault(self._json(request))
                except FaultSpecError as exc:
                    raise AdminError(400, str(exc)) from exc
                state.faults.append(fault)
                return json_response(200, {"fault": fault.describe()})
            if method == "DELETE":
                state.faults.clear()
                return json_response(200, {"value": []})
            if method == "GET":
                return json_response(200, {"value": [f.describe() for f in state.faults]})
        if name == "logs-record-limit":
            if method == "POST":
                limit = (self._json(request) or {}).get("limit")
                if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                    raise AdminError(400, "'limit' must be a positive integer.")
                state.logs_record_limit = limit
            return json_response(200, {"limit": state.logs_record_limit})
        if name == "agent-rule":
            if method == "POST":
                state.agent_rule = self._switch(request)
            if method in ("POST", "GET"):
                return json_response(200, {"enabled": state.agent_rule})
        if name == "wrong-identity":
            if method == "POST":
                state.set_wrong_identity(self._switch(request))
            if method in ("POST", "GET"):
                return json_response(200, {"enabled": state.wrong_identity})
        if name == "sidecar-drops-agent-user":
            if method == "POST":
                state.set_sidecar_drops_agent_user(self._switch(request))
            if method in ("POST", "GET"):
                return json_response(200, {"enabled": state.sidecar_drops_agent_user})
        if name == "obo-answers-for-another-user":
            if method == "POST":
                state.obo_answers_for_another_user = self._switch(request)
            if method in ("POST", "GET"):
                return json_response(200, {"enabled": state.obo_answers_for_another_user})
        if name == "claims-challenges":
            if method == "POST":
                try:
                    challenge = parse_claims_challenge(self._json(request))
                except FaultSpecError as exc:
                    raise AdminError(400, str(exc)) from exc
                state.challenges.append(challenge)
                return json_response(200, {"challenge": challenge.describe()})
            if method == "DELETE":
                state.challenges.clear()
                return json_response(200, {"value": []})
            if method == "GET":
                return json_response(200, {"value": [c.describe() for c in state.challenges]})
        if name == "clock":
            if method == "POST":
                body = self._json(request)
                if not isinstance(body, dict) or "advance" not in body:
                    raise AdminError(400, "The body must be {\"advance\": \"PT11M\"} (an ISO 8601 duration) or "
                                          "{\"advance\": 660} (seconds).")
                try:
                    state.clock.advance(parse_advance(body["advance"]))
                except ClockAdvanceError as exc:
                    raise AdminError(400, str(exc)) from exc
            if method in ("GET", "POST"):
                return json_response(200, state.clock.describe())
        if name == "pim" and method == "GET":
            return json_response(200, pim.snapshot(state))
        if name == "pim/approvals" and method == "POST":
            body = self._json(request)
            if not isinstance(body, dict) or not isinstance(body.get("request"), str) or body.get("decision") not in (
                    "Approve", "Deny"):
                raise AdminError(400, "The body must be {\"request\": \"<schedule request name>\", \"decision\": "
                                      "\"Approve\" | \"Deny\"}.")
            try:
                decided = approve(state, body["request"], body["decision"] == "Approve")
            except LookupError as exc:
                raise AdminError(404, str(exc)) from exc
            return json_response(200, pim_docs.schedule_request(state.world, decided))
        if name == "devops/state" and method == "GET":
            return json_response(200, devops_state(state))
        if name == "devops/pull-request-comments" and method == "POST":
            try:
                return json_response(200, add_pull_request_comment(state, self._json(request)))
            except DevOpsAdminError as exc:
                raise AdminError(400, str(exc)) from exc
        if name == "certificates" and method == "POST":
            return self._register_certificate(request)
        if name == "consents":
            if method in ("POST", "DELETE"):
                consent = self._consent(request)
                if method == "POST":
                    state.world.consents.add(consent)
                else:
                    state.world.consents.discard(consent)
            if method in ("GET", "POST", "DELETE"):
                return json_response(200, {"value": consents_listing(state.world)})
        raise AdminError(404, f"No admin endpoint {method} /_sandbox/{name}. See the admin module's docstring.")

    def _switch(self, request: Request) -> bool:
        """The value of an on/off switch's POST body."""
        body = self._json(request)
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            raise AdminError(400, "The body must be {\"enabled\": true} or {\"enabled\": false}.")
        return body["enabled"]

    def _consent(self, request: Request) -> Consent:
        body = self._json(request)
        if not isinstance(body, dict) or not isinstance(body.get("user"), str) or not isinstance(
                body.get("resource"), str):
            raise AdminError(400, "The body must be {\"user\": \"<upn or object id>\", \"resource\": "
                                  "\"https://management.azure.com\", \"client_id\": \"<optional; the MCP server "
                                  "app by default>\"}.")
        world = self.state.world
        user = world.user_by_upn(body["user"]) or world.user_by_oid(body["user"])
        if user is None:
            raise AdminError(404, f"No seeded user {body['user']!r}; users: " + ", ".join(u.upn for u in world.users))
        client_id = body.get("client_id") or MCP_SERVER_CLIENT_ID
        app = world.sp_by_client_id(client_id) if isinstance(client_id, str) else None
        if app is None:
            raise AdminError(404, f"No app with client id {client_id!r}.")
        return Consent(user.object_id, app.client_id, consent_resource(body["resource"]))

    def _register_certificate(self, request: Request) -> Response:
        body = self._json(request)
        if not isinstance(body, dict) or not isinstance(body.get("client_id"), str) or not isinstance(
                body.get("certificate"), str):
            raise AdminError(400, "The body must be {\"client_id\": \"...\", \"certificate\": \"-----BEGIN "
                                  "CERTIFICATE-----...\"}.")
        sp = self.state.world.sp_by_client_id(body["client_id"])
        if sp is None:
            raise AdminError(404, f"No service principal with client id {body['client_id']}.")
        try:
            entry = certificate_entry(body["certificate"])
        except ValueError as exc:
            raise AdminError(400, f"The certificate is not a PEM X.509 certificate: {exc}.") from exc
        if not any(c["x5t#S256"] == entry["x5t#S256"] for c in sp.certificates):
            sp.certificates.append(entry)
        return json_response(200, {"client_id": sp.client_id, "thumbprint": entry["sha1_hex"],
                                   "certificates": len(sp.certificates)})
