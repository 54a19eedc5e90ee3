"""User tokens through MSAL, tagged with the agent session and partitioned per session.

Every request carries the session twice, as Azure CLI 2.91 does: ``client_session`` in the query
string (``params=``) and in the form body (``data=``). The body value is also what MSAL hashes into
its extended cache key, so each session's access tokens live in their own partition of the one
MSAL cache: a plain lookup (no ``data``) never matches them, and session A's key never matches
session B's. The agent claims request goes through ``forwarded_client_claims`` (sent as the OAuth
``claims`` parameter, cached and keyed on its value, unlike a ``claims_challenge`` which bypasses
the cache). A resource's challenge is passed as ``claims_challenge``: MSAL merges it with the
forwarded claims, skips the cache for that one request and stores the answer in the partition.

The refresh token is shared by all sessions of the account; only access tokens are per session.
One ``MsalApps`` per (authority host, client id, cache) per process, so sessions share it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azure_agent_mcp.identity.claims import DEFAULT_PROFILE, agent_claims
from azure_agent_mcp.identity.credential import ProviderToken, TokenRequestError, token_request_error
from azure_agent_mcp.identity.errors import CredentialUnavailableError
from azure_agent_mcp.identity.session import AgentSession


PUBLIC_AUTHORITY_HOSTS = (
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.microsoft.com",
    "login.windows.net",
    "sts.windows.net",
)
DEFAULT_PUBLIC_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
"""The developer sign-on client azure-identity also uses; override with AZURE_AGENT_MCP_CLIENT_ID."""

CACHE_FILE_NAME = "msal_cache.bin"
HTTP_TIMEOUT_SECONDS = 30

SignIn = Callable[["Any", tuple[str, ...], dict[str, str], dict[str, str], str], dict[str, Any]]
"""(msal app, scopes, data, params, wire claims) -> MSAL result: the first, interactive-free sign-in."""


def _retry_after(headers: Any) -> float | None:
    value = (headers or {}).get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else None
    except (TypeError, ValueError):
        return None


def token_service_unavailable(error: BaseException | None, http: Any, authority_host: str,
                              result: dict[str, Any] | None = None, scopes: tuple[str, ...] = ()) -> Exception | None:
    """The TokenServiceUnavailableError for what MSAL raised or answered, or None when it is something else.

    MSAL raises ``MsalServiceError("HTTP Error: 5xx")`` for a 5xx (and again, from its throttling
    cache, without asking Entra, until the hold expires); a 429 comes back as an error answer. Both
    mean Entra is unavailable or throttling, so the agent is told when to retry.
    """
    from urllib.parse import urlsplit

    from azure_agent_mcp.identity.credential import TokenServiceUnavailableError

    status: int | None = None
    if error is not None:
        import re

        from msal.exceptions import MsalServiceError

        if not isinstance(error, MsalServiceError):
            return None
        match = re.search(r"HTTP Error: (\d{3})", str(error))
        status = int(match.group(1)) if match else None
        if status is not None and status < 500 and status != 429:
            return None
    remaining, seen = http.throttle_remaining(scopes) if http is not None else (None, None)
    if error is None:
        code = str((result or {}).get("error") or "")
        last = http.last_status() if http is not None else None
        if code != "temporarily_unavailable" and not (last is not None and (last == 429 or last >= 500)):
            return None
        status = last if last is not None and (last == 429 or last >= 500) else None
    status = status or seen
    parts = urlsplit(authority_host)
    endpoint = f"{parts.scheme}://{parts.netloc}" if parts.netloc else None
    return TokenServiceUnavailableError(
        "token service unavailable" + (f" (HTTP {status})" if status else "")
        + (f", retry in {int(remaining + 0.999)} s" if remaining is not None else ""),
        status=status, retry_after=remaining, endpoint=endpoint,
    )


def is_known_authority(authority_host: str) -> bool:
    host = authority_host.split("://", 1)[-1].split("/", 1)[0].lower()
    return host in PUBLIC_AUTHORITY_HOSTS


TRANSIENT_RETRY_SECONDS = 0.5
"""A 5xx from Entra without a Retry-After (or one this short or shorter) is retried once after this
pause before MSAL sees it: MSAL answers a 5xx by holding every request of that account back for
``throttle_seconds`` (60 s for a public client), so one blip must not lock a session out."""
TRANSIENT_RETRY_MAX_WAIT = 2.0
ENTRA_LABEL = "Entra token service"


def http_session(ca_bundle: str | None, *, throttle_seconds: int = 60) -> Any:
    """The requests session MSAL talks through: names this server in its User-Agent, and trusts
    exactly ``ca_bundle`` when the environment has its own CA.

    requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` override a session's ``verify``; for an
    environment with its own CA (the sandbox, a private cloud) that would silently swap the CA, so
    the CA is pinned. Proxies from the environment still apply.

    Inside a tool call the request's timeout is what the call has left, and none is sent once the
    call is cancelled or past its deadline. A 5xx is retried once after a short pause. A 429 or 5xx
    handed to MSAL is remembered with how long MSAL will throttle after it (its Retry-After, else
    ``throttle_seconds``, MSAL's default for this kind of client), so ``throttle_remaining()`` can
    say when to retry. Network failures are tagged with the endpoint for the agent's answer.
    """
    import requests

    from azure_agent_mcp import USER_AGENT

    class ServerHttpSession(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            self._throttled: dict[tuple[str, str], tuple[float, int]] = {}
            self._throttle_lock = threading.Lock()
            self._local = threading.local()

        def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if ca_bundle:
                settings["verify"] = ca_bundle
            return settings

        def request(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def,override]
            from azure_agent_mcp.callcontext import call_interruption, current_control

            interrupted = call_interruption()
            if interrupted is not None:
                raise interrupted
            kwargs.setdefault("timeout", HTTP_TIMEOUT_SECONDS)  # what MSAL's own session would do
            control = current_control()
            retried = False
            while True:
                left = control.remaining() if control is not None else None
                if left is not None and isinstance(kwargs["timeout"], (int, float)):
                    kwargs["timeout"] = max(min(kwargs["timeout"], left), 0.001)
                try:
                    response = super().request(method, url, *args, **kwargs)
                except requests.RequestException as exc:
                    exc.azure_agent_mcp_request = (ENTRA_LABEL, str(method).upper(), url)  # type: ignore[attr-defined]
                    raise
                status = response.status_code
                self._local.status = status
                if status != 429 and status < 500:
                    return response
                wait = _retry_after(response.headers)
                if not retried and status >= 500 and (wait is None or wait <= TRANSIENT_RETRY_MAX_WAIT):
                    pause = wait if wait is not None else TRANSIENT_RETRY_SECONDS
                    left = control.remaining() if control is not None else None
                    if left is None or pause + 1.0 < left:
                        retried = True
                        response.close()
                        if control is not None:
                            control.sleep(pause)
                            interrupted = control.interruption()
                            if interrupted is not None:
                                raise interrupted
                        else:
                            time.sleep(pause)
                        continue
                seconds = min(3600, int(wait)) if wait is not None and float(wait).is_integer() else throttle_seconds
                data = kwargs.get("data")
                scope = str(data.get("scope") or "") if isinstance(data, dict) else ""
                with self._throttle_lock:
                    self._throttled[(url.split("?", 1)[0], scope)] = (time.monotonic() + seconds, status)
                return response

        def last_status(self) -> int | None:
            """The HTTP status of the last answer this thread received through the session (a tool call
            has a thread of its own), or None; an answer MSAL served from its throttling cache is not seen."""
            return getattr(self._local, "status", None)

        def throttle_remaining(self, scopes: tuple[str, ...] = ()) -> tuple[float | None, int | None]:
            """(seconds until MSAL lets token requests for ``scopes`` through again, the status that caused
            it), or (None, None). MSAL holds requests per endpoint, client, scope and account."""
            now = time.monotonic()
            with self._throttle_lock:
                live = [(until - now, status, scope) for (_, scope), (until, status) in self._throttled.items()
                        if until > now]
            matching = [(left, status) for left, status, scope in live if set(scopes) <= set(scope.split())]
            chosen = matching or [(left, status) for left, status, _ in live]
            return max(chosen) if chosen else (None, None)

    session = ServerHttpSession()
    adapter = requests.adapters.HTTPAdapter(max_retries=1)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = f"{USER_AGENT} {session.headers.get('User-Agent', '')}".strip()
    if ca_bundle:
        session.verify = ca_bundle
    return session


class MsalApps:
    """One MSAL token cache and a PublicClientApplication per tenant over it."""

    def __init__(
        self,
        client_id: str,
        authority_host: str,
        *,
        verify: str | bool = True,
        token_cache: Any = None,
        cache_location: Path | None = None,
        cache_encrypted: bool = False,
        default_tenant: str = "organizations",
    ) -> None:
        self.client_id = client_id
        self.authority_host = authority_host.rstrip("/")
        self.verify = verify
        from azure_agent_mcp.identity.session_cache import SessionPartitions, session_token_cache

        if token_cache is not None and not isinstance(token_cache, SessionPartitions):
            raise TypeError("MsalApps needs a token cache that knows its sessions' partitions (SessionPartitions)")
        self.token_cache = token_cache if token_cache is not None else session_token_cache()
        self.cache_location = cache_location
        self.cache_encrypted = cache_encrypted
        self.default_tenant = default_tenant
        self._apps: dict[str, Any] = {}
        self._http: Any = None
        self._lock = threading.Lock()
        self.request_lock = threading.RLock()
        """Serialises network acquisitions: sessions share one refresh token, and a rotating refresh
        token used twice at once would fail for the second caller."""

    def app_for(self, tenant: str | None) -> Any:
        import msal

        tenant = tenant or self.default_tenant
        with self._lock:
            app = self._apps.get(tenant)
            if app is None:
                known = is_known_authority(self.authority_host)
                ca_bundle = self.verify if isinstance(self.verify, str) else None
                if self._http is None:
                    self._http = http_session(ca_bundle, throttle_seconds=60)  # MSAL's hold for public clients
                try:
                    app = msal.PublicClientApplication(
                        self.client_id,
                        authority=f"{self.authority_host}/{tenant}",
                        token_cache=self.token_cache,
                        instance_discovery=None if known else False,
                        http_client=self._http,
                    )
                except Exception as exc:  # discovery failed: network, TLS or an unknown tenant
                    raise CredentialUnavailableError(
                        f"could not reach the sign-in authority {self.authority_host}/{tenant} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                        "check --tenant, the network and the CA bundle"
                    ) from exc
                self._apps[tenant] = app
            return app

    def accounts(self, username: str | None = None) -> list[dict[str, Any]]:
        return list(self.app_for(None).get_accounts(username=username))

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"client_id": self.client_id, "authority_host": self.authority_host}
        if self.cache_location is not None:
            info["token_cache"] = str(self.cache_location)
            info["token_cache_encrypted"] = self.cache_encrypted
        return info


_registry: dict[tuple[Any, ...], MsalApps] = {}
_registry_lock = threading.Lock()


def shared_apps(key: tuple[Any, ...], factory: Callable[[], MsalApps]) -> MsalApps:
    """The process-wide MsalApps for ``key`` (created once), so all sessions share one cache and RT."""
    with _registry_lock:
        apps = _registry.get(key)
        if apps is None:
            apps = _registry[key] = factory()
        return apps


def session_request(session_id: str, claims_profile: str) -> tuple[dict[str, str], dict[str, str], str]:
    """(form body, query string, agent claims) for a tagged token request of this session."""
    return {"client_session": session_id}, {"client_session": session_id}, agent_claims(session_id, claims_profile)


def _token_from(result: dict[str, Any], started: float) -> ProviderToken:
    expires_in = int(result.get("expires_in", 0))
    refresh_on = result.get("refresh_on")
    if refresh_on is None and result.get("refresh_in"):
        refresh_on = int(started + int(result["refresh_in"]))
    return ProviderToken(result["access_token"], int(started + expires_in), int(refresh_on) if refresh_on else None)


class MsalUserProvider:
    """Tagged user tokens for one agent session: silent first (cache, then refresh token), then ``sign_in``."""

    tagged = True

    def __init__(
        self,
        kind: str,
        apps: MsalApps,
        session: AgentSession,
        *,
        claims_profile: str = DEFAULT_PROFILE,
        username: str | None = None,
        sign_in: SignIn | None = None,
        not_signed_in_hint: str = "run `azure-agent-mcp login` (device code) first",
    ) -> None:
        agent_claims(session.id, claims_profile)  # validates the profile now, not at the first request
        self.kind = kind
        self.apps = apps
        self.session = session
        self.claims_profile = claims_profile
        self.username = username
        self.default_tenant = apps.default_tenant
        self._sign_in = sign_in
        self._hint = not_signed_in_hint

    def _account(self, app: Any) -> dict[str, Any] | None:
        accounts = app.get_accounts(username=self.username)
        if len(accounts) > 1:
            names = ", ".join(sorted({a.get("username") or "?" for a in accounts}))
            raise CredentialUnavailableError(
                f"several accounts are signed in ({names}); set AZURE_AGENT_MCP_USERNAME to choose one, "
                "or run `azure-agent-mcp logout` and sign in again"
            )
        return accounts[0] if accounts else None

    def acquire(self, scopes: tuple[str, ...], *, tenant_id: str | None, claims: str | None) -> ProviderToken:
        with self.apps.request_lock, self.apps.token_cache.serving(self.session.id):
            try:
                return self._acquire(scopes, tenant_id, claims)
            except Exception as exc:
                unavailable = token_service_unavailable(exc, self.apps._http, self.apps.authority_host, scopes=scopes)
                if unavailable is not None:
                    raise unavailable from None
                raise

    def _acquire(self, scopes: tuple[str, ...], tenant_id: str | None, claims: str | None) -> ProviderToken:
        app = self.apps.app_for(tenant_id)
        data, params, agent = session_request(self.session.id, self.claims_profile)
        started = time.time()
        result: dict[str, Any] | None = None
        account = self._account(app)
        if account is not None:
            result = app.acquire_token_silent_with_error(
                list(scopes),
                account,
                claims_challenge=claims,
                forwarded_client_claims=agent,
                data=dict(data),
                params=dict(params),
            )
            if result is not None and "error" in result:
                # Entra is throttling or failing: a sign-in now would only add load and fail the same way
                unavailable = token_service_unavailable(None, self.apps._http, self.apps.authority_host, result, scopes)
                if unavailable is not None:
                    raise unavailable
        if (result is None or "error" in result) and self._sign_in is not None:
            from azure_agent_mcp.identity.claims import merge_claims

            body = dict(data, client_claims=agent)  # the same extended cache key as the silent path
            result = self._sign_in(app, scopes, body, dict(params), merge_claims(agent, claims) or agent)
        if result is None:
            raise CredentialUnavailableError(f"no signed-in account in the MSAL token cache: {self._hint}")
        if "access_token" not in result:
            unavailable = token_service_unavailable(None, self.apps._http, self.apps.authority_host, result, scopes)
            if unavailable is not None:
                raise unavailable
            raise token_request_error(
                f"token request for {' '.join(scopes)}",
                result.get("error"),
                result.get("error_description"),
                "Sign in again (" + self._hint + ").",
            )
        return _token_from(result, started)

    def forget_session(self) -> None:
        """Remove this session's access tokens from the MSAL cache (its partition), keeping the RT."""
        self.apps.token_cache.forget(self.session.id)

    def describe(self) -> dict[str, Any]:
        return {"claims_profile": self.claims_profile, **self.apps.describe()}

    def close(self) -> None:
        return None


# -- the sandbox's developer user ---------------------------------------------------------------


def device_code_sign_in(login_hint: str | None = None, wait_seconds: float = 30.0) -> SignIn:
    """A device code sign-in that needs no person: the sandbox approves device codes for its users.

    (ROPC would be simpler, but MSAL's user-realm probe drops the authority's port.) The session
    tag is on this request too; ``login_hint`` picks a user other than the sandbox's developer.
    """

    def sign_in(app: Any, scopes: tuple[str, ...], data: dict[str, str], params: dict[str, str], claims: str) -> dict[str, Any]:
        flow = app.initiate_device_flow(scopes=list(scopes))
        if "user_code" not in flow:
            return flow
        flow["expires_at"] = min(float(flow.get("expires_at", 0) or 0) or time.time() + wait_seconds,
                                 time.time() + wait_seconds)
        body = dict(data, login_hint=login_hint) if login_hint else data
        return app.acquire_token_by_device_flow(flow, claims_challenge=claims, data=body, params=params)

    return sign_in


def sandbox_apps(env: Any) -> MsalApps:
    manifest = env.manifest or {}
    client_id = manifest.get("public_client_id") or DEFAULT_PUBLIC_CLIENT_ID
    key = ("sandbox", env.authority_host, client_id, env.tenant_id, str(env.ca_bundle))
    return shared_apps(
        key,
        lambda: MsalApps(
            client_id, env.authority_host, verify=env.connection_verify, default_tenant=env.tenant_id or "organizations"
        ),
    )


def sandbox_user(env: Any, user: str = "developer") -> dict[str, Any]:
    for entry in (env.manifest or {}).get("users", []):
        if entry.get("name") == user or entry.get("upn") == user:
            return entry
    raise CredentialUnavailableError(
        f"the sandbox manifest has no user {user!r}; its users: "
        + ", ".join(u.get("name", "?") for u in (env.manifest or {}).get("users", []))
    )


# -- the server's own public client (login / logout) --------------------------------------------


def open_persisted_cache(location: Path) -> tuple[Any, bool]:
    """The persisted MSAL cache: encrypted where the platform offers it, else a 0600 file.

    msal-extensions encrypts with DPAPI on Windows, the Keychain on macOS and libsecret on Linux;
    a Linux host without a secret service gets the plain file, readable only by its owner.
    ``AZURE_AGENT_MCP_PLAINTEXT_CACHE=1`` skips the attempt (headless hosts whose keyring prompts).
    """
    from msal_extensions import FilePersistence

    location.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    persistence = None
    if os.environ.get("AZURE_AGENT_MCP_PLAINTEXT_CACHE", "").lower() not in ("1", "true", "yes"):
        persistence = _encrypted_persistence(location)
    encrypted = persistence is not None
    if persistence is None:
        persistence = FilePersistence(str(location))
        if not location.exists():
            persistence.save("{}")
    _restrict(location)
    return _owner_only_cache(persistence, location), encrypted


def _encrypted_persistence(location: Path) -> Any:
    from msal_extensions import build_encrypted_persistence
    from msal_extensions.persistence import PersistenceNotFound

    try:
        persistence = build_encrypted_persistence(str(location))
        try:
            persistence.load()
        except PersistenceNotFound:
            persistence.save("{}")
        return persistence
    except Exception:  # no keyring / secret service here
        return None


def _restrict(location: Path) -> None:
    try:
        os.chmod(location, 0o600)
    except OSError:
        pass


def _owner_only_cache(persistence: Any, location: Path) -> Any:
    from msal_extensions import PersistedTokenCache

    from azure_agent_mcp.identity.session_cache import SessionPartitions

    class OwnerOnlyCache(SessionPartitions, PersistedTokenCache):
        """A PersistedTokenCache that re-asserts mode 0600 after every write."""

        def modify(self, credential_type: Any, old_entry: Any, new_key_value_pairs: Any = None) -> None:
            super().modify(credential_type, old_entry, new_key_value_pairs)
            _restrict(location)

    return OwnerOnlyCache(persistence)


def persisted_apps(env: Any, client_id: str | None = None, cache_path: Path | None = None) -> MsalApps:
    from azure_agent_mcp.paths import state_dir

    client_id = client_id or os.environ.get("AZURE_AGENT_MCP_CLIENT_ID") or (
        (env.manifest or {}).get("public_client_id") if env.manifest else None
    ) or DEFAULT_PUBLIC_CLIENT_ID
    location = cache_path or state_dir() / CACHE_FILE_NAME
    key = ("msal", env.authority_host, client_id, str(location), str(env.ca_bundle))

    def build() -> MsalApps:
        cache, encrypted = open_persisted_cache(location)
        return MsalApps(
            client_id,
            env.authority_host,
            verify=env.connection_verify,
            token_cache=cache,
            cache_location=location,
            cache_encrypted=encrypted,
            default_tenant=env.tenant_id or "organizations",
        )

    return shared_apps(key, build)


def device_code_login(
    apps: MsalApps,
    session: AgentSession,
    scopes: tuple[str, ...],
    *,
    tenant: str | None,
    claims_profile: str = DEFAULT_PROFILE,
    show: Callable[[str], None],
    timeout: float | None = None,
) -> dict[str, Any]:
    """Device code sign-in into the persisted cache; returns the signed-in account (no token)."""
    app = apps.app_for(tenant)
    data, params, agent = session_request(session.id, claims_profile)
    flow = app.initiate_device_flow(scopes=list(scopes))
    if "user_code" not in flow:
        raise token_request_error(
            "starting the device code sign-in", flow.get("error"), flow.get("error_description"),
            "Check --tenant and the network.",
        )
    show(flow.get("message") or f"Open {flow.get('verification_uri')} and enter the code {flow['user_code']}.")
    if timeout is not None:
        flow["expires_at"] = min(float(flow.get("expires_at", time.time() + timeout)), time.time() + timeout)
    result = app.acquire_token_by_device_flow(
        flow, claims_challenge=agent, data=dict(data, client_claims=agent), params=params
    )
    if "access_token" not in result:
        raise token_request_error(
            "device code sign-in", result.get("error"), result.get("error_description"), "Run login again."
        )
    claims = result.get("id_token_claims") or {}
    return {
        "username": claims.get("preferred_username") or claims.get("upn") or "",
        "tenant_id": claims.get("tid") or tenant,
        "object_id": claims.get("oid"),
        "token_cache": str(apps.cache_location) if apps.cache_location else None,
        "token_cache_encrypted": apps.cache_encrypted,
    }


def logout(apps: MsalApps, username: str | None = None) -> list[str]:
    """Remove accounts and all their tokens (every session's partition too) from the cache, offline.

    Returns the usernames removed.
    """
    cache = apps.token_cache
    kinds = cache.CredentialType
    removed = []
    for account in list(cache.search(kinds.ACCOUNT)):
        name = account.get("username") or account.get("home_account_id", "?")
        if username and name.lower() != username.lower():
            continue
        owner = account.get("home_account_id")
        for rt in list(cache.search(kinds.REFRESH_TOKEN, query={"home_account_id": owner})):
            cache.remove_rt(rt)
        for idt in list(cache.search(kinds.ID_TOKEN, query={"home_account_id": owner})):
            cache.remove_idt(idt)
        # search() hides access tokens that carry an extended cache key (the per-session ones)
        # from queries without that key, so look each key up explicitly.
        ext_keys: set[str | None] = {None, *cache.partition_keys()}
        for ext_key in ext_keys:
            query = {"home_account_id": owner}
            if ext_key:
                query["ext_cache_key"] = ext_key
            for at in list(cache.search(kinds.ACCESS_TOKEN, query=query)):
                cache.remove_at(at)
        cache.remove_account(account)
        removed.append(name)
    return removed


__all__ = [
    "MsalApps",
    "MsalUserProvider",
    "TokenRequestError",
    "device_code_login",
    "logout",
    "device_code_sign_in",
    "persisted_apps",
    "sandbox_apps",
    "sandbox_user",
]
