"""``--credential sidecar``: tokens from the Microsoft Entra SDK auth sidecar; this process holds no credential.

The sidecar is a separate container (or process) next to the server that holds the blueprint's
credential and performs Entra Agent ID's exchanges. We only ask it for an authorization header:

``GET {sidecar}/AuthorizationHeaderUnauthenticated/{apiName}?AgentIdentity=..&AgentUsername=..|AgentUserId=..``
-> ``{"authorizationHeader": "Bearer ..."}``; its failures are ``application/problem+json``
(``title``, ``status``, ``detail``), shown as they are (they never hold a token).

Scopes map to the sidecar's configured API names: the ARM scope to ``arm``, the Key Vault scope to
``vault``, the Log Analytics scope to ``loganalytics``, Azure DevOps' (``499b84ac-.../.default``) to
``devops`` (override with ``api_names``). A resource's claims challenge goes along as
``optionsOverride.AcquireTokenOptions.Claims``. The session's AgentCredential caches the headers.

A token whose audience is not the requested resource (an API name configured for another resource)
is refused before use, so one service's token never reaches another.

Because the answer is a bearer token, the sidecar must be on this machine: loopback URLs only
unless ``allow_remote`` (then HTTPS only), no user info in the URL, no proxies and no redirects.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from azure_agent_mcp.identity.agent_identity import AgentUser
from azure_agent_mcp.identity.claims import unverified_jwt_claims
from azure_agent_mcp.identity.credential import ProviderToken, TokenRequestError
from azure_agent_mcp.identity.errors import CredentialUnavailableError
from azure_agent_mcp.netaddr import is_loopback

ENDPOINT = "AuthorizationHeaderUnauthenticated"
OPAQUE_TOKEN_SECONDS = 300
"""How long a token whose expiry we cannot read is used: short, so the sidecar is asked again soon."""
TIMEOUT_SECONDS = 30


class SidecarUrlError(CredentialUnavailableError, ValueError):
    """``--sidecar-url`` is not a URL this server may ask for tokens."""


class SidecarError(TokenRequestError):
    """The sidecar refused or failed (its problem details, or why it could not be reached)."""

    def __init__(self, message: str, status: int | None = None, problem: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem or {}


def validate_sidecar_url(url: str, allow_remote: bool = False) -> str:
    """The sidecar's base URL without a trailing slash; raises SidecarUrlError saying what is wrong."""
    parts = urlsplit((url or "").strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SidecarUrlError(f"--sidecar-url {url!r} is not an http(s) URL such as http://localhost:5000")
    if parts.username or parts.password:
        raise SidecarUrlError("--sidecar-url must not contain user info: this server holds no credential, not even "
                              "the sidecar's")
    if parts.query or parts.fragment:
        raise SidecarUrlError(f"--sidecar-url {url!r} must be a base URL, without a query or fragment")
    if not is_loopback(parts.hostname):
        if not allow_remote:
            raise SidecarUrlError(
                f"refusing the sidecar at {parts.hostname}: its answers are bearer tokens, so it must run on this "
                "machine (loopback address); pass --allow-remote-sidecar to use a sidecar elsewhere over HTTPS"
            )
        if parts.scheme != "https":
            raise SidecarUrlError("a remote sidecar must be reached over HTTPS: its answers are bearer tokens")
    return url.strip().rstrip("/")


class SidecarProvider:
    """Asks the auth sidecar for each token; knows only URLs and ids, never a secret."""

    kind = "sidecar"
    tagged = False

    def __init__(self, base_url: str, *, api_names: dict[str, str], agent_identity_id: str | None = None,
                 agent_user: AgentUser | None = None, default_tenant: str | None = None, ca_bundle: str | None = None,
                 allow_remote: bool = False) -> None:
        self.base_url = validate_sidecar_url(base_url, allow_remote)
        self.api_names = dict(api_names)
        self.agent_identity_id = agent_identity_id
        self.agent_user = agent_user
        self.default_tenant = default_tenant
        self.ca_bundle = ca_bundle
        self.remote = not is_loopback(urlsplit(self.base_url).hostname or "")
        self._http: Any = None

    def _session(self) -> Any:
        if self._http is None:
            import requests

            from azure_agent_mcp import USER_AGENT

            session = requests.Session()
            session.trust_env = False  # no proxy between us and the sidecar, and no CA swapped by the environment
            session.verify = self.ca_bundle or True
            session.headers["User-Agent"] = USER_AGENT
            self._http = session
        return self._http

    def _query(self, claims: str | None) -> dict[str, str]:
        query: dict[str, str] = {}
        if self.agent_identity_id:
            query["AgentIdentity"] = self.agent_identity_id
            if self.agent_user is not None and self.agent_user.object_id:
                query["AgentUserId"] = self.agent_user.object_id
            elif self.agent_user is not None:
                query["AgentUsername"] = self.agent_user.upn or ""
        if claims:
            query["optionsOverride.AcquireTokenOptions.Claims"] = claims
        return query

    def api_name(self, scopes: tuple[str, ...]) -> str:
        if len(scopes) == 1 and scopes[0] in self.api_names:
            return self.api_names[scopes[0]]
        raise SidecarError(
            f"the sidecar has no API configured for {' '.join(scopes)}; known: "
            + ", ".join(f"{scope} -> {name}" for scope, name in sorted(self.api_names.items()))
        )

    def acquire(self, scopes: tuple[str, ...], *, tenant_id: str | None, claims: str | None) -> ProviderToken:
        import requests

        api = self.api_name(scopes)
        url = f"{self.base_url}/{ENDPOINT}/{api}"
        started = time.time()
        try:
            response = self._session().get(url, params=self._query(claims), timeout=TIMEOUT_SECONDS,
                                           allow_redirects=False, headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise SidecarError(f"could not reach the auth sidecar at {self.base_url} ({type(exc).__name__}); is it "
                               "running, and is --sidecar-url right?") from exc
        if response.status_code != 200:
            raise self._refusal(api, response)
        try:
            header = response.json()["authorizationHeader"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SidecarError(f"the auth sidecar's answer for '{api}' has no authorizationHeader") from exc
        scheme, _, token = str(header).partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SidecarError(f"the auth sidecar's authorizationHeader for '{api}' is not a Bearer token "
                               f"(scheme {scheme!r}); this server sends Bearer tokens only")
        token = token.strip()
        claims = unverified_jwt_claims(token)
        audience = claims.get("aud")
        if audience is not None and not audience_matches(str(audience), scopes[0]):
            # A sidecar API name configured for another resource: sending this token would hand
            # one service's token to another (an ARM token to Azure DevOps, say). Fail closed.
            raise SidecarError(f"the auth sidecar's token for '{api}' is for audience {audience}, not for "
                               f"{scopes[0]}; it was not used. Check the sidecar's configuration of API '{api}'")
        exp = claims.get("exp")
        expires_on = int(exp) if isinstance(exp, (int, float)) else int(started + OPAQUE_TOKEN_SECONDS)
        return ProviderToken(token, expires_on)

    def _refusal(self, api: str, response: Any) -> SidecarError:
        kind = response.headers.get("content-type", "")
        problem: dict[str, Any] = {}
        if "json" in kind:
            try:
                parsed = response.json()
                problem = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                problem = {}
        if response.is_redirect:
            return SidecarError(f"the auth sidecar redirected the request for '{api}' (HTTP {response.status_code}); "
                                "redirects are not followed: point --sidecar-url at the sidecar itself",
                                response.status_code)
        if problem:
            shown = {k: problem[k] for k in ("type", "title", "status", "detail") if k in problem}
            detail = str(problem.get("detail") or problem.get("title") or "no detail").strip().splitlines()[0][:400]
            return SidecarError(f"the auth sidecar refused a token for '{api}' (HTTP {response.status_code} "
                                f"{problem.get('title', '')}): {detail}", response.status_code, shown)
        return SidecarError(f"the auth sidecar answered HTTP {response.status_code} for '{api}' without problem "
                            "details; check its logs", response.status_code)

    def forget_session(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"sidecar_url": self.base_url, "agent_identity_id": self.agent_identity_id,
                                "apis": dict(self.api_names), "holds_credential": False}
        if self.agent_user is not None:
            info["agent_user"] = str(self.agent_user)
        return info

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


_AUDIENCE_ALIASES = {"https://management.core.windows.net": "https://management.azure.com"}
"""ARM answers to two identifiers; a token for either is an ARM token."""


def audience_matches(audience: str, scope: str) -> bool:
    """Whether a token's ``aud`` is the resource of ``scope`` (``<resource>/.default`` or ``<resource>/<scope>``).

    The resource as requested (a URL or an application id such as Azure DevOps'), or, for an
    ``api://<app id>`` resource, that app id (the audience of v2 tokens). Case and a trailing
    slash do not matter.
    """
    def canonical(value: str) -> str:
        lowered = value.strip().lower().rstrip("/")
        return _AUDIENCE_ALIASES.get(lowered, lowered)

    resource = canonical(scope.rstrip("/").rpartition("/")[0] if "/" in scope else scope)
    accepted = {resource}
    if resource.startswith("api://"):
        accepted.add(resource[len("api://"):])
    return canonical(audience) in accepted


def sidecar_provider(env: Any, **options: Any) -> SidecarProvider:
    """From build_credential's options: ``sidecar_url``, ``allow_remote_sidecar``, ``agent_identity_id``,
    ``agent_user``, ``api_names``; a sandbox manifest supplies the URL and the agent identity."""
    manifest = env.manifest or {}
    seeded = manifest.get("agent_identity") or {}
    url = options.get("sidecar_url") or manifest.get("sidecar")
    if not url:
        raise CredentialUnavailableError("--credential sidecar needs --sidecar-url (e.g. http://localhost:5000)")
    api_names = options.get("api_names") or {env.arm_scope: "arm", env.keyvault_scope: "vault",
                                             env.logs_scope: "loganalytics", env.devops_scope: "devops"}
    user = options.get("agent_user")
    agent_identity_id = options.get("agent_identity_id") or seeded.get("agent_identity_id")
    if user and not agent_identity_id:
        # The sidecar ignores AgentUsername/AgentUserId without AgentIdentity and answers with the
        # blueprint's own token: the agent user would be dropped silently, so refuse instead.
        raise CredentialUnavailableError(
            "--agent-user with --credential sidecar needs --agent-identity-id (the agent identity the agent user "
            "belongs to): without it the sidecar ignores the agent user and hands out the blueprint's own token"
        )
    return SidecarProvider(
        url,
        api_names=api_names,
        agent_identity_id=agent_identity_id,
        agent_user=(user if isinstance(user, AgentUser) else AgentUser.parse(user)) if user else None,
        default_tenant=env.tenant_id,
        ca_bundle=env.ca_bundle,
        allow_remote=bool(options.get("allow_remote_sidecar")),
    )

