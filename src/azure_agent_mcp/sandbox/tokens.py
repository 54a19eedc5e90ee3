"""The sandbox's signing key: issues RS256 JWTs and verifies the ones presented back to it.

ARM and Key Vault trust only tokens this key signed, exactly as Azure trusts only Entra's keys.
A token string is checked once: the result (claims, or the reason it is invalid) is cached by the
string itself, so the hot path of an ARM request is a dict lookup plus an expiry comparison.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from typing import Any

_CACHE_LIMIT = 20_000


class TokenInvalidError(Exception):
    """The token is malformed or was not signed by this sandbox."""


class TokenExpiredError(Exception):
    """The token's ``exp`` is in the past."""

    def __init__(self, exp: int, now: int) -> None:
        super().__init__(f"token expired at {exp}, now {now}")
        self.exp = exp
        self.now = now


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class TokenService:
    """Holds one RSA key; signs claims and verifies tokens (with a per-token-string cache)."""

    def __init__(self, issuer: str) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.issuer = issuer
        self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public_key = self._private_key.public_key()
        der = self._public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = b64url(hashlib.sha1(der).digest())  # noqa: S324 - a key id, as Entra's x5t, not security
        self._cache: dict[str, dict[str, Any] | str] = {}
        self._lock = threading.Lock()

    def jwks(self) -> dict[str, Any]:
        numbers = self._public_key.public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": self.kid,
                    "x5t": self.kid,
                    "n": _int_b64(numbers.n),
                    "e": _int_b64(numbers.e),
                    "issuer": self.issuer,
                }
            ]
        }

    def sign(self, claims: dict[str, Any]) -> str:
        import jwt

        return jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a token this sandbox signed; raises TokenInvalidError / TokenExpiredError."""
        cached = self._cache.get(token)
        if cached is None:
            cached = self._verify_signature(token)
            with self._lock:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[token] = cached
        if isinstance(cached, str):
            raise TokenInvalidError(cached)
        now = int(time.time())
        exp = cached.get("exp")
        if not isinstance(exp, int) or exp <= now:
            raise TokenExpiredError(exp if isinstance(exp, int) else 0, now)
        nbf = cached.get("nbf")
        if isinstance(nbf, int) and nbf > now + 300:
            raise TokenInvalidError("the token is not valid yet (nbf)")
        return cached

    def _verify_signature(self, token: str) -> dict[str, Any] | str:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "RS256":
                return f"unsupported signing algorithm {header.get('alg')!r}"
            if header.get("kid") not in (None, self.kid):
                return "the token was signed with an unknown key"
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidSignatureError:
            return "the token's signature is invalid"
        except jwt.PyJWTError as exc:
            return f"the token is malformed ({type(exc).__name__})"
        if claims.get("iss") != self.issuer:
            return "the token was issued by another authority"
        return claims


def new_uti() -> str:
    """Entra's ``uti``: a short unique token id."""
    return b64url(uuid.uuid4().bytes)
