"""Azure tokens on behalf of an authenticated caller, tagged with the caller's agent session (OBO grant).

``OboProvider`` is the TokenProvider of one (caller, agent session); ``AgentCredential`` wraps it
as for every other kind, so the per-session cache, refresh ahead of expiry, single flight, the
session's end and claims challenges work the same. Every exchange sends the session exactly as
user tokens do (``msal_provider``): ``client_session`` in the query string and the form body, and
the agent claims request as ``forwarded_client_claims``; a resource's challenge goes in
``claims_challenge`` and MSAL merges the two.

Partitioning: one MSAL ConfidentialClientApplication (and token cache) per (caller, session)
rather than one app with MSAL's cache for everyone. MSAL's OBO call does not read its cache (the
AgentCredential in front of it does the caching), but it writes every answer there: one shared
cache would keep every caller's tokens for the life of the process, while a partition's cache
goes with its session. The partitions share one HTTP session and one ``http_cache``, so Entra's
discovery documents are fetched once per server, not per session. A consequence, by MSAL's design:
a 429/5xx from Entra holds back the server app's exchanges for that scope for every caller until
its Retry-After (5 s without one); a throttled app is throttled for all its users anyway, and
retrying harder would only prolong it. Answers that are about one caller (400s) are held per
request, so one caller's refusal never reaches another; but MSAL holds an identical 400 for 60 s,
so after a ConsentRequired the partition starts over with a new client and an ``http_cache`` of its
own: the user's retry after consenting reaches Entra at once instead of meeting the old refusal.

An answer is used only if it is for the caller whose token was exchanged: the same ``oid`` and
``tid`` as the assertion. A token for anyone else (or one that does not say whose it is) is refused
and dropped with the partition's client; nothing is sent with it.

The user assertion is read from ``assertion`` (a callable) at each exchange: the caller's newest
token, so a token refreshed by the MCP client replaces the old one. It is never logged, put in an
error or described.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from azure_agent_mcp.identity.claims import DEFAULT_PROFILE, agent_claims
from azure_agent_mcp.identity.credential import ProviderToken, TokenRequestError, token_request_error
from azure_agent_mcp.identity.errors import CredentialUnavailableError
from azure_agent_mcp.identity.session import AgentSession

CONSENT_CODES = (65001, 65004, 65005)
"""AADSTS codes meaning the user or an administrator has not consented to the server app's permissions."""


class ConsentRequiredError(TokenRequestError):
    """Entra refused the on-behalf-of exchange until the user (or an admin) consents to the server app."""

    def __init__(self, message: str, *, consent_url: str, admin_consent_url: str) -> None:
        super().__init__(message)
        self.consent_url = consent_url
        self.admin_consent_url = admin_consent_url


class OboPrincipalMismatchError(TokenRequestError):
    """The exchange answered with a token for another principal than the caller; it was not used."""

    def __init__(self, message: str, *, caller: dict[str, str], presented: dict[str, str]) -> None:
        super().__init__(message)
        self.caller = caller
        self.presented = presented


def _principal(token: str) -> dict[str, str]:
    from azure_agent_mcp.identity.claims import unverified_jwt_claims

    claims = unverified_jwt_claims(token) if token else {}
    return {name: str(claims[name]) for name in ("oid", "tid", "upn", "preferred_username") if claims.get(name)}


def same_principal(assertion: str, answer: str) -> bool:
    """Whether ``answer`` is for the user of ``assertion``: both name an oid and a tid, and they agree."""
    caller, presented = _principal(assertion), _principal(answer)
    return all(caller.get(name) and presented.get(name) and caller[name].lower() == presented[name].lower()
               for name in ("oid", "tid"))


class OboRefusedError(TokenRequestError):
    """Entra refused the caller's token for on-behalf-of (expired, revoked, wrong audience): sign in again."""


class ServerApp:
    """The MCP server's own app registration: its id, its credential, and what its partitions share."""

    def __init__(self, *, authority_host: str, tenant_id: str, client_id: str, credential: Any,
                 ca_bundle: str | None = None) -> None:
        self.authority_host = authority_host.rstrip("/")
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.credential = credential
        self.ca_bundle = ca_bundle
        self.http_cache: dict[Any, Any] = {}
        self._http: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ServerApp(client_id={self.client_id}, tenant={self.tenant_id}, credential={self.credential.method})"

    @property
    def http(self) -> Any:
        with self._lock:
            if self._http is None:
                from azure_agent_mcp.identity.msal_provider import http_session

                self._http = http_session(self.ca_bundle, throttle_seconds=5)  # MSAL's hold for confidential clients
            return self._http

    def msal_app(self, http_cache: dict[Any, Any] | None = None) -> Any:
        """A new confidential client over its own token cache (one partition), sharing the server's
        ``http_cache`` unless given one of its own."""
        import msal

        from azure_agent_mcp.identity.msal_provider import is_known_authority

        try:
            return msal.ConfidentialClientApplication(
                self.client_id, client_credential=self.credential.msal_credential(),
                authority=f"{self.authority_host}/{self.tenant_id}", http_client=self.http,
                http_cache=self.http_cache if http_cache is None else http_cache, token_cache=msal.TokenCache(),
                instance_discovery=None if is_known_authority(self.authority_host) else False,
            )
        except (ValueError, OSError) as exc:  # an unusable certificate, or discovery failed
            raise CredentialUnavailableError(
                f"cannot set up the server app's client for on-behalf-of ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
            ) from exc

    def consent_urls(self, scopes: tuple[str, ...]) -> tuple[str, str]:
        """(the user's consent URL, the admin consent URL) for the resource of ``scopes``."""
        resource = scopes[0].rsplit("/", 1)[0] if scopes else "https://management.azure.com"
        base = f"{self.authority_host}/{self.tenant_id}"
        user = (f"{base}/oauth2/v2.0/authorize?client_id={self.client_id}&response_type=code"
                f"&scope={quote(resource + '/user_impersonation', safe=':/')}")
        return user, f"{base}/v2.0/adminconsent?client_id={self.client_id}"

    def close(self) -> None:
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()


def server_app_credential(credential: Any) -> Any:
    """The identity module's credential shapes (secret, certificate, assertion file) for an AuthConfig's credential."""
    from azure_agent_mcp.identity.agent_identity import BlueprintCertificate, BlueprintSecret, assertion_from_file

    if credential.secret is not None:
        return BlueprintSecret(credential.secret)
    if credential.certificate_path is not None:
        import os

        return BlueprintCertificate(credential.certificate_path, os.environ.get("AZURE_AGENT_MCP_AUTH_CERTIFICATE_PASSWORD"))
    return assertion_from_file(credential.assertion_file)


class OboProvider:
    """Tokens for one (caller, agent session), exchanged from the caller's token with the OBO grant."""

    kind = "on-behalf-of"
    tagged = True

    def __init__(self, app: ServerApp, session: AgentSession, assertion: Callable[[], str], *,
                 claims_profile: str = DEFAULT_PROFILE) -> None:
        agent_claims(session.id, claims_profile)  # validates the profile now
        self.app = app
        self.session = session
        self.claims_profile = claims_profile
        self.default_tenant = app.tenant_id
        self._assertion = assertion
        self._msal: Any = None
        self._http_cache: dict[Any, Any] | None = None  # the server's shared one until a refusal
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OboProvider(app={self.app.client_id}, session={self.session.id})"

    def _client(self) -> Any:
        with self._lock:
            if self._msal is None:
                self._msal = self.app.msal_app(self._http_cache)
            return self._msal

    def _start_over(self, *, own_http_cache: bool = False) -> None:
        """Drop this partition's client (and what MSAL stored in it); optionally forget what MSAL's
        throttle remembered for it, by giving the next client an http_cache of its own."""
        with self._lock:
            self._msal = None
            if own_http_cache:
                self._http_cache = {}

    def acquire(self, scopes: tuple[str, ...], *, tenant_id: str | None, claims: str | None) -> ProviderToken:
        import requests

        from azure_agent_mcp.identity.msal_provider import session_request, token_service_unavailable

        assertion = self._assertion()
        if not assertion:
            raise CredentialUnavailableError("no caller token to exchange on behalf of (the caller is not signed in)")
        client = self._client()
        data, params, agent = session_request(self.session.id, self.claims_profile)
        started = time.time()
        try:
            result = client.acquire_token_on_behalf_of(
                assertion, list(scopes), claims_challenge=claims, forwarded_client_claims=agent,
                data=dict(data), params=dict(params),
            )
        except requests.RequestException as exc:
            raise TokenRequestError(
                f"could not reach the sign-in authority {self.app.authority_host} ({type(exc).__name__}); check the "
                "network and the CA bundle") from exc
        except Exception as exc:
            unavailable = token_service_unavailable(exc, self.app.http, self.app.authority_host, scopes=scopes)
            if unavailable is not None:
                raise unavailable from None
            raise
        if "access_token" not in result:
            refusal = self._refusal(result, scopes)
            if isinstance(refusal, ConsentRequiredError):
                self._start_over(own_http_cache=True)  # the retry after consenting must reach Entra
            raise refusal
        if not same_principal(assertion, str(result["access_token"])):
            self._start_over()
            raise self._mismatch(assertion, str(result["access_token"]), scopes)
        expires_in = int(result.get("expires_in", 0))
        refresh_in = result.get("refresh_in")
        return ProviderToken(str(result["access_token"]), int(started + expires_in),
                             int(started + int(refresh_in)) if refresh_in else None)

    def _mismatch(self, assertion: str, token: str, scopes: tuple[str, ...]) -> OboPrincipalMismatchError:
        caller, presented = _principal(assertion), _principal(token)

        def who(principal: dict[str, str]) -> str:
            name = principal.get("upn") or principal.get("preferred_username")
            ident = f"oid {principal.get('oid', '?')}, tid {principal.get('tid', '?')}"
            return f"{name} ({ident})" if name else ident

        return OboPrincipalMismatchError(
            f"the on-behalf-of exchange for {' '.join(scopes)} answered with a token for {who(presented)}, not for "
            f"the caller {who(caller)}; it was refused and nothing was sent with it. Check the server app's "
            "token service (authority) and its configuration.",
            caller=caller, presented=presented,
        )

    def _refusal(self, result: dict[str, Any], scopes: tuple[str, ...]) -> Exception:
        from azure_agent_mcp.identity.msal_provider import token_service_unavailable

        unavailable = token_service_unavailable(None, self.app.http, self.app.authority_host, result, scopes)
        if unavailable is not None:
            return unavailable
        error = str(result.get("error") or "")
        codes = {int(c) for c in result.get("error_codes") or [] if str(c).isdigit()}
        resource = scopes[0].rsplit("/", 1)[0] if scopes else "Azure"
        if codes & set(CONSENT_CODES) or result.get("suberror") == "consent_required" or error == "consent_required":
            user, admin = self.app.consent_urls(scopes)
            return ConsentRequiredError(
                f"the user has not consented to let the server app {self.app.client_id} call {resource} on their "
                f"behalf (AADSTS{min(codes & set(CONSENT_CODES)) if codes & set(CONSENT_CODES) else 65001})",
                consent_url=user, admin_consent_url=admin,
            )
        if error == "invalid_grant":
            return OboRefusedError(
                "Entra refused the caller's token for the on-behalf-of exchange "
                f"({_first(result.get('error_description'))}). Sign in to the MCP server again."
            )
        return token_request_error(f"the on-behalf-of token request for {' '.join(scopes)}", error or None,
                                   result.get("error_description"), "Check the server app's registration and credential.")

    def forget_session(self) -> None:
        """The session is over: drop its MSAL client and cache (its partition)."""
        self._start_over()

    def describe(self) -> dict[str, Any]:
        return {"server_app": self.app.client_id, "flow": "on-behalf-of", "claims_profile": self.claims_profile,
                "server_app_credential": self.app.credential.method}

    def close(self) -> None:
        self.forget_session()


def _first(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0][:300] if lines else "no reason given"
