"""access/pim_assign.py against the sandbox's PIM: a time-bound ACTIVE assignment for a service principal
(AdminAssign with an expiration), its removal (AdminRemove), its end on the sandbox clock, PIM's refusals."""

from __future__ import annotations

import datetime
import time
import uuid

import pytest
from conftest import httpx_client
from ephemeral_helpers import AGENTS, Graph

from azure_agent_mcp.access.pim_assign import (
    TimeBoundAssignmentError,
    assign_time_bound,
    authorization_client,
    full_role_definition_id,
    iso_duration,
    remove_time_bound,
)
from azure_agent_mcp.environment import from_manifest

WEBSITE_CONTRIBUTOR = "de139f84-1756-47ae-9be6-808fbbe84772"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


class BlueprintCredential:
    """The blueprint's own ARM token (it is Owner of rg-prod-app in the sandbox), as an azure-core credential."""

    def __init__(self, manifest) -> None:
        self.manifest = manifest
        self.client = httpx_client(manifest)

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        agent = self.manifest["agent_identity"]
        answer = self.client.post(f"{self.manifest['authority_host']}/{self.manifest['tenant_id']}/oauth2/v2.0/token",
                                  data={"grant_type": "client_credentials", "client_id": agent["blueprint_client_id"],
                                        "client_secret": agent["blueprint_client_secret"], "scope": scopes[0]})
        answer.raise_for_status()
        return AccessToken(answer.json()["access_token"], int(time.time()) + 3000)


@pytest.fixture
def pim(fresh_sandbox_state):
    env = from_manifest(fresh_sandbox_state.manifest)
    client = authorization_client(BlueprintCredential(fresh_sandbox_state.manifest), env,
                                  connection_verify=env.connection_verify)
    yield client
    client.close()


@pytest.fixture
def agent(fresh_sandbox_state):
    """A fresh agent identity (a service principal) and an ARM token of its own."""
    graph = Graph(fresh_sandbox_state)
    agent_id = graph.send("POST", AGENTS, graph.token(), json=graph.body()).json()["id"]
    exchange = graph.client.post(graph.token_url, data={
        "grant_type": "client_credentials", "client_id": graph.blueprint_id, "client_secret": graph.blueprint_secret,
        "scope": "api://AzureADTokenExchange/.default", "fmi_path": agent_id}).json()["access_token"]
    token = graph.client.post(graph.token_url, data={
        "grant_type": "client_credentials", "client_id": agent_id, "scope": "https://management.azure.com/.default",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": exchange}).json()["access_token"]
    return agent_id, token, graph.client


def _scope(sandbox, group: str = "rg-prod-app") -> str:
    return f"/subscriptions/{sandbox.manifest['subscriptions'][0]['id']}/resourceGroups/{group}"


def _restart(sandbox, client, token) -> int:
    url = (f"{sandbox.manifest['arm_endpoint']}{_scope(sandbox)}/providers/Microsoft.Web/sites/app-orders-prod/"
           "restart?api-version=2023-12-01")
    return client.post(url, headers={"authorization": f"Bearer {token}"}).status_code


def test_assign_grants_until_the_end_then_nothing(fresh_sandbox_state, pim, agent):
    sandbox = fresh_sandbox_state
    agent_id, token, client = agent
    assert _restart(sandbox, client, token) == 403  # before: no role
    assignment = assign_time_bound(pim, principal_id=agent_id, role_definition_id=WEBSITE_CONTRIBUTOR,
                                   scope=_scope(sandbox), duration=datetime.timedelta(minutes=10),
                                   justification="restart app-orders-prod")
    assert assignment.principal_id == agent_id and assignment.scope == _scope(sandbox)
    assert assignment.role_definition_id.endswith(f"/roleDefinitions/{WEBSITE_CONTRIBUTOR}")
    assert assignment.end - assignment.start == datetime.timedelta(minutes=10)
    held = [a for a in sandbox.state.world.role_assignments if a.principal_id == agent_id]
    assert len(held) == 1 and abs(held[0].end - assignment.end.timestamp()) < 0.001  # RBAC holds it, time-bound
    assert _restart(sandbox, client, token) == 200  # during
    sandbox.advance_clock("PT9M")
    assert _restart(sandbox, client, token) == 200
    sandbox.advance_clock("PT61S")
    assert _restart(sandbox, client, token) == 403  # past its end on the sandbox clock, with the same token
    remove_time_bound(pim, assignment)  # already over: removing it is a no-op, not an error


def test_remove_ends_it_early(fresh_sandbox_state, pim, agent):
    sandbox = fresh_sandbox_state
    agent_id, token, client = agent
    assignment = assign_time_bound(pim, principal_id=agent_id, role_definition_id=WEBSITE_CONTRIBUTOR,
                                   scope=_scope(sandbox), duration=datetime.timedelta(hours=1), justification="x")
    assert _restart(sandbox, client, token) == 200
    remove_time_bound(pim, assignment)
    assert _restart(sandbox, client, token) == 403
    assert not [a for a in sandbox.state.world.role_assignments if a.principal_id == agent_id]
    sent = [(e["method"], e["path"].rsplit("/", 2)[-2], e["status"]) for e in sandbox.requests(kind="arm")
            if "roleAssignmentScheduleRequests" in e["path"]]
    assert sent == [("PUT", "roleAssignmentScheduleRequests", 201), ("PUT", "roleAssignmentScheduleRequests", 201)]


def test_pims_refusals_keep_their_codes(fresh_sandbox_state, pim, agent):
    sandbox = fresh_sandbox_state
    agent_id, _, _ = agent
    scope = _scope(sandbox)
    with pytest.raises(TimeBoundAssignmentError) as too_long:  # over the policy's admin maximum (P180D)
        assign_time_bound(pim, principal_id=agent_id, role_definition_id=READER, scope=scope,
                          duration=datetime.timedelta(days=181), justification="x")
    assert too_long.value.code == "RoleAssignmentRequestPolicyValidationFailed" and too_long.value.status == 400
    assert "ExpirationRule" in too_long.value.message
    with pytest.raises(TimeBoundAssignmentError) as not_owner:  # the blueprint has no rights on rg-prod-data
        assign_time_bound(pim, principal_id=agent_id, role_definition_id=READER, scope=_scope(sandbox, "rg-prod-data"),
                          duration=datetime.timedelta(minutes=10), justification="x")
    assert not_owner.value.code == "AuthorizationFailed" and not_owner.value.status == 403
    first = assign_time_bound(pim, principal_id=agent_id, role_definition_id=READER, scope=scope,
                              duration=datetime.timedelta(minutes=10), justification="x")
    with pytest.raises(TimeBoundAssignmentError) as twice:
        assign_time_bound(pim, principal_id=agent_id, role_definition_id=READER, scope=scope,
                          duration=datetime.timedelta(minutes=10), justification="x")
    assert twice.value.code == "RoleAssignmentExists"
    remove_time_bound(pim, first)
    with pytest.raises(TimeBoundAssignmentError) as nobody:
        assign_time_bound(pim, principal_id=str(uuid.uuid4()), role_definition_id=READER, scope=scope,
                          duration=datetime.timedelta(minutes=10), justification="x")
    assert nobody.value.code == "PrincipalNotFound"


@pytest.mark.parametrize("kwargs, code", [
    ({"duration": datetime.timedelta(minutes=4)}, "ActiveDurationTooShort"),
    ({"justification": " "}, "JustificationRequired"),
    ({"justification": "j" * 501}, "JustificationRequired"),
    ({"principal_id": "someone"}, "InvalidPrincipalId"),
    ({"scope": "subscriptions/x"}, "InvalidScope"),
    ({"role_definition_id": "Website Contributor"}, "InvalidRoleDefinitionId"),
])
def test_bad_input_is_refused_before_anything_is_sent(fresh_sandbox_state, pim, kwargs, code):
    since = fresh_sandbox_state.last_seq()
    arguments = {"principal_id": str(uuid.uuid4()), "role_definition_id": READER,
                 "scope": _scope(fresh_sandbox_state), "duration": datetime.timedelta(minutes=10),
                 "justification": "ok", **kwargs}
    with pytest.raises(TimeBoundAssignmentError) as refused:
        assign_time_bound(pim, **arguments)
    assert refused.value.code == code and refused.value.message
    assert not fresh_sandbox_state.requests(kind="arm", since=since)


def test_role_ids_and_durations():
    scope = "/subscriptions/5a1db0c5-a000-4000-a000-00000000000a/resourceGroups/g"
    full = f"/subscriptions/5a1db0c5-a000-4000-a000-00000000000a/providers/Microsoft.Authorization/roleDefinitions/{READER}"
    assert full_role_definition_id(READER, scope) == full
    assert full_role_definition_id(f"/providers/Microsoft.Authorization/roleDefinitions/{READER.upper()}", scope) == full
    assert iso_duration(datetime.timedelta(minutes=10)) == "PT10M"
    assert iso_duration(datetime.timedelta(hours=1, minutes=30, seconds=5)) == "PT1H30M5S"
    assert iso_duration(datetime.timedelta(days=2)) == "PT48H"


def test_through_the_agents_guard_with_an_azure_session(fresh_sandbox_state, agent, tmp_path):
    """The tools' AzureSession as the client: the same PUT, decided and audited by the guard (what elevation does)."""
    from server_helpers import audit_records, make_runtime

    from azure_agent_mcp.policy.errors import PolicyDeniedError

    sandbox = fresh_sandbox_state
    agent_id, token, client = agent
    runtime = make_runtime(sandbox, tmp_path / "audit.jsonl", "unrestricted", skip_confirmation=True)
    try:
        azure = runtime.azure_for(runtime.default_session)
        made = assign_time_bound(azure, principal_id=agent_id, role_definition_id=WEBSITE_CONTRIBUTOR,
                                 scope=_scope(sandbox), duration=datetime.timedelta(minutes=15), justification="demo")
        assert made.end - made.start == datetime.timedelta(minutes=15)
        assert _restart(sandbox, client, token) == 200
        remove_time_bound(azure, made)
        assert _restart(sandbox, client, token) == 403
        with pytest.raises(TimeBoundAssignmentError) as refused:  # Azure's refusal, as the same error type
            assign_time_bound(azure, principal_id=agent_id, role_definition_id=READER,
                              scope=_scope(sandbox), duration=datetime.timedelta(days=200), justification="x")
        assert refused.value.code == "RoleAssignmentRequestPolicyValidationFailed"
    finally:
        runtime.close()
    intents = [r for r in audit_records(tmp_path / "audit.jsonl", "intent")
               if r.get("operation") == "Microsoft.Authorization/roleAssignmentScheduleRequests/write"]
    assert len(intents) == 3 and all(r["decision"] in ("allow", "confirmed") for r in intents)

    read_only = make_runtime(sandbox, tmp_path / "ro.jsonl", "read-only")
    try:
        since = sandbox.last_seq()
        with pytest.raises(PolicyDeniedError):  # the agent's policy decides: nothing is sent
            assign_time_bound(read_only.azure_for(read_only.default_session), principal_id=agent_id,
                              role_definition_id=READER, scope=_scope(sandbox), duration=datetime.timedelta(minutes=10),
                              justification="x")
        assert not [e for e in sandbox.requests(kind="arm", since=since) if "roleAssignmentSchedule" in e["path"]]
    finally:
        read_only.close()
