"""The authorization endpoint and the authorization-code grant, with PKCE, for the sandbox's public clients.

The sandbox has no browser UI, so ``/oauth2/v2.0/authorize`` signs in the seeded user named by
``login_hint`` at once and redirects (302) to ``redirect_uri?code=...&state=...``. As in Entra, a
request whose client or redirect URI cannot be trusted gets an error page (400) instead of a
redirect; every other error goes back on the redirect as ``error``/``error_description``.
Redirect URIs are the registered loopback ones, any port (Entra ignores the port for loopback).

PKCE is required with ``S256``: OAuth 2.1 and MCP authorization forbid ``plain``, so the sandbox
refuses it (AADSTS82010, a sandbox code) even though Entra still accepts it. A code lives ten
minutes and is spent by the first redemption attempt, whether it succeeds or not: a second one gets
AADSTS54005, as a replayed code does in Entra. ``prompt=consent`` with the MCP server app's client id
records the hinted user's consent for it to call the requested resource (see ``_consent``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from azure_agent_mcp.sandbox.entra_errors import AadError
from azure_agent_mcp.sandbox.mcp_world import SERVER_APP_RESOURCES, consent_resource
from azure_agent_mcp.sandbox.principals import Consent, PublicClient, ServicePrincipal
from azure_agent_mcp.sandbox.protocol import Request, Response

AUTHORIZATION_CODE_GRANT = "authorization_code"
CODE_LIFETIME = 600
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256 digest, unpadded
_MAX_CODES = 10_000


@dataclass(frozen=True)
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    scope: str
    user_oid: str
    code_challenge: str
    nonce: str | None
    expires_at: float


def _digest(code: str) -> str:
    """Codes are kept by digest, so the sandbox's memory never holds a redeemable code as a key."""
    return hashlib.sha256(code.encode()).hexdigest()


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii", "replace")).digest()).rstrip(b"=").decode()


def redirect_allowed(redirect_uri: str, registered: tuple[str, ...]) -> bool:
    """Entra's loopback rule: scheme, host and path must match a registered URI; the port may be anything."""
    try:
        parts = urlsplit(redirect_uri)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS or parts.username or parts.password \
            or parts.query or parts.fragment:
        return False
    for uri in registered:
        known = urlsplit(uri)
        if known.hostname == parts.hostname and known.path.rstrip("/") == parts.path.rstrip("/"):
            return True
    return False


class AuthorizationCodes:
    """Issues codes at the authorization endpoint and redeems them at the token endpoint."""

    def __init__(self, plane: Any) -> None:
        self.plane = plane
        self.state = plane.state
        self.codes: dict[str, AuthorizationCode] = {}
        self.spent: dict[str, float] = {}  # digest -> when it would have expired (replays answer 54005)

    # -- the authorization endpoint -------------------------------------------------------------

    def authorize(self, request: Request, tenant: str) -> Response:
        query = request.form if request.method == "POST" else request.query
        client_id = query.get("client_id", "")
        if not client_id:
            return _error_page(AadError(400, "invalid_request", 900144,
                                        "The request body must contain the following parameter: 'client_id'."))
        client = self.state.world.public_client(client_id)
        api = self.state.world.sp_by_client_id(client_id) if client is None else None
        if api is not None and api.api_scopes and query.get("prompt") == "consent":
            return self._consent(api, query)
        if client is None:
            known = self.state.world.sp_by_client_id(client_id) is not None
            return _error_page(AadError(
                400, "invalid_request", 50011 if known else 700016,
                f"The redirect URI specified in the request does not match the redirect URIs configured for the "
                f"application '{client_id}' (the sandbox registers redirect URIs for its public clients only)."
                if known else
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.state.world.tenant_id}'."))
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_allowed(redirect_uri, client.redirect_uris):
            return _error_page(AadError(
                400, "invalid_request", 50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
                f"configured for the application '{client_id}'. Registered: " + ", ".join(client.redirect_uris)
                + " (any port)."))
        state = query.get("state")
        try:
            code = self._sign_in(client, redirect_uri, query)
        except AadError as exc:
            if exc.status == 400 and exc.extra.get("page"):
                return _error_page(exc)
            return _redirect(redirect_uri, {
                "error": exc.error, "error_description": f"AADSTS{exc.code}: {exc.description}",
                "error_uri": f"{self.state.origin}/error?code={exc.code}", "state": state,
            }, client_id=client_id, error_code=exc.error, aadsts=exc.code)
        return _redirect(redirect_uri, {"code": code, "state": state, "session_state": secrets.token_hex(16)},
                         client_id=client_id, subject_oid=self.codes[_digest(code)].user_oid)

    def _consent(self, app: ServicePrincipal, query: dict[str, str]) -> Response:
        """``prompt=consent`` for the server app: the hinted user consents to it calling one resource for them.

        Entra would show the consent screen and then redirect to the app; the sandbox records the
        consent and answers a page, which is all an on-behalf-of caller needs.
        """
        hint = query.get("login_hint")
        user = self.state.world.user_by_upn(hint) if hint else None
        if user is None:
            return _error_page(AadError(400, "interaction_required", 50058,
                                        "The sandbox has no sign-in page: pass login_hint=<a seeded user's upn> to "
                                        "consent as that user."))
        try:
            _, _, resource_scopes = self.plane._resource_of(query.get("scope", ""), app=False)
        except AadError as exc:
            return _error_page(exc)
        resource = consent_resource(resource_scopes[0].rstrip("/").rpartition("/")[0])
        if resource not in SERVER_APP_RESOURCES:
            return _error_page(AadError(400, "invalid_request", 650057,
                                        f"Invalid resource. The client has requested access to a resource which isn't "
                                        f"listed in the requested permissions in the client's application "
                                        f"registration. Client app ID: {app.client_id}({app.display_name}). Resource "
                                        f"value from request: {resource}. Resource app ID: -. List of valid resources "
                                        "from app registration: " + ", ".join(SERVER_APP_RESOURCES) + "."))
        self.state.world.consents.add(Consent(user.object_id, app.client_id, resource))
        body = (f"<!DOCTYPE html><html><head><title>Permissions granted</title></head><body><p id=\"consent\">"
                f"{html.escape(user.upn)} consented to {html.escape(app.display_name)} calling "
                f"{html.escape(resource)} on their behalf.</p></body></html>").encode()
        return Response(200, body, [("content-type", "text/html; charset=utf-8")],
                        {"client_id": app.client_id, "subject_oid": user.object_id, "consented": resource})

    def _sign_in(self, client: PublicClient, redirect_uri: str, query: dict[str, str]) -> str:
        response_type = query.get("response_type", "")
        if response_type != "code":
            raise AadError(400, "unsupported_response_type", 70005,
                           f"The response_type '{response_type}' is not supported: the sandbox issues authorization "
                           "codes only (response_type=code).")
        if query.get("response_mode", "query") != "query":
            raise AadError(400, "invalid_request", 70007,
                           f"The response_mode '{query.get('response_mode')}' is not supported: the sandbox answers "
                           "on the query string (response_mode=query).")
        challenge = query.get("code_challenge")
        method = query.get("code_challenge_method", "plain")
        if not challenge:
            raise AadError(400, "invalid_request", 50147,
                           "MissingCodeChallenge: this public client must send PKCE (code_challenge with "
                           "code_challenge_method=S256).")
        if method != "S256":
            raise AadError(400, "invalid_request", 82010,
                           f"The code_challenge_method '{method}' is refused: the sandbox requires S256, as OAuth 2.1 "
                           "and MCP authorization do.")
        if not _CHALLENGE.match(challenge):
            raise AadError(400, "invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
        scope = query.get("scope", "")
        self.plane._resource_of(scope, app=False)
        hint = query.get("login_hint")
        if not hint:
            raise AadError(400, "interaction_required", 50058,
                           "The sandbox has no sign-in page: pass login_hint=<a seeded user's upn> (for example "
                           "developer@sandbox.onmicrosoft.com) and it signs that user in at once.", {"page": True})
        user = self.state.world.user_by_upn(hint)
        if user is None:
            raise AadError(400, "invalid_request", 50034,
                           f"The user account {hint} does not exist in the directory. Seeded users: "
                           + ", ".join(u.upn for u in self.state.world.users) + ".", {"page": True})
        self._expire()
        code = "ac." + secrets.token_urlsafe(48)
        self.codes[_digest(code)] = AuthorizationCode(client.client_id, redirect_uri, scope, user.object_id,
                                                      challenge, query.get("nonce"), time.time() + CODE_LIFETIME)
        return code

    def _expire(self) -> None:
        now = time.time()
        for key in [k for k, c in self.codes.items() if c.expires_at < now] + \
                   [k for k, t in self.spent.items() if t < now]:
            self.codes.pop(key, None)
            self.spent.pop(key, None)
        for table in (self.codes, self.spent):
            while len(table) > _MAX_CODES:
                table.pop(next(iter(table)))

    # -- the token endpoint ---------------------------------------------------------------------

    def redeem(self, form: dict[str, str], markers: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
        client_id = form.get("client_id", "")
        if form.get("client_secret") is not None or form.get("client_assertion") is not None:
            if self.state.world.public_client(client_id) is not None:
                raise AadError(401, "invalid_client", 700025,
                               "Client is public so neither 'client_assertion' nor 'client_secret' should be "
                               "presented.")
        code = form.get("code", "")
        if not code:
            raise AadError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'code'.")
        key = _digest(code)
        held = self.codes.pop(key, None)
        if held is None:
            if key in self.spent:
                raise AadError(400, "invalid_grant", 54005,
                               "OAuth2 Authorization code was already redeemed, please retry with a new valid code "
                               "or use an existing refresh token.")
            raise AadError(400, "invalid_grant", 9002313,
                           "Invalid request. Request is malformed or invalid. (The authorization code was not "
                           "issued by this tenant.)")
        self.spent[key] = held.expires_at
        if held.expires_at < time.time():
            raise AadError(400, "invalid_grant", 70008,
                           "The provided authorization code or refresh token has expired due to inactivity. Send a "
                           "new interactive authorization request for this user and resource.")
        if held.client_id.lower() != client_id.lower():
            raise AadError(400, "invalid_grant", 70000,
                           f"The provided authorization code was issued to client '{held.client_id}', not to "
                           f"'{client_id}'.")
        redirect_uri = form.get("redirect_uri", "")
        if redirect_uri != held.redirect_uri:
            raise AadError(400, "invalid_grant", 500112,
                           f"The reply address '{redirect_uri}' does not match the reply address "
                           f"'{held.redirect_uri}' provided when requesting the authorization code.")
        verifier = form.get("code_verifier")
        if not verifier:
            raise AadError(400, "invalid_grant", 50148,
                           "The code_verifier does not match the code_challenge supplied in the authorization "
                           "request for PKCE. (No code_verifier was sent.)")
        if not secrets.compare_digest(s256(verifier), held.code_challenge):
            raise AadError(400, "invalid_grant", 501481,
                           "The Code_Verifier does not match the code_challenge supplied in the authorization "
                           "request.")
        user = self.plane._user_by_oid(held.user_oid)
        return self.plane._user_tokens(user, held.client_id, form.get("scope") or held.scope, markers, "pwd",
                                       nonce=held.nonce)


def _redirect(redirect_uri: str, params: dict[str, str | None], **log: Any) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return Response(302, b"", [("location", f"{redirect_uri}?{query}"), ("cache-control", "no-store")], dict(log))


def _error_page(exc: AadError) -> Response:
    message = html.escape(f"AADSTS{exc.code}: {exc.description}")
    body = (f"<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
            f"<h1>Sorry, but we're having trouble signing you in.</h1><p id=\"error\">{html.escape(exc.error)}</p>"
            f"<p id=\"error_description\">{message}</p></body></html>").encode()
    return Response(exc.status, body, [("content-type", "text/html; charset=utf-8")],
                    {"error_code": exc.error, "aadsts": exc.code})
