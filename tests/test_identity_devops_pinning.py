"""Identity pinning for Azure DevOps tokens: a token for the wrong principal is refused before anything is sent.

The sandbox is made to hand out the wrong token (the shared project identity instead of the agent;
a sidecar that drops the agent user; a sidecar API configured for another resource), and an
azure-core pipeline with the bearer token policy, as the Azure DevOps tools use, tries to call
Azure DevOps with it. What reached the sandbox is read from its request journal: nothing under the
Azure DevOps hosts when the token is refused, the request when it is not (so the check can fail).
JWTs begin with ``eyJ``: no output, log, error or report may contain one.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import decode_claims

from azure_agent_mcp.identity import IdentityMismatchError, build_credential, resolve_session, whoami
from azure_agent_mcp.identity.sidecar import SidecarError
from azure_agent_mcp.identity.whoami_report import whoami_lines

DEVOPS_APP = "499b84ac-1321-427f-aa17-267ca6975798"
DEVOPS = f"{DEVOPS_APP}/.default"
ARM = "https://management.azure.com/.default"
PROJECTS = "/contoso/_apis/projects?api-version=7.1"


def new_session(prefix: str):
    return resolve_session(session_id=f"{prefix}-{uuid.uuid4().hex[:8]}", ttl="8h", environ={})


def ids(sandbox: Any) -> dict[str, str]:
    return sandbox.manifest["agent_identity"]


def devops_get(credential: Any, env: Any, path: str = PROJECTS) -> Any:
    """One GET to Azure DevOps through azure-core's pipeline and bearer token policy (no retries)."""
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy
    from azure.core.pipeline.transport import RequestsTransport
    from azure.core.rest import HttpRequest

    client = PipelineClient(base_url=env.devops_endpoint,
                            policies=[BearerTokenCredentialPolicy(credential, env.devops_scope)],
                            transport=RequestsTransport(connection_verify=env.ca_bundle))
    with client:
        return client.send_request(HttpRequest("GET", env.devops_endpoint + path))


def devops_requests(sandbox: Any, since: int) -> list[dict[str, Any]]:
    """Every journal entry for the Azure DevOps hosts (whichever kind the sandbox files them under)."""
    from urllib.parse import urlsplit

    prefixes = tuple(urlsplit(sandbox.manifest[key]).path.rstrip("/") + "/"
                     for key in ("devops_endpoint", "devops_vssps_endpoint"))
    return [e for e in sandbox.requests(since=since) if str(e.get("path", "")).startswith(prefixes)]


def test_devops_requests_helper_sees_a_request(sandbox):
    """The negative checks below rely on this: a request that was sent is found."""
    env = sandbox.environment()
    since = sandbox.last_seq()
    devops_get(build_credential("sandbox", env, new_session("devops-seen")), env)
    seen = devops_requests(sandbox, since)
    assert len(seen) == 1 and seen[0]["path"] == "/devops/contoso/_apis/projects"


WRONG_IDENTITY_CASES = {
    "agent identity": ("agent-identity", {}),
    "agent user": ("agent-identity", {"agent_user": "upn"}),
    "sidecar agent user": ("sidecar", {"agent_user": "upn"}),
    "sidecar autonomous": ("sidecar", {}),
}


@pytest.mark.parametrize("case", list(WRONG_IDENTITY_CASES))
def test_a_devops_token_for_the_project_identity_is_refused_before_use(fresh_sandbox_state, caplog, case):
    sandbox = fresh_sandbox_state
    caplog.set_level(logging.DEBUG)
    env = sandbox.environment()
    agent = ids(sandbox)
    kind, options = WRONG_IDENTITY_CASES[case]
    options = {k: agent["agent_user_upn"] if v == "upn" else v for k, v in options.items()}
    sandbox.set_wrong_identity(True)

    # Unpinned, the mistake is silent: the project identity's token goes to Azure DevOps.
    since = sandbox.last_seq()
    unpinned = build_credential(kind, env, new_session("devops-unpinned"), **options)
    assert decode_claims(unpinned.get_token(DEVOPS).token)["appid"] == agent["project_identity_client_id"]
    devops_get(unpinned, env)
    assert len(devops_requests(sandbox, since)) == 1

    # Pinned to the agent identity: refused, named, and nothing reaches Azure DevOps.
    since = sandbox.last_seq()
    pinned = build_credential(kind, env, new_session("devops-pinned"), expect_principal=agent["agent_identity_id"],
                              **options)
    with pytest.raises(IdentityMismatchError) as caught:
        pinned.get_token(DEVOPS)
    error = caught.value
    assert error.expected == agent["agent_identity_id"]
    assert error.presented["appid"] == agent["project_identity_client_id"]
    assert error.presented["oid"] == agent["project_identity_object_id"]
    assert "nothing was sent" in str(error)
    with pytest.raises(ClientAuthenticationError, match="identity pinning refused"):
        devops_get(pinned, env)
    assert devops_requests(sandbox, since) == []
    assert sandbox.requests(kind="token" if kind == "agent-identity" else "sidecar", since=since), \
        "the token was obtained (and refused), not never asked for"
    assert "eyJ" not in str(error) and "eyJ" not in caplog.text

    sandbox.set_wrong_identity(False)
    right = build_credential(kind, env, new_session("devops-pinned-ok"), expect_principal=agent["agent_identity_id"],
                             **options)
    since = sandbox.last_seq()
    devops_get(right, env)
    assert len(devops_requests(sandbox, since)) == 1


def test_a_sidecar_that_drops_the_agent_user_is_caught_by_pinning_the_agent_user(fresh_sandbox_state):
    """Asked for the agent user, the sidecar answers as the agent identity: a pin on the agent user refuses it.

    A pin on the agent identity cannot tell the two apart (the agent user's token names the agent
    identity as its app), so acting as the agent user is pinned by the agent user's object id.
    """
    sandbox = fresh_sandbox_state
    env = sandbox.environment()
    agent = ids(sandbox)
    user = agent["agent_user_upn"]
    sandbox.set_sidecar_drops_agent_user(True)
    since = sandbox.last_seq()
    pinned = build_credential("sidecar", env, new_session("devops-drop"), agent_user=user,
                              expect_principal=agent["agent_user_object_id"])
    with pytest.raises(IdentityMismatchError) as caught:
        pinned.get_token(DEVOPS)
    assert caught.value.presented["oid"] == agent["agent_identity_id"]
    assert caught.value.presented["idtyp"] == "app" and "upn" not in caught.value.presented
    with pytest.raises(ClientAuthenticationError, match="identity pinning refused"):
        devops_get(pinned, env)
    asked = sandbox.requests(kind="sidecar", since=since)
    assert asked and all(e["query"].get("AgentUsername") == user for e in asked), "the sidecar was asked for the user"
    assert devops_requests(sandbox, since) == []

    loose = build_credential("sidecar", env, new_session("devops-drop-loose"), agent_user=user,
                             expect_principal=agent["agent_identity_id"])
    assert decode_claims(loose.get_token(DEVOPS).token)["oid"] == agent["agent_identity_id"]  # not caught

    sandbox.set_sidecar_drops_agent_user(False)
    right = build_credential("sidecar", env, new_session("devops-drop-ok"), agent_user=user,
                             expect_principal=agent["agent_user_object_id"])
    assert decode_claims(right.get_token(DEVOPS).token)["upn"] == user


def test_a_tagged_user_pinned_to_another_user_sends_nothing(sandbox):
    env = sandbox.environment()
    users = {u["name"]: u for u in sandbox.manifest["users"]}
    since = sandbox.last_seq()
    wrong = build_credential("sandbox", env, new_session("devops-pin-user"), expect_principal=users["reader"]["object_id"])
    with pytest.raises(IdentityMismatchError) as caught:
        devops_get(wrong, env)
    assert caught.value.presented["upn"] == users["developer"]["upn"]
    assert devops_requests(sandbox, since) == []
    right = build_credential("sandbox", env, new_session("devops-pin-user-ok"),
                             expect_principal=users["developer"]["object_id"])
    assert decode_claims(right.get_token(DEVOPS).token)["oid"] == users["developer"]["object_id"]


def test_a_service_principal_pinned_to_another_app_sends_nothing(sandbox):
    env = sandbox.environment()
    sp = sandbox.manifest["service_principals"][0]
    options = {"client_id": sp["client_id"], "client_secret": sp["client_secret"]}
    since = sandbox.last_seq()
    wrong = build_credential("service-principal", env, new_session("devops-pin-sp"),
                             expect_principal=ids(sandbox)["agent_identity_id"], **options)
    with pytest.raises(IdentityMismatchError) as caught:
        devops_get(wrong, env)
    assert caught.value.presented["appid"] == sp["client_id"]
    assert devops_requests(sandbox, since) == []
    right = build_credential("service-principal", env, new_session("devops-pin-sp-ok"),
                             expect_principal=sp["client_id"], **options)
    assert decode_claims(right.get_token(DEVOPS).token)["appid"] == sp["client_id"]


def test_a_sidecar_api_for_another_resource_is_refused_by_audience(sandbox):
    """An API name mapped to the wrong resource would send an ARM token to Azure DevOps: refused first."""
    env = sandbox.environment()
    since = sandbox.last_seq()
    misconfigured = build_credential("sidecar", env, new_session("devops-aud"), api_names={env.devops_scope: "arm"})
    with pytest.raises(SidecarError, match="audience https://management.azure.com/") as caught:
        misconfigured.get_token(DEVOPS)
    assert "eyJ" not in str(caught.value)
    with pytest.raises(ClientAuthenticationError, match="was not used"):
        devops_get(misconfigured, env)
    assert devops_requests(sandbox, since) == []
    assert [e["api_name"] for e in sandbox.requests(kind="sidecar", since=since)] == ["arm", "arm"]


# -- whoami ------------------------------------------------------------------------------------------------


def test_whoami_shows_the_devops_principal(fresh_sandbox_state):
    sandbox = fresh_sandbox_state
    env = sandbox.environment()
    agent = ids(sandbox)
    credential = build_credential("sandbox", env, new_session("devops-whoami"))
    assert "devops" not in whoami(credential, env, credential.session)  # off by default: no extra request
    info = whoami(credential, env, credential.session, devops=True)
    report = info["devops"]
    assert report["audience"] == DEVOPS_APP and report["scope"] == DEVOPS
    assert report["principal"]["upn"] == info["principal"]["upn"] and report["same_principal_as_arm"] is True
    assert report["session_in_token"] is True
    assert any(line.startswith("azure devops ") and "same principal as ARM" in line for line in whoami_lines(info))

    sandbox.set_wrong_identity(True)
    pinned = build_credential("agent-identity", env, new_session("devops-whoami-pin"),
                              expect_principal=agent["agent_identity_id"])
    info = whoami(pinned, env, pinned.session, devops=True)
    assert info["devops"]["pinning"]["match"] is False
    assert info["devops"]["principal"]["appid"] == agent["project_identity_client_id"]
    assert any("MISMATCH" in line for line in whoami_lines(info) if line.startswith("azure devops"))
    # A kind that cannot get a DevOps token reports why instead of failing whoami.
    sandbox.set_wrong_identity(False)
    nothing = build_credential("sidecar", env, new_session("devops-whoami-none"), api_names={env.arm_scope: "arm"})
    info = whoami(nothing, env, nothing.session, devops=True)
    assert "no API configured" in info["devops"]["error"] and info["principal"]["appid"] == agent["agent_identity_id"]
    assert "eyJ" not in json.dumps(info)


def test_cli_whoami_devops_as_the_agent_user_through_the_sidecar(sandbox, tmp_path):
    import os

    agent = ids(sandbox)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "COPILOT_"))}
    environ["AZURE_AGENT_MCP_STATE_DIR"] = str(tmp_path / "state")
    done = subprocess.run([sys.executable, "-m", "azure_agent_mcp", "whoami", "--json", "--devops", "--sandbox",
                           str(sandbox.manifest_path), "--credential", "sidecar", "--agent-user", agent["agent_user_upn"],
                           "--expect-principal", agent["agent_user_object_id"]],
                          capture_output=True, text=True, env=environ, timeout=120)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["devops"]["principal"]["upn"] == agent["agent_user_upn"]
    assert info["devops"]["audience"] == DEVOPS_APP and info["devops"]["pinning"] == {"match": True}
    assert "eyJ" not in done.stdout + done.stderr


# -- the sidecar's audience rule, adversarially --------------------------------------------------------------

RESOURCES = ("https://management.azure.com", "https://vault.azure.net", "https://api.loganalytics.io", DEVOPS_APP,
             "api://5a1db0c5-3c90-4000-a000-000000000e01")
_guids = st.uuids().map(str)
_audiences = st.one_of(st.sampled_from(RESOURCES), _guids, st.text(min_size=1, max_size=40),
                       st.sampled_from(RESOURCES).map(lambda r: r + ".evil.example"),
                       st.sampled_from(RESOURCES).map(lambda r: "https://" + r.split("://")[-1] + "/x"))


def _spellings(resource: str) -> list[str]:
    return [resource, resource + "/", resource.upper(), resource.upper() + "/"]


@settings(max_examples=300, deadline=None)
@given(resource=st.sampled_from(RESOURCES), audience=_audiences)
def test_only_the_requested_resource_is_an_accepted_audience(resource, audience):
    from azure_agent_mcp.identity.sidecar import audience_matches

    scope = resource + "/.default"
    same = {resource.lower().rstrip("/")}
    if resource.startswith("api://"):
        same.add(resource[len("api://"):].lower())
    if resource == "https://management.azure.com":
        same.add("https://management.core.windows.net")  # ARM's other identifier
    if audience.lower().rstrip("/") in same:
        assert audience_matches(audience, scope)
    else:
        assert not audience_matches(audience, scope), (audience, scope)


@given(resource=st.sampled_from(RESOURCES))
def test_every_spelling_of_the_resource_is_accepted(resource):
    from azure_agent_mcp.identity.sidecar import audience_matches

    for spelling in _spellings(resource):
        assert audience_matches(spelling, resource + "/.default")
    assert audience_matches("https://management.core.windows.net/", "https://management.azure.com/.default")
    assert not audience_matches("https://management.azure.com/", DEVOPS)
    assert not audience_matches(DEVOPS_APP, "https://management.azure.com/.default")
