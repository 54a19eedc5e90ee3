"""The credential every SDK client of the server uses: one agent session, its own token partition.

``AgentCredential`` wraps a provider (MSAL, Azure CLI, azure-identity) with what the providers do
not give us together:

- a per-process cache keyed by (session id, tenant, scopes, claims), served without I/O, so a
  hundred ARM calls cost one token request;
- refresh ahead of expiry (at ``refresh_on``, else five minutes before ``exp``; half-way for tokens
  shorter than ten minutes), and single-flight: concurrent callers for one key share one request;
- the session's end: once it has passed, the cache is dropped and every call raises
  ``SessionExpiredError``; a token's reported expiry never reaches past the session's end, so
  azure-core's own per-client token cache comes back to us (and fails) when the session ends;
- claims challenges: azure-core's ``BearerTokenCredentialPolicy`` passes a 401
  ``insufficient_claims`` challenge as ``claims=``; that request bypasses the cache, the provider
  merges it with the agent claims, and the policy retries the request once. The answer also
  replaces the plain entry, so other clients do not hit the same challenge again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import ClientAuthenticationError

from azure_agent_mcp.identity.errors import CredentialUnavailableError, IdentityError
from azure_agent_mcp.identity.session import AgentSession

_log = logging.getLogger(__name__)

REFRESH_MARGIN_SECONDS = 300
STALE_FALLBACK_SECONDS = 30
"""If a proactive refresh fails, a cached token with at least this long left is still served."""


class TokenRequestError(ClientAuthenticationError, IdentityError):
    """The identity provider refused or failed a token request (message: what happened, what to do)."""

    def __init__(self, message: str) -> None:
        super().__init__(message=message)


class TokenServiceUnavailableError(TokenRequestError):
    """Entra answered 5xx or 429 (or MSAL is holding requests back after one): not the credential's fault.

    ``retry_after``: seconds until a token request is worth trying again (Entra's Retry-After, else
    how long MSAL throttles after such an answer); ``status``: the HTTP status; ``endpoint``: the
    authority's origin. The message never carries the request or its secrets.
    """

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 endpoint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.endpoint = endpoint


@dataclass(frozen=True)
class ProviderToken:
    """What a provider hands back: the token string and its times (epoch seconds)."""

    token: str
    expires_on: int
    refresh_on: int | None = None


class TokenProvider(Protocol):
    """Acquires tokens from one source. ``claims`` is a resource's challenge, or None.

    Tagging providers add the agent claims and ``client_session`` themselves.
    """

    kind: str
    tagged: bool
    default_tenant: str | None

    def acquire(self, scopes: tuple[str, ...], *, tenant_id: str | None, claims: str | None) -> ProviderToken: ...

    def forget_session(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


_Key = tuple[str, str | None, tuple[str, ...], str | None]


@dataclass(frozen=True)
class _Entry:
    token: str
    expires_on: int
    refresh_at: float
    refresh_on: int | None


def _refresh_at(token: ProviderToken, now: float) -> float:
    if token.refresh_on:
        return float(token.refresh_on)
    lifetime = token.expires_on - now
    if lifetime > 2 * REFRESH_MARGIN_SECONDS:
        return float(token.expires_on - REFRESH_MARGIN_SECONDS)
    return now + lifetime / 2


class _Flight:
    """One in-progress token request that late arrivals wait on instead of sending their own."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._entry: _Entry | None = None
        self._error: BaseException | None = None

    def finish(self, entry: _Entry | None, error: BaseException | None) -> None:
        self._entry, self._error = entry, error
        self._done.set()

    def wait(self) -> _Entry:
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._entry is not None
        return self._entry


class AgentCredential:
    """An azure-core ``TokenCredential`` and ``SupportsTokenInfo`` bound to one agent session."""

    def __init__(
        self,
        provider: TokenProvider,
        session: AgentSession,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._provider = provider
        self.session = session
        self._clock = clock or session.clock
        self._cache: dict[_Key, _Entry] = {}
        self._flights: dict[_Key, _Flight] = {}
        self._lock = threading.Lock()
        self._expired_seen = False

    # -- what the server and whoami read ------------------------------------------------------

    @property
    def kind(self) -> str:
        return self._provider.kind

    @property
    def tagged(self) -> bool:
        """Whether tokens from this credential are requested with the agent session tag."""
        return self._provider.tagged

    @property
    def provider(self) -> TokenProvider:
        return self._provider

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "tagged": self.tagged, **self._provider.describe()}

    # -- azure-core protocols -----------------------------------------------------------------

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        entry = self._get(scopes, tenant_id, claims)
        return AccessToken(entry.token, self._reported_expiry(entry))

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        options = options or {}
        entry = self._get(scopes, options.get("tenant_id"), options.get("claims"))
        expires_on = self._reported_expiry(entry)
        refresh_on = entry.refresh_on if entry.refresh_on and entry.refresh_on < expires_on else None
        return AccessTokenInfo(entry.token, expires_on, refresh_on=refresh_on)

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
        self._provider.close()

    def __enter__(self) -> AgentCredential:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the cache ------------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every cached token of this credential (the provider's own cache is left alone)."""
        with self._lock:
            self._cache.clear()

    def _reported_expiry(self, entry: _Entry) -> int:
        end = self.session.expires_at
        if end is not None and end < entry.expires_on:
            return int(end)
        return entry.expires_on

    def _check_session(self) -> None:
        if self.session.expired:
            if not self._expired_seen:
                with self._lock:
                    self._cache.clear()
                    self._expired_seen = True
                try:
                    self._provider.forget_session()
                except Exception:  # forgetting is hygiene; the refusal below is what matters
                    _log.warning("could not drop the expired session's tokens from the provider's cache")
            self.session.check()

    def _get(self, scopes: tuple[str, ...], tenant_id: str | None, claims: str | None) -> _Entry:
        if not scopes:
            raise ValueError("get_token needs at least one scope, e.g. https://management.azure.com/.default")
        self._check_session()
        tenant = tenant_id or self._provider.default_tenant
        key: _Key = (self.session.id, tenant, tuple(sorted(scopes)), claims or None)
        if not claims:
            entry = self._cache.get(key)
            if entry is not None and self._clock() < entry.refresh_at:
                return entry
        with self._lock:
            if not claims:
                entry = self._cache.get(key)
                if entry is not None and self._clock() < entry.refresh_at:
                    return entry
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            entry = flight.wait()
        else:
            entry = self._fetch(key, flight, tenant, claims)
        self._check_session()
        return entry

    def _fetch(self, key: _Key, flight: _Flight, tenant: str | None, claims: str | None) -> _Entry:
        scopes = key[2]
        plain_key: _Key = (key[0], key[1], key[2], None)
        try:
            started = self._clock()
            try:
                token = self._provider.acquire(scopes, tenant_id=tenant, claims=claims or None)
            except CredentialUnavailableError as exc:
                # Inside an SDK pipeline this must read as an authentication failure, not a crash.
                raise TokenRequestError(str(exc)) from exc
            entry = _Entry(token.token, int(token.expires_on), _refresh_at(token, started), token.refresh_on)
        except BaseException as exc:
            stale = self._cache.get(plain_key) if not claims and isinstance(exc, Exception) else None
            with self._lock:
                self._flights.pop(key, None)
            if stale is not None and stale.expires_on - self._clock() > STALE_FALLBACK_SECONDS:
                _log.warning("token refresh failed (%s); serving the cached token until it expires", type(exc).__name__)
                flight.finish(stale, None)
                return stale
            flight.finish(None, exc)
            raise
        with self._lock:
            if not self.session.expired:
                # A challenge's answer carries the agent claims too: it replaces the plain entry, so
                # other clients do not meet the same challenge. Challenge keys are never read back.
                self._cache[plain_key] = entry
            self._flights.pop(key, None)
        flight.finish(entry, None)
        return entry


def token_request_error(what: str, error: str | None, description: str | None, hint: str) -> TokenRequestError:
    """A TokenRequestError whose message says what failed, the provider's reason (first line) and what to do."""
    reason = (description or "").strip().splitlines()
    detail = f"{error}: {reason[0][:300]}" if reason else (error or "no reason given")
    return TokenRequestError(f"{what} failed ({detail}). {hint}".strip())

