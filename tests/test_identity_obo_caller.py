"""On-behalf-of exchanges answer for the caller whose token was exchanged, and a consent takes effect at once.

Real MSAL over HTTPS against the sandbox's OBO grant; outcomes are read from the sandbox's journal
(what reached Entra and ARM) and from the tokens.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from auth_helpers import server_app, sign_in, user
from azure.core.exceptions import ClientAuthenticationError
from azure.mgmt.resource.resources import ResourceManagementClient
from conftest import decode_claims
from hypothesis import given, settings
from hypothesis import strategies as st

from azure_agent_mcp.identity import resolve_session
from azure_agent_mcp.identity.credential import AgentCredential
from azure_agent_mcp.identity.obo import (
    ConsentRequiredError,
    OboPrincipalMismatchError,
    OboProvider,
    ServerApp,
    same_principal,
)

ARM = "https://management.azure.com/.default"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _session(prefix: str) -> Any:
    return resolve_session(session_id=f"{prefix}-{uuid.uuid4().hex[:8]}", ttl="8h", environ={})


def _credential(sandbox: Any, assertion: str, session: Any) -> AgentCredential:
    from azure_agent_mcp.identity.agent_identity import BlueprintSecret

    env = sandbox.environment()
    app = ServerApp(authority_host=env.authority_host, tenant_id=env.tenant_id,
                    client_id=server_app(sandbox)["client_id"],
                    credential=BlueprintSecret(server_app(sandbox)["client_secret"]), ca_bundle=env.ca_bundle)
    return AgentCredential(OboProvider(app, session, lambda: assertion), session)


def _arm(sandbox: Any, credential: Any) -> ResourceManagementClient:
    env = sandbox.environment()
    return ResourceManagementClient(credential, env.default_subscription, base_url=env.arm_endpoint,
                                    credential_scopes=[env.arm_scope], connection_verify=env.ca_bundle)


def _exchanges(sandbox: Any, since: int, session_id: str) -> list[dict[str, Any]]:
    return [e for e in sandbox.requests("token", since=since)
            if e.get("grant_type") == JWT_BEARER and e.get("client_session_body") == session_id]


def test_an_answer_for_another_user_is_refused_and_nothing_is_sent_with_it(fresh_sandbox_state):
    sandbox = fresh_sandbox_state
    developer = user(sandbox, "developer")
    assertion = sign_in(sandbox, "developer")["access_token"]
    session = _session("obo-other")
    credential = _credential(sandbox, assertion, session)
    sandbox.set_obo_answers_for_another_user(True)
    since = sandbox.last_seq()
    with pytest.raises(OboPrincipalMismatchError) as caught:
        credential.get_token(ARM)
    with pytest.raises(ClientAuthenticationError):
        list(_arm(sandbox, credential).resource_groups.list())
    exchanges = _exchanges(sandbox, since, session.id)
    assert len(exchanges) == 2 and all(e["subject_oid"] not in (None, developer["object_id"]) for e in exchanges)
    assert sandbox.requests("arm", since=since) == [], "no ARM request carried the misdirected token"
    message = str(caught.value)
    assert developer["object_id"] in message and exchanges[0]["subject_oid"] in message
    assert "eyJ" not in message and assertion not in message

    sandbox.set_obo_answers_for_another_user(False)
    token = credential.get_token(ARM).token  # nothing of the refused answer was kept
    assert decode_claims(token)["oid"] == developer["object_id"]
    assert list(_arm(sandbox, credential).resource_groups.list())


def _jwt(claims: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJub25lIn0.{body}.sig"


GUIDS = st.uuids().map(str)


@settings(max_examples=60, deadline=None)
@given(oid=GUIDS, tid=GUIDS, other_oid=GUIDS, other_tid=GUIDS, upper=st.booleans())
def test_only_the_same_oid_and_tid_count_as_the_caller(oid, tid, other_oid, other_tid, upper):
    caller = _jwt({"oid": oid, "tid": tid})
    same = _jwt({"oid": oid.upper() if upper else oid, "tid": tid, "upn": "whoever"})
    assert same_principal(caller, same)
    assert same_principal(caller, _jwt({"oid": other_oid, "tid": tid})) == (other_oid == oid)
    assert same_principal(caller, _jwt({"oid": oid, "tid": other_tid})) == (other_tid == tid)


@pytest.mark.parametrize("answer", [
    _jwt({"tid": "t"}), _jwt({"oid": "o"}), _jwt({"oid": "", "tid": ""}), "opaque-token", "a.b.c", "",
])
def test_an_answer_that_does_not_say_whose_it_is_is_refused(answer):
    assert not same_principal(_jwt({"oid": "o", "tid": "t"}), answer)
    assert not same_principal(answer, answer)


def test_a_retry_after_consent_works_at_once_in_the_same_session(fresh_sandbox_state):
    """MSAL remembers an identical 400 for a minute; the retry after consent must still reach Entra."""
    sandbox = fresh_sandbox_state
    newcomer = user(sandbox, "newcomer")
    assertion = sign_in(sandbox, "newcomer")["access_token"]
    session = _session("obo-consent")
    credential = _credential(sandbox, assertion, session)
    since = sandbox.last_seq()
    with pytest.raises(ConsentRequiredError):
        credential.get_token(ARM)
    sandbox.grant_consent(newcomer["upn"], "https://management.azure.com")
    token = credential.get_token(ARM).token
    assert decode_claims(token)["oid"] == newcomer["object_id"]
    refused, granted = _exchanges(sandbox, since, session.id)
    assert refused["status"] == 400 and refused["subject_oid"] is None
    assert granted["status"] == 200 and granted["subject_oid"] == newcomer["object_id"]
    since = sandbox.last_seq()
    list(_arm(sandbox, credential).resource_groups.list())
    (call,) = sandbox.requests("arm", since=since)
    assert call["status"] == 200


def test_every_retry_without_consent_asks_entra_again_and_is_refused(fresh_sandbox_state):
    """No refusal is served from a memory: each retry is Entra's answer of the moment."""
    sandbox = fresh_sandbox_state
    assertion = sign_in(sandbox, "newcomer")["access_token"]
    session = _session("obo-noconsent")
    credential = _credential(sandbox, assertion, session)
    since = sandbox.last_seq()
    for _ in range(3):
        with pytest.raises(ConsentRequiredError):
            credential.get_token(ARM)
    exchanges = _exchanges(sandbox, since, session.id)
    assert [e["status"] for e in exchanges] == [400, 400, 400]
