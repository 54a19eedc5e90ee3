"""The Microsoft Entra SDK auth sidecar's contract, served by the sandbox under ``/_sidecar``.

The real sidecar is a container next to the agent holding the blueprint's credential, so the
agent process never does. The sandbox plays that container (loopback clients only, as the real
one's local-caller restriction), with the same HTTP contract:

``GET /_sidecar/AuthorizationHeaderUnauthenticated/{apiName}?AgentIdentity=..&AgentUsername=..|AgentUserId=..``
  -> 200 ``{"authorizationHeader": "Bearer <token>"}``; failures are ``application/problem+json``
  (400 for a request it cannot resolve, 401 when Entra refused a token request).
``GET /_sidecar/healthz`` -> 200 ``Healthy``.

API names: ``arm`` (ARM's audience), ``vault`` (Key Vault's), ``loganalytics`` and ``devops``
(Azure DevOps' application id); ``optionsOverride.Scopes``
replaces the configured scopes and ``optionsOverride.AcquireTokenOptions.Claims`` carries a
resource's claims challenge (answered without the cache), as in the real sidecar. Precedence of
the agent parameters is the real sidecar's: with ``AgentIdentity``, ``AgentUsername`` wins over
``AgentUserId``; without it both are ignored and the blueprint's own app token is returned.

It performs Entra Agent ID's exchanges in-process against the sandbox's token service and records
each as a ``token`` log entry (``via: "sidecar"``), so token requests are counted the same way as a
client's. Like the real one it caches tokens in memory until five minutes before they expire.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode

from azure_agent_mcp.netaddr import is_loopback
from azure_agent_mcp.sandbox.agent_world import BLUEPRINT_CLIENT_ID, TOKEN_EXCHANGE_SCOPE
from azure_agent_mcp.sandbox.entra_errors import JWT_BEARER_ASSERTION, AadError
from azure_agent_mcp.sandbox.protocol import Request, Response

API_SCOPES = {
    "arm": "https://management.azure.com/.default",
    "vault": "https://vault.azure.net/.default",
    "loganalytics": "https://api.loganalytics.io/.default",
    "devops": "499b84ac-1321-427f-aa17-267ca6975798/.default",
}
CACHE_MARGIN_SECONDS = 300
_PROBLEM_TITLES = {
    400: ("https://tools.ietf.org/html/rfc9110#section-15.5.1", "Bad Request"),
    401: ("https://tools.ietf.org/html/rfc9110#section-15.5.2", "Unauthorized"),
    403: ("https://tools.ietf.org/html/rfc9110#section-15.5.4", "Forbidden"),
    404: ("https://tools.ietf.org/html/rfc9110#section-15.5.5", "Not Found"),
    405: ("https://tools.ietf.org/html/rfc9110#section-15.5.6", "Method Not Allowed"),
    500: ("https://tools.ietf.org/html/rfc9110#section-15.6.1", "An error occurred while processing your request."),
    503: ("https://tools.ietf.org/html/rfc9110#section-15.6.4", "Service Unavailable"),
}


def problem(status: int, detail: str, headers: list[tuple[str, str]] | None = None, **log: Any) -> Response:
    """An RFC 9457 problem document, as ASP.NET's ``TypedResults.Problem`` writes it."""
    kind, title = _PROBLEM_TITLES.get(status, ("about:blank", "Error"))
    body = {"type": kind, "title": title, "status": status, "detail": detail, "traceId": uuid.uuid4().hex}
    hdrs = [("content-type", "application/problem+json; charset=utf-8"), *(headers or [])]
    return Response(status, json.dumps(body).encode(), hdrs, {"error_code": title, **log})


class SidecarPlane:
    def __init__(self, state: Any, entra: Any) -> None:
        self.state = state
        self.entra = entra

    def handle(self, request: Request, parts: list[str]) -> Response:
        if not is_loopback(request.client_host):
            return problem(403, "The sidecar answers local callers only.")
        route = [p.lower() for p in parts[1:]]
        if route == ["healthz"] and request.method == "GET":
            return Response(200, b"Healthy", [("content-type", "text/plain")])
        if len(route) == 2 and route[0] == "authorizationheaderunauthenticated":
            if request.method != "GET":
                return problem(405, f"{request.method} is not allowed here; use GET.")
            return self._authorization_header(request, parts[2])
        return problem(404, f"No sidecar endpoint {request.method} {request.path}: use "
                            "/AuthorizationHeaderUnauthenticated/{apiName} or /healthz.")

    # -- the endpoint ---------------------------------------------------------------------------

    def _authorization_header(self, request: Request, api_name: str) -> Response:
        pairs = parse_qsl(request.query_string, keep_blank_values=True)
        override = [v for k, v in pairs if k.lower() == "optionsoverride.scopes" and v]
        scope = " ".join(override) if override else API_SCOPES.get(api_name.lower())
        agent_identity = request.query_ci("AgentIdentity") or None
        username = request.query_ci("AgentUsername") or None
        user_id = request.query_ci("AgentUserId")
        log: dict[str, Any] = {"api_name": api_name, "agent_identity": agent_identity,
                               "agent_user": (username or user_id) if agent_identity else None}
        if scope is None:
            return problem(400, f"Not able to resolve '{api_name}'.", **log)
        if agent_identity and not username and user_id is not None and not _nonempty_guid(user_id):
            return problem(400, "AgentUserId must be a non-empty GUID.", **log)
        challenge = request.query_ci("optionsOverride.AcquireTokenOptions.Claims") or None
        if self.state.sidecar_drops_agent_user:  # the misbehaving sidecar of the pinning tests
            username, user_id = None, None
        user = (username or user_id) if agent_identity else None
        key = (agent_identity or "", user or "", scope)
        cached = self.state.sidecar_cache.get(key)
        if challenge is None and cached is not None and cached[1] - time.time() > CACHE_MARGIN_SECONDS:
            token, hit = cached[0], True
        else:
            try:
                token = self._acquire(agent_identity, username, user_id, scope, challenge)
            except AadError as exc:
                return problem(401, f"AADSTS{exc.code}: {exc.description}", **log)
            hit = False
            if challenge is None:
                self.state.sidecar_cache[key] = (token, int(self.state.tokens.verify(token)["exp"]))
        claims = self.entra.issued_claims(token)
        body = json.dumps({"authorizationHeader": "Bearer " + token}).encode()
        return Response(200, body, [("content-type", "application/json; charset=utf-8"), ("cache-control", "no-store")],
                        {**log, "cache_hit": hit, "issued_claims": claims})

    # -- the exchanges, in-process ------------------------------------------------------------------

    def _acquire(self, agent_identity: str | None, username: str | None, user_id: str | None, scope: str,
                 challenge: str | None) -> str:
        extra = {"claims": challenge} if challenge else {}
        blueprint = self.state.world.sp_by_client_id(BLUEPRINT_CLIENT_ID)
        assert blueprint is not None, "the seed world always has the blueprint"
        own = {"client_id": blueprint.client_id, "client_secret": blueprint.client_secret}
        if not agent_identity:
            return self._grant({**own, "grant_type": "client_credentials", "scope": scope, **extra})
        t1 = self._exchange(("t1", agent_identity), {**own, "grant_type": "client_credentials",
                                                     "scope": TOKEN_EXCHANGE_SCOPE, "fmi_path": agent_identity})
        as_agent = {"client_id": agent_identity, "client_assertion_type": JWT_BEARER_ASSERTION, "client_assertion": t1}
        if not username and not user_id:
            return self._grant({**as_agent, "grant_type": "client_credentials", "scope": scope, **extra})
        t2 = self._exchange(("t2", agent_identity), {**as_agent, "grant_type": "client_credentials",
                                                     "scope": TOKEN_EXCHANGE_SCOPE})
        user = {"username": username} if username else {"user_id": user_id or ""}
        return self._grant({**as_agent, **user, "grant_type": "user_fic", "scope": scope + " openid profile",
                            "user_federated_identity_credential": t2, **extra})

    def _exchange(self, key: tuple[str, ...], form: dict[str, str]) -> str:
        cached = self.state.sidecar_cache.get(key)
        if cached is not None and cached[1] - time.time() > CACHE_MARGIN_SECONDS:
            return cached[0]
        token = self._grant(form)
        self.state.sidecar_cache[key] = (token, int(self.state.tokens.verify(token)["exp"]))
        return token

    def _grant(self, form: dict[str, str]) -> str:
        """One token request to the sandbox's token service, logged as a client's would be."""
        tenant = self.state.tenant_id
        request = Request(method="POST", path=f"/{tenant}/oauth2/v2.0/token", query_string="", headers={},
                          body=urlencode(form).encode(), client_host="127.0.0.1", origin=self.state.origin)
        started = time.perf_counter()
        entry = self.entra.token_log_fields(request)
        entry.update({"time": time.time(), "kind": "token", "method": "POST", "path": request.path, "query": {},
                      "via": "sidecar", "correlation_id": None, "client_request_id": None, "user_agent": "sidecar"})
        try:
            payload, uti, subject = self.entra._grant(request, tenant.lower(), request.form, form["grant_type"], None,
                                                      entry)
        except AadError as exc:
            entry.update({"status": exc.status, "error_code": exc.error, "aadsts": exc.code,
                          "duration_ms": round((time.perf_counter() - started) * 1000, 3)})
            self.state.journal.record(entry)
            raise
        token = payload["access_token"]
        entry.update({"status": 200, "issued_uti": uti, "subject_oid": subject,
                      "issued_claims": self.entra.issued_claims(token),
                      "duration_ms": round((time.perf_counter() - started) * 1000, 3)})
        self.state.journal.record(entry)
        return str(token)


def _nonempty_guid(value: str) -> bool:
    try:
        return uuid.UUID(value) != uuid.UUID(int=0)
    except ValueError:
        return False
