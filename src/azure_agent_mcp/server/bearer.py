"""Validating the Entra access tokens callers present: signature through the tenant's JWKS, then claims.

Why our own rather than a ``TokenVerifier`` returning None: a caller (and the operator) must be
told *why* a token was refused: expired, wrong audience, wrong issuer, bad signature, unknown key.
The SDK's protocol has no room for a reason, so ``verify`` raises ``TokenRejected`` instead; the
ASGI layer (``resource_server``) turns it into the 401/403 answer.

Rules: RS256 only (``none`` and HS* are refused before any key is looked up), ``iss`` is the
tenant's v2 issuer, ``aud`` is the server app's client id or app id URI, ``exp``/``nbf`` with
``leeway`` seconds of skew, ``tid`` is the tenant, ``scp`` carries the server's scope (else 403),
and the token names a user (``oid``). The JWKS is cached; a token naming an unknown ``kid`` refetches
it at most once per ``REFRESH_INTERVAL`` however many such tokens arrive, so a flood of random key
ids cannot hammer the JWKS endpoint. A token that passed is remembered (by its string) until it
expires, so the hot path is a dict lookup. jwt is imported on first use.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from azure_agent_mcp.server.auth_config import AuthConfig

REFRESH_INTERVAL = 30.0
"""Seconds between two JWKS fetches caused by unknown key ids."""
JWKS_LIFESPAN = 3600.0
CACHE_LIMIT = 20_000
ALGORITHMS = ("RS256",)


class TokenRejected(Exception):
    """A presented token is not acceptable. ``reason`` is a stable word, ``description`` says what to do.

    Never carries the token or any of its bytes.
    """

    def __init__(self, reason: str, description: str, *, status: int = 401, error: str = "invalid_token") -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description
        self.status = status
        self.error = error


class KeysUnavailable(TokenRejected):
    """The tenant's JWKS could not be fetched: nothing can be verified (fail closed, 503)."""

    def __init__(self, description: str) -> None:
        super().__init__("keys_unavailable", description, status=503, error="temporarily_unavailable")


@dataclass(frozen=True)
class VerifiedToken:
    claims: dict[str, Any]
    expires_at: int


class _Keys:
    """The tenant's signing keys: PyJWKClient's cached JWKS, refetched for an unknown kid at most every REFRESH_INTERVAL."""

    def __init__(self, config: AuthConfig) -> None:
        import ssl

        from jwt import PyJWKClient

        context = ssl.create_default_context(cafile=config.ca_bundle) if config.ca_bundle else None
        self._client = PyJWKClient(config.jwks_uri, cache_jwk_set=True, lifespan=JWKS_LIFESPAN, timeout=10,
                                   ssl_context=context)
        self._lock = threading.Lock()
        self._last_forced = float("-inf")
        self.fetches = 0

    def key_for(self, kid: str) -> Any:
        from jwt import PyJWKClientConnectionError, PyJWKClientError

        try:
            with self._lock:
                key = self._match(self._client.get_signing_keys(), kid)
                if key is None and time.monotonic() - self._last_forced >= REFRESH_INTERVAL:
                    self._last_forced = time.monotonic()
                    self.fetches += 1
                    key = self._match(self._client.get_signing_keys(refresh=True), kid)
        except PyJWKClientConnectionError as exc:
            raise KeysUnavailable("the tenant's signing keys (JWKS) could not be fetched; retry shortly") from exc
        except PyJWKClientError as exc:
            raise KeysUnavailable("the tenant's JWKS answer holds no usable signing key") from exc
        if key is None:
            raise TokenRejected("unknown_key", "the token is signed with a key the tenant does not publish (unknown kid)")
        return key.key

    @staticmethod
    def _match(keys: list[Any], kid: str) -> Any:
        return next((k for k in keys if k.key_id == kid), None)


class EntraTokenVerifier:
    """Verifies bearer tokens for one server app in one tenant (thread-safe; blocking on a JWKS fetch)."""

    def __init__(self, config: AuthConfig, *, clock: Any = time.time) -> None:
        self.config = config
        self._clock = clock
        self._keys: _Keys | None = None
        self._keys_lock = threading.Lock()
        self._verified: dict[str, VerifiedToken] = {}

    @property
    def keys(self) -> _Keys:
        with self._keys_lock:
            if self._keys is None:
                self._keys = _Keys(self.config)
            return self._keys

    def cached(self, token: str) -> VerifiedToken | None:
        """The token's verified claims when it passed before and is still inside its lifetime; else None."""
        seen = self._verified.get(token)
        if seen is None:
            return None
        if seen.expires_at + self.config.leeway <= self._clock():
            self._verified.pop(token, None)
            return None
        return seen

    def verify(self, token: str) -> VerifiedToken:
        seen = self.cached(token)
        if seen is not None:
            return seen
        verified = self._verify(token)
        if len(self._verified) >= CACHE_LIMIT:
            self._verified.clear()
        self._verified[token] = verified
        return verified

    def _verify(self, token: str) -> VerifiedToken:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("malformed", "the bearer token is not a JWT (three base64url parts)") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenRejected("unsupported_algorithm",
                                f"the token's signing algorithm {str(alg)[:20]!r} is not accepted (RS256 only)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("unknown_key", "the token's header names no signing key (kid)")
        key = self.keys.key_for(kid)
        config = self.config
        try:
            claims = jwt.decode(
                token, key, algorithms=list(ALGORITHMS), audience=list(config.audiences), issuer=config.issuer,
                leeway=config.leeway, options={"require": ["exp", "iss", "aud"], "verify_iat": False},
            )
        except jwt.InvalidSignatureError:
            raise TokenRejected("bad_signature", "the token's signature does not verify with the tenant's key") from None
        except jwt.ExpiredSignatureError:
            raise TokenRejected("expired", "the token has expired: get a new one from Entra") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("not_yet_valid", "the token is not valid yet (nbf is in the future): check clocks") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(
                "wrong_audience", f"the token was issued for another resource: ask Entra for the scope {config.scope}"
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("wrong_issuer", f"the token was not issued by {config.issuer} (v2 tokens only: "
                                                "the app registration's accessTokenAcceptedVersion must be 2)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected("malformed", f"the token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise TokenRejected("malformed", f"the token could not be decoded ({type(exc).__name__})") from None
        return self._check_claims(claims)

    def _check_claims(self, claims: dict[str, Any]) -> VerifiedToken:
        config = self.config
        if claims.get("tid") != config.tenant_id:
            raise TokenRejected("wrong_tenant", f"the token is from another tenant; this server trusts {config.tenant_id}")
        scopes = str(claims.get("scp") or "").split()
        if config.scope_name not in scopes:
            raise TokenRejected(
                "insufficient_scope",
                f"the token does not carry the scope {config.scope} (delegated, user sign-in): ask Entra for it",
                status=403, error="insufficient_scope",
            )
        if not isinstance(claims.get("oid"), str) or not claims.get("oid"):
            raise TokenRejected("malformed", "the token names no user (oid)")
        return VerifiedToken(claims, int(claims["exp"]))
