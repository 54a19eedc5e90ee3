"""Shared fixtures: one sandbox for the whole session, and small token helpers for its tests.

Tests that change global sandbox state (faults, switches, the world) use ``fresh_sandbox_state``
(or call ``sandbox.reset()``) so the next test sees the seed world again.

Note on CA trust: this environment may set ``REQUESTS_CA_BUNDLE``, which ``requests`` lets
override a session's ``verify``. MSAL uses ``requests``, so MSAL clients here get an explicit
``http_client`` session with ``trust_env = False`` and ``verify`` = the sandbox CA.
azure-core passes ``connection_verify`` per request, which wins over the environment.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from azure_agent_mcp.sandbox import Sandbox

ARM_SCOPE = "https://management.azure.com/.default"
VAULT_SCOPE = "https://vault.azure.net/.default"


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture(scope="session")
def sandbox_manifest_path(sandbox: Sandbox) -> Path:
    assert sandbox.manifest_path is not None
    return sandbox.manifest_path


@pytest.fixture
def fresh_sandbox_state(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The session sandbox, reset to its seed state before and after the test."""
    sandbox.reset()
    yield sandbox
    sandbox.reset()


def requests_session(manifest: dict[str, Any]) -> Any:
    """A requests.Session that trusts exactly the sandbox CA (for MSAL's ``http_client``)."""
    import requests

    session = requests.Session()
    session.verify = manifest["ca_bundle"]
    session.trust_env = False
    return session


def httpx_client(manifest: dict[str, Any]) -> Any:
    import httpx

    return httpx.Client(verify=ssl.create_default_context(cafile=manifest["ca_bundle"]), timeout=30)


class SandboxTokens:
    """Gets tokens from the sandbox's token endpoint with a plain HTTPS client (httpx)."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.manifest = manifest
        self.client = httpx_client(manifest)
        self.token_url = f"{manifest['authority_host']}/{manifest['tenant_id']}/oauth2/v2.0/token"

    def user_token(self, user: str = "developer", scope: str = ARM_SCOPE, *, session: str | None = None,
                   claims: dict[str, Any] | None = None, query_session: str | None = None) -> str:
        record = next(u for u in self.manifest["users"] if u["name"] == user)
        data = {"grant_type": "password", "client_id": self.manifest["public_client_id"], "username": record["upn"],
                "password": record["password"], "scope": f"{scope} openid profile offline_access"}
        if session is not None:
            data["client_session"] = session
        if claims is not None:
            data["claims"] = json.dumps(claims)
        params = {"client_session": query_session} if query_session is not None else None
        response = self.client.post(self.token_url, data=data, params=params)
        response.raise_for_status()
        return response.json()["access_token"]

    def app_token(self, scope: str = ARM_SCOPE, claims: dict[str, Any] | None = None) -> str:
        sp = self.manifest["service_principals"][0]
        data = {"grant_type": "client_credentials", "client_id": sp["client_id"],
                "client_secret": sp["client_secret"], "scope": scope}
        if claims is not None:
            data["claims"] = json.dumps(claims)
        response = self.client.post(self.token_url, data=data)
        response.raise_for_status()
        return response.json()["access_token"]


class UserCredential:
    """An azure-core TokenCredential for a seeded user (password grant), optionally agent-tagged.

    Honours ``claims`` (claims challenges) by adding them to the token request, as a real
    credential does.
    """

    def __init__(self, tokens: SandboxTokens, user: str = "developer", session: str | None = None) -> None:
        self.tokens = tokens
        self.user = user
        self.session = session
        self.calls: list[dict[str, Any]] = []

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.calls.append({"scopes": scopes, "claims": claims})
        token = self.tokens.user_token(self.user, scopes[0], session=self.session,
                                       claims=json.loads(claims) if claims else None)
        return AccessToken(token, int(time.time()) + 3000)


@pytest.fixture(scope="session")
def sandbox_tokens(sandbox: Sandbox) -> SandboxTokens:
    return SandboxTokens(sandbox.manifest)


@pytest.fixture(scope="session")
def developer_credential(sandbox_tokens: SandboxTokens) -> UserCredential:
    return UserCredential(sandbox_tokens, "developer")


def decode_claims(token: str) -> dict[str, Any]:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})
