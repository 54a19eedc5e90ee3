"""AgentCredential's cache rules against a counting provider and an injected clock (timing-exact, no network).

The provider here is a real implementation of the provider interface (it mints opaque strings);
the sandbox-backed tests in test_identity_sandbox.py cover the same rules over HTTPS with MSAL.
"""

from __future__ import annotations

import threading
import time

import pytest
from azure.core.credentials import AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError

from azure_agent_mcp.identity import SessionExpiredError, resolve_session
from azure_agent_mcp.identity.credential import AgentCredential, ProviderToken
from azure_agent_mcp.identity.errors import CredentialUnavailableError

ARM = "https://management.azure.com/.default"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingProvider:
    kind = "counting"
    tagged = True
    default_tenant = "tenant-a"

    def __init__(self, clock: Clock, lifetime: int = 3600, refresh_in: int | None = None) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.refresh_in = refresh_in
        self.calls: list[tuple[tuple[str, ...], str | None, str | None]] = []
        self.gate: threading.Event | None = None
        self.fail_with: BaseException | None = None
        self.forgotten = 0
        self._lock = threading.Lock()

    def acquire(self, scopes, *, tenant_id, claims):
        if self.gate is not None:
            self.gate.wait(10)
        with self._lock:
            self.calls.append((scopes, tenant_id, claims))
            n = len(self.calls)
        if self.fail_with is not None:
            raise self.fail_with
        now = self.clock()
        refresh_on = int(now + self.refresh_in) if self.refresh_in else None
        return ProviderToken(f"token-{n}", int(now + self.lifetime), refresh_on)

    def forget_session(self):
        self.forgotten += 1

    def describe(self):
        return {}

    def close(self):
        pass


def make(ttl="8h", **provider_kwargs):
    clock = Clock()
    session = resolve_session(session_id="cache-test", ttl=ttl, environ={}, clock=clock)
    provider = CountingProvider(clock, **provider_kwargs)
    return AgentCredential(provider, session), provider, clock


def test_one_request_serves_a_hundred_calls():
    credential, provider, _ = make()
    tokens = {credential.get_token(ARM).token for _ in range(100)}
    tokens |= {credential.get_token_info(ARM).token for _ in range(100)}
    assert tokens == {"token-1"} and len(provider.calls) == 1
    assert isinstance(credential.get_token_info(ARM), AccessTokenInfo)


def test_keys_separate_scopes_and_tenants():
    credential, provider, _ = make()
    credential.get_token(ARM)
    credential.get_token("https://vault.azure.net/.default")
    credential.get_token_info(ARM, options={"tenant_id": "tenant-b"})
    credential.get_token(ARM, tenant_id="tenant-a")  # the default tenant: same key as the first
    assert [(c[0], c[1]) for c in provider.calls] == [
        ((ARM,), "tenant-a"), (("https://vault.azure.net/.default",), "tenant-a"), ((ARM,), "tenant-b"),
    ]


def test_refresh_five_minutes_before_expiry():
    credential, provider, clock = make(lifetime=3600)
    assert credential.get_token(ARM).token == "token-1"
    clock.now += 3600 - 301
    assert credential.get_token(ARM).token == "token-1"
    clock.now += 1
    assert credential.get_token(ARM).token == "token-2"
    assert len(provider.calls) == 2


def test_refresh_at_refresh_on_when_given():
    credential, provider, clock = make(lifetime=3600, refresh_in=1800)
    info = credential.get_token_info(ARM)
    assert info.refresh_on == clock.now + 1800
    clock.now += 1799
    assert credential.get_token(ARM).token == "token-1"
    clock.now += 1
    assert credential.get_token(ARM).token == "token-2"


def test_short_tokens_refresh_half_way():
    credential, provider, clock = make(lifetime=120)
    credential.get_token(ARM)
    clock.now += 59
    assert credential.get_token(ARM).token == "token-1"
    clock.now += 1
    assert credential.get_token(ARM).token == "token-2"


def test_reported_expiry_never_passes_the_session_end():
    credential, _, clock = make(ttl="10m", lifetime=3600)
    start = clock.now
    assert credential.get_token(ARM).expires_on == int(start + 600)
    assert credential.get_token_info(ARM).expires_on == int(start + 600)


def test_expired_session_drops_the_cache_and_refuses():
    credential, provider, clock = make(ttl="10m")
    credential.get_token(ARM)
    clock.now += 600
    for _ in range(3):
        with pytest.raises(SessionExpiredError, match="cache-test.*expired at"):
            credential.get_token(ARM)
        with pytest.raises(SessionExpiredError):
            credential.get_token_info(ARM)
    assert len(provider.calls) == 1, "no token is acquired for an expired session"
    assert provider.forgotten == 1 and credential._cache == {}


def test_concurrent_callers_share_one_request():
    credential, provider, _ = make()
    provider.gate = threading.Event()
    results: list[str] = []
    errors: list[BaseException] = []

    def call():
        try:
            results.append(credential.get_token(ARM).token)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(50)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # let them all queue on the one in-flight request
    provider.gate.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert results == ["token-1"] * 50 and len(provider.calls) == 1


def test_waiters_get_the_leaders_failure():
    credential, provider, _ = make()
    provider.gate = threading.Event()
    provider.fail_with = ClientAuthenticationError("refused")
    errors: list[BaseException] = []

    def call():
        try:
            credential.get_token(ARM)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    provider.gate.set()
    for t in threads:
        t.join(10)
    assert len(errors) == 10 and all(isinstance(e, ClientAuthenticationError) for e in errors)
    assert len(provider.calls) == 1
    provider.fail_with = None
    assert credential.get_token(ARM).token == "token-2", "a failure is not cached"


def test_failed_refresh_serves_the_still_valid_token():
    credential, provider, clock = make(lifetime=3600)
    credential.get_token(ARM)
    clock.now += 3600 - 200  # past the refresh point, 200 s left
    provider.fail_with = ClientAuthenticationError("idp down")
    assert credential.get_token(ARM).token == "token-1"
    clock.now += 180  # 20 s left: too close, the failure surfaces
    with pytest.raises(ClientAuthenticationError):
        credential.get_token(ARM)


def test_claims_bypass_the_cache_and_replace_the_plain_entry():
    credential, provider, _ = make()
    assert credential.get_token(ARM).token == "token-1"
    challenge = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'
    assert credential.get_token(ARM, claims=challenge).token == "token-2"
    assert credential.get_token_info(ARM, options={"claims": challenge}).token == "token-3"
    assert provider.calls[1][2] == challenge
    assert credential.get_token(ARM).token == "token-3", "the challenge's answer serves plain callers"
    assert len(provider.calls) == 3


def test_unavailable_provider_reads_as_an_authentication_failure():
    credential, provider, _ = make()
    provider.fail_with = CredentialUnavailableError("run az login")
    with pytest.raises(ClientAuthenticationError, match="run az login"):
        credential.get_token(ARM)


def test_scopes_are_required():
    credential, _, _ = make()
    with pytest.raises(ValueError, match="scope"):
        credential.get_token()
