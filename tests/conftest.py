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
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from azure_agent_mcp.sandbox import Sandbox

ARM_SCOPE = "https://management.azure.com/.default"
VAULT_SCOPE = "https://vault.azure.net/.default"


@pytest.fixture(scope="session", autouse=True)
def private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """In-process servers and audit logs keep their state (the audit signing key) out of the real home."""
    import os

    state = tmp_path_factory.mktemp("state")
    previous = os.environ.get("AZURE_AGENT_MCP_STATE_DIR")
    os.environ["AZURE_AGENT_MCP_STATE_DIR"] = str(state)
    yield state
    if previous is None:
        os.environ.pop("AZURE_AGENT_MCP_STATE_DIR", None)
    else:
        os.environ["AZURE_AGENT_MCP_STATE_DIR"] = previous


# Every ARM, Key Vault, Log Analytics and Azure DevOps request the session sandbox served, for the whole run (resets clear
# the sandbox's own log between tests; the journal's tap keeps them).
_SERVED: list[dict[str, Any]] = []


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox() as sb:
        sb.state.journal.tap = lambda entry: _SERVED.append(entry) if entry.get("kind") in ("arm", "vault", "logs", "devops", "graph") else None
        yield sb
    check_decided_equals_sent(_SERVED, tmp_path_factory.getbasetemp())


def _audited_requests(base: Path) -> tuple[dict[str, Counter[tuple[str, str]]], dict[str, Counter[tuple[str, str]]]]:
    """(method, path) of every request an audit log under ``base`` says was sent, by correlation id.

    Two tallies: requests the outcome says were answered (they reached the server), and requests
    whose outcome is a transport error or missing (they may or may not have reached it).
    """
    intents: list[dict[str, Any]] = []
    outcomes: dict[str, dict[str, Any]] = {}
    for file in base.rglob("*.jsonl*"):
        if not file.is_file() or file.suffix in (".lock", ".pub", ".key") or ".anchor" in file.name:
            continue
        for line in file.read_bytes().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # torn or tampered lines of the audit tests' own files
            if not isinstance(record, dict):
                continue
            if record.get("kind") == "intent" and isinstance(record.get("path"), str):
                intents.append(record)
            elif record.get("kind") == "outcome" and isinstance(record.get("request_id"), str):
                outcomes[record["request_id"]] = record
    sure: dict[str, Counter[tuple[str, str]]] = {}
    maybe: dict[str, Counter[tuple[str, str]]] = {}
    for intent in intents:
        correlation = intent.get("correlation_id")
        if not isinstance(correlation, str):
            continue
        answered = isinstance(outcomes.get(str(intent.get("request_id")), {}).get("status"), int)
        tally = sure if answered else maybe
        tally.setdefault(correlation, Counter())[(str(intent.get("method")), intent["path"])] += 1
    return sure, maybe


def check_decided_equals_sent(served: list[dict[str, Any]], base: Path) -> None:
    """The suite-wide invariant of the guard: what the audit says it decided is what went on the wire.

    For every tool call whose requests reached the sandbox and were audited (one correlation id
    per call), the requests the sandbox received, path as received byte for byte, are exactly the
    requests the audit recorded as sent.
    """
    sure, maybe = _audited_requests(base)
    audited = set(sure) | set(maybe)
    received: dict[str, Counter[tuple[str, str]]] = {}
    for entry in served:
        correlation = entry.get("correlation_id")
        if correlation in audited:
            received.setdefault(correlation, Counter())[(entry["method"], entry["raw_path"])] += 1
    wrong = {}
    for correlation, got in received.items():
        must, may = sure.get(correlation, Counter()), maybe.get(correlation, Counter())
        # every answered request arrived exactly as recorded; nothing arrived that no intent names
        if must - got or got - (must + may):
            wrong[correlation] = (must + may, got)
    assert not wrong, f"decided != sent for {len(wrong)} call(s): " + "; ".join(
        f"{c}: audit {dict(a)} vs sandbox {dict(r)}" for c, (a, r) in list(wrong.items())[:5]
    )
    checked = len(received)
    # Tests that drive the sandbox directly (no server, no audit) have nothing to compare; audited
    # requests of which none reached the sandbox mean the comparison itself is broken.
    assert checked >= 1 or not audited, "no audited call reached the session sandbox: the invariant was never checked"
    print(f"\ndecided == sent: {checked} audited call(s), {sum(sum(c.values()) for c in received.values())} "
          f"request(s) compared path for path with what the sandbox received")


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
