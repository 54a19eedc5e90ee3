"""The azure-cli credential with the real Azure CLI (from PyPI), signed in to the sandbox as a custom cloud.

Skipped when ``az`` is not on PATH (CI installs azure-cli into its own venv and appends its bin).
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.mgmt.resource.resources import ResourceManagementClient

from azure_agent_mcp import USER_AGENT
from azure_agent_mcp.identity import CorrelationPolicy, build_credential, resolve_session, whoami
from azure_agent_mcp.identity.azure_cli import sandbox_cli_environment
from azure_agent_mcp.identity.claims import unverified_jwt_claims

pytestmark = pytest.mark.skipif(
    shutil.which("az") is None, reason="the Azure CLI ('az') is not installed on PATH; its tests need it"
)

ARM = "https://management.azure.com/.default"


@pytest.fixture(scope="module")
def az_environ(sandbox, tmp_path_factory) -> dict[str, str]:
    return sandbox_cli_environment(sandbox.manifest, tmp_path_factory.mktemp("azure-config"))


def test_az_sends_our_session_and_the_token_is_reused_in_process(sandbox, az_environ):
    env = sandbox.environment()
    session = resolve_session(session_id=f"az-{uuid.uuid4().hex[:8]}", environ={})
    credential = build_credential("azure-cli", env, session, environ=az_environ)
    since = sandbox.last_seq()
    token = credential.get_token(ARM)
    started = time.perf_counter()
    again = [credential.get_token(ARM) for _ in range(20)]
    cached_seconds = time.perf_counter() - started
    assert {t.token for t in again} == {token.token}
    assert cached_seconds < 1.0, "20 cached calls must not start 20 az processes"

    tokens = [t for t in sandbox.requests(kind="token", since=since)]
    assert len(tokens) == 1
    assert tokens[0]["client_session_query"] == session.id and tokens[0]["client_session_body"] == session.id
    assert unverified_jwt_claims(token.token)["xms_cli_ses"] == session.id

    client = ResourceManagementClient(
        credential, env.default_subscription, base_url=env.arm_endpoint, credential_scopes=[env.arm_scope],
        connection_verify=env.ca_bundle, user_agent=USER_AGENT, per_call_policies=[CorrelationPolicy()],
    )
    assert list(client.resource_groups.list())
    arm = sandbox.requests(kind="arm", since=since)
    assert arm and {e["token_session"] for e in arm} == {session.id}

    info = whoami(credential, env, session)
    assert info["credential"]["kind"] == "azure-cli" and info["agent_markers"]["xms_cli_ses"] == session.id


def test_az_not_signed_in_is_explained(sandbox, tmp_path):
    env = sandbox.environment()
    environ = {"AZURE_CONFIG_DIR": str(tmp_path / "empty"), "PATH": shutil.which("az").rsplit("/", 1)[0]}
    credential = build_credential("azure-cli", env, resolve_session(session_id="az-none", environ={}), environ=environ)
    with pytest.raises(ClientAuthenticationError, match="not signed in.*az login"):
        credential.get_token(ARM)


def test_az_timeout_is_explained(sandbox, az_environ):
    env = sandbox.environment()
    credential = build_credential(
        "azure-cli", env, resolve_session(session_id="az-slow", environ={}), environ=az_environ, timeout=0.001
    )
    with pytest.raises(ClientAuthenticationError, match="did not answer within"):
        credential.get_token(ARM)


def test_az_missing_is_explained(sandbox, tmp_path):
    env = sandbox.environment()
    credential = build_credential(
        "azure-cli", env, resolve_session(session_id="az-missing", environ={}),
        az_path=str(Path(tmp_path) / "no-az-here"), environ={"PATH": str(tmp_path)},
    )
    with pytest.raises(ClientAuthenticationError, match="could not run the Azure CLI"):
        credential.get_token(ARM)
