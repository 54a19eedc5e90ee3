"""PIM in the sandbox through the real SDK (azure-mgmt-authorization): eligibility, activation, refusals, expiry.

Every test starts from the seed (``fresh_sandbox_state``: the clock back at real time, no requests).
Access is checked where it matters, at ARM: the reader's restart of ``app-orders-prod`` is refused,
granted by an activation, and refused again from the exact end of the activation on the sandbox clock.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from conftest import ARM_SCOPE, UserCredential, decode_claims, httpx_client

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
APP_GROUP = f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app"
DATA_GROUP = f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-data"
SITE = f"{APP_GROUP}/providers/Microsoft.Web/sites/app-orders-prod"
VAULT = f"{APP_GROUP}/providers/Microsoft.KeyVault/vaults/kv-sandbox-prod"
READER_OID = "5a1db0c5-4ead-4000-a000-000000000d02"
DEVELOPER_OID = "5a1db0c5-de00-4000-a000-000000000d01"
SP_OBJECT_ID = "5a1db0c5-5900-4000-a000-000000000a02"
AGENT_IDENTITY_ID = "5a1db0c5-a9e0-4000-a000-000000000a11"
WEBSITE_CONTRIBUTOR = "de139f84-1756-47ae-9be6-808fbbe84772"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
RESTART = "Microsoft.Web/sites/restart/action"


def pim_policy_name(scope: str, role: str) -> str:
    from azure_agent_mcp.sandbox.principals import stable_guid

    return stable_guid("rmp", scope.lower(), role)


def role_ref(role: str) -> str:
    return f"/subscriptions/{SUB_A}/providers/Microsoft.Authorization/roleDefinitions/{role}"


def client(sandbox, credential):
    from azure.mgmt.authorization import AuthorizationManagementClient

    return AuthorizationManagementClient(credential, SUB_A, base_url=sandbox.manifest["arm_endpoint"],
                                         credential_scopes=[ARM_SCOPE],
                                         connection_verify=sandbox.manifest["ca_bundle"])


def activation(principal_id=READER_OID, role=WEBSITE_CONTRIBUTOR, duration="PT10M", justification="restart orders",
               request_type="SelfActivate", **extra):
    properties = {"principalId": principal_id, "roleDefinitionId": role_ref(role), "requestType": request_type,
                  **({"justification": justification} if justification is not None else {}),
                  **({"scheduleInfo": {"expiration": {"type": "AfterDuration", "duration": duration}}}
                     if duration is not None else {}), **extra}
    return {"properties": properties}


class _Credential:
    """An azure-core credential over a fixed token (a device-code sign-in, a service principal)."""

    def __init__(self, token):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        import time

        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 3000)


@pytest.fixture
def pim(fresh_sandbox_state, sandbox_tokens):
    reader = UserCredential(sandbox_tokens, "reader")
    return client(fresh_sandbox_state, reader)


@pytest.fixture
def reader_token(sandbox_tokens):
    return sandbox_tokens.user_token("reader")


def restart(sandbox, token):
    return httpx_client(sandbox.manifest).post(f"{sandbox.manifest['arm_endpoint']}{SITE}/restart",
                                                params={"api-version": "2023-12-01"},
                                                headers={"Authorization": f"Bearer {token}"})


def create(pim, body, scope=APP_GROUP, name=None):
    return pim.role_assignment_schedule_requests.create(scope, name or str(uuid.uuid4()), body)


def error_of(excinfo):
    return excinfo.value.error.code, excinfo.value.error.message


# -- the seed ----------------------------------------------------------------------------------------


def test_the_reader_sees_their_eligibilities_as_target(pim, sandbox):
    mine = list(pim.role_eligibility_schedule_instances.list_for_scope(f"/subscriptions/{SUB_A}",
                                                                        filter="asTarget()"))
    by_role = {(i.role_definition_id.rsplit("/", 1)[-1], i.scope) for i in mine}
    assert by_role == {(WEBSITE_CONTRIBUTOR, APP_GROUP), (CONTRIBUTOR, APP_GROUP), (CONTRIBUTOR, DATA_GROUP),
                       (SECRETS_USER, VAULT)}
    website = next(i for i in mine if i.role_definition_id.endswith(WEBSITE_CONTRIBUTOR))
    assert website.principal_id == READER_OID and website.principal_type == "User" and website.status == "Provisioned"
    assert website.end_date_time is None and website.member_type == "Direct"
    assert website.role_eligibility_schedule_id.startswith(f"{APP_GROUP}/providers/Microsoft.Authorization/"
                                                           "roleEligibilitySchedules/")
    assert website.expanded_properties.role_definition.display_name == "Website Contributor"
    schedules = list(pim.role_eligibility_schedules.list_for_scope(APP_GROUP, filter=f"principalId eq '{READER_OID}'"))
    assert {s.id for s in schedules} >= {website.role_eligibility_schedule_id}
    assert all(s.scope in (APP_GROUP, VAULT) for s in schedules)  # at and below the group, not rg-prod-data


def test_nobody_else_is_eligible_and_asTarget_needs_no_permission(fresh_sandbox_state, developer_credential,
                                                                  sandbox_tokens):
    developer = client(fresh_sandbox_state, developer_credential)
    assert list(developer.role_eligibility_schedule_instances.list_for_scope(APP_GROUP, filter="asTarget()")) == []
    everyone = list(developer.role_eligibility_schedule_instances.list_for_scope(APP_GROUP))
    assert {i.principal_id for i in everyone} == {READER_OID}
    # the automation principal reads nothing at subscription scope, but may ask for its own (none: not eligible)
    app = client(fresh_sandbox_state, _Credential(sandbox_tokens.app_token()))
    assert list(app.role_eligibility_schedule_instances.list_for_scope(f"/subscriptions/{SUB_A}",
                                                                      filter="asTarget()")) == []
    with pytest.raises(HttpResponseError) as refused:
        list(app.role_eligibility_schedule_instances.list_for_scope(f"/subscriptions/{SUB_A}"))
    assert refused.value.status_code == 403 and refused.value.error.code == "AuthorizationFailed"


def test_role_settings_read_as_azure_shapes_them(pim):
    assignments = list(pim.role_management_policy_assignments.list_for_scope(APP_GROUP))
    website = next(a for a in assignments if a.role_definition_id.endswith(WEBSITE_CONTRIBUTOR))
    assert website.name == website.policy_id.rsplit("/", 1)[-1] + "_" + WEBSITE_CONTRIBUTOR
    policy = pim.role_management_policies.get(APP_GROUP, website.policy_id.rsplit("/", 1)[-1])
    rules = {r.id: r for r in policy.rules}
    assert rules["Expiration_EndUser_Assignment"].maximum_duration == "PT1H"
    assert rules["Expiration_EndUser_Assignment"].is_expiration_required is True
    assert rules["Enablement_EndUser_Assignment"].enabled_rules == ["Justification"]
    assert rules["Approval_EndUser_Assignment"].setting.is_approval_required is False
    assert rules["AuthenticationContext_EndUser_Assignment"].is_enabled is False
    approval = next(a for a in assignments if a.role_definition_id.endswith(CONTRIBUTOR))
    approval_rules = {r.id: r for r in pim.role_management_policies.get(
        APP_GROUP, approval.policy_id.rsplit("/", 1)[-1]).rules}
    assert approval_rules["Approval_EndUser_Assignment"].setting.is_approval_required is True
    assert approval_rules["Approval_EndUser_Assignment"].setting.approval_stages[0].primary_approvers[0].id == \
        DEVELOPER_OID
    vault_rules = {r.id: r for r in next(p for p in pim.role_management_policies.list_for_scope(VAULT)
                                         if p.display_name.startswith("Key Vault Secrets User")).rules}
    assert vault_rules["AuthenticationContext_EndUser_Assignment"].claim_value == "c1"
    data = next(p for p in pim.role_management_policies.list_for_scope(DATA_GROUP)
                if p.id.endswith(pim_policy_name(DATA_GROUP, CONTRIBUTOR)))
    assert {r.id: r for r in data.rules}["Enablement_EndUser_Assignment"].enabled_rules == [
        "Justification", "MultiFactorAuthentication"]
    # every other role has the organisation default: PT8H with a justification
    reader_default = next(p for p in pim.role_management_policies.list_for_scope(APP_GROUP)
                          if p.is_organization_default)
    assert {r.id: r for r in reader_default.rules}["Expiration_EndUser_Assignment"].maximum_duration == "PT8H"


# -- activation, use, expiry ---------------------------------------------------------------------------


def test_activation_grants_the_restart_until_exactly_its_end(pim, sandbox, reader_token):
    assert restart(sandbox, reader_token).status_code == 403
    created = create(pim, activation())
    assert created.status == "Provisioned" and created.request_type == "SelfActivate"
    assert created.principal_type == "User" and created.justification == "restart orders"
    assert created.linked_role_eligibility_schedule_id.startswith(f"{APP_GROUP}/providers/Microsoft.Authorization/"
                                                                  "roleEligibilitySchedules/")
    assert created.schedule_info.expiration.duration == "PT10M"
    start = created.schedule_info.start_date_time
    answer = restart(sandbox, reader_token)
    assert answer.status_code == 200, answer.text
    sent = [e for e in sandbox.requests("arm") if e["path"].endswith("/restart")]
    assert [e["status"] for e in sent] == [403, 200] and sent[-1]["operation"] == RESTART

    instances = list(pim.role_assignment_schedule_instances.list_for_scope(APP_GROUP, filter="asTarget()"))
    activated = [i for i in instances if i.assignment_type == "Activated"]
    assert len(activated) == 1 and activated[0].role_definition_id.endswith(WEBSITE_CONTRIBUTOR)
    end = activated[0].end_date_time
    assert end - activated[0].start_date_time == datetime.timedelta(minutes=10)
    assert activated[0].start_date_time == start
    # the activation shows in roleAssignments, as Azure shows active PIM assignments
    listed = list(pim.role_assignments.list_for_scope(APP_GROUP, filter=f"assignedTo('{READER_OID}')"))
    assert any(a.role_definition_id.endswith(WEBSITE_CONTRIBUTOR) and a.scope == APP_GROUP for a in listed)

    # one second before the end: still granted; at the end and one second after: refused (the clock, no sleep)
    now = datetime.datetime.fromisoformat(sandbox.clock()["now"].replace("Z", "+00:00")[:26] + "+00:00")
    sandbox.advance_clock((end - now).total_seconds() - 1)
    assert restart(sandbox, reader_token).status_code == 200
    sandbox.advance_clock(2)
    refused = restart(sandbox, reader_token)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "AuthorizationFailed"
    assert RESTART in refused.json()["error"]["message"]
    # gone from the instances and from roleAssignments; the request stays, as PIM keeps requests
    assert [i for i in pim.role_assignment_schedule_instances.list_for_scope(APP_GROUP, filter="asTarget()")
            if i.assignment_type == "Activated"] == []
    assert not any(a.role_definition_id.endswith(WEBSITE_CONTRIBUTOR)
                   for a in pim.role_assignments.list_for_scope(APP_GROUP, filter=f"assignedTo('{READER_OID}')"))
    assert pim.role_assignment_schedule_requests.get(APP_GROUP, created.name).status == "Provisioned"
    state = sandbox.pim()
    assert state["instances"] == [] and state["schedules"][0]["active"] is False


def test_the_boundary_is_exact_on_the_sandbox_clock(fresh_sandbox_state, sandbox_tokens, reader_token):
    sandbox = fresh_sandbox_state
    pim = client(sandbox, UserCredential(sandbox_tokens, "reader"))
    start = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=30)
    body = activation()
    body["properties"]["scheduleInfo"]["startDateTime"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    create(pim, body)
    end = start + datetime.timedelta(minutes=10)

    def at(moment):
        now = sandbox.clock()["epoch"]
        sandbox.advance_clock(moment.timestamp() - now)
        return restart(sandbox, reader_token).status_code

    assert restart(sandbox, reader_token).status_code == 403  # scheduled, not started yet
    assert at(start + datetime.timedelta(milliseconds=5)) == 200
    assert at(end - datetime.timedelta(seconds=1)) == 200
    assert at(end + datetime.timedelta(seconds=1)) == 403


def test_every_response_carries_the_sandbox_clock_in_date(fresh_sandbox_state, reader_token):
    sandbox = fresh_sandbox_state
    http = httpx_client(sandbox.manifest)
    before = http.get(f"{sandbox.manifest['arm_endpoint']}/subscriptions", params={"api-version": "2022-12-01"},
                      headers={"Authorization": f"Bearer {reader_token}"})
    assert len(before.headers.get_list("date")) == 1
    real = email.utils.parsedate_to_datetime(before.headers["date"])
    sandbox.advance_clock("PT11M")
    after = http.get(f"{sandbox.manifest['arm_endpoint']}/subscriptions", params={"api-version": "2022-12-01"},
                     headers={"Authorization": f"Bearer {reader_token}"})
    assert after.status_code == 200  # the token (real time) still works: tokens stay on real time
    moved = email.utils.parsedate_to_datetime(after.headers["date"])
    assert datetime.timedelta(minutes=11) <= moved - real < datetime.timedelta(minutes=16)
    token_endpoint = http.post(f"{sandbox.manifest['authority_host']}/{sandbox.manifest['tenant_id']}/oauth2/v2.0/"
                               "token", data={"grant_type": "password"})
    assert email.utils.parsedate_to_datetime(token_endpoint.headers["date"]) - real >= datetime.timedelta(minutes=11)
    claims = decode_claims(reader_token)
    assert claims["exp"] - claims["iat"] > 0  # issued on real time, still valid on it


def test_admin_clock_api_validates_and_reset_sets_it_back(fresh_sandbox_state):
    from azure_agent_mcp.sandbox import SandboxError

    sandbox = fresh_sandbox_state
    assert sandbox.advance_clock(90)["offset_seconds"] == 90
    assert sandbox.advance_clock("PT1M")["offset_seconds"] == 150
    assert sandbox.advance_clock("30")["offset_seconds"] == 180
    for bad in ("soon", -5, 0, "P2Y", True, None):
        with pytest.raises(SandboxError, match="advance"):
            sandbox.advance_clock(bad)
    assert sandbox.clock()["offset_seconds"] == 180
    sandbox.reset()
    assert sandbox.clock()["offset_seconds"] == 0


# -- deactivation, cancel --------------------------------------------------------------------------------


def test_self_deactivate_ends_access_at_once_but_not_in_the_first_five_minutes(pim, sandbox, reader_token):
    create(pim, activation(duration="PT30M"))
    with pytest.raises(HttpResponseError) as early:
        create(pim, activation(request_type="SelfDeactivate", duration=None, justification=None))
    assert early.value.error.code == "ActiveDurationTooShort"
    assert restart(sandbox, reader_token).status_code == 200
    sandbox.advance_clock("PT6M")
    done = create(pim, activation(request_type="SelfDeactivate", duration=None, justification=None))
    assert done.status == "Revoked" and done.request_type == "SelfDeactivate"
    assert restart(sandbox, reader_token).status_code == 403
    with pytest.raises(HttpResponseError) as again:
        create(pim, activation(request_type="SelfDeactivate", duration=None, justification=None))
    assert again.value.error.code == "RoleAssignmentDoesNotExist"


def test_approval_required_waits_grants_nothing_and_can_be_canceled(pim, sandbox, reader_token):
    body = activation(role=CONTRIBUTOR, duration="PT1H")
    created = create(pim, body)
    assert created.status == "PendingApproval" and created.approval_id.startswith(
        "/providers/Microsoft.Authorization/roleAssignmentApprovals/")
    assert restart(sandbox, reader_token).status_code == 403
    assert all(i.role_definition_id.rsplit("/", 1)[-1] != CONTRIBUTOR
               for i in pim.role_assignment_schedule_instances.list_for_scope(APP_GROUP, filter="asTarget()"))
    mine = list(pim.role_assignment_schedule_requests.list_for_scope(APP_GROUP, filter="asRequestor()"))
    assert [r.name for r in mine] == [created.name]
    with pytest.raises(HttpResponseError) as pending:
        create(pim, body)
    assert error_of(pending) == ("PendingRoleAssignmentRequest",
                                 "There is already an existing pending Role assignment request.")
    pim.role_assignment_schedule_requests.cancel(APP_GROUP, created.name)
    assert pim.role_assignment_schedule_requests.get(APP_GROUP, created.name).status == "Canceled"
    with pytest.raises(HttpResponseError) as twice:
        pim.role_assignment_schedule_requests.cancel(APP_GROUP, created.name)
    assert twice.value.status_code == 400 and "Canceled" in twice.value.error.message


# -- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "rules"), [
    ({"duration": "PT2H"}, ["ExpirationRule"]),
    ({"justification": None}, ["JustificationRule"]),
    ({"justification": "   "}, ["JustificationRule"]),
    ({"duration": None}, ["ExpirationRule"]),
    ({"duration": "PT61M", "justification": ""}, ["ExpirationRule", "JustificationRule"]),
])
def test_policy_rules_that_fail_are_named(pim, sandbox, reader_token, change, rules):
    with pytest.raises(HttpResponseError) as refused:
        create(pim, activation(**change))
    assert refused.value.status_code == 400
    assert error_of(refused) == ("RoleAssignmentRequestPolicyValidationFailed",
                                 "The following policy rules failed: " + json.dumps(rules, separators=(",", ":")))
    assert restart(sandbox, reader_token).status_code == 403 and sandbox.pim()["requests"] == []


def test_the_maximum_itself_is_allowed(pim):
    assert create(pim, activation(duration="PT1H")).status == "Provisioned"


def test_too_short_and_already_active(pim):
    with pytest.raises(HttpResponseError) as short:
        create(pim, activation(duration="PT4M"))
    assert short.value.error.code == "ActiveDurationTooShort"
    create(pim, activation())
    with pytest.raises(HttpResponseError) as twice:
        create(pim, activation())
    assert error_of(twice) == ("RoleAssignmentExists", "The Role assignment already exists.")


def test_no_eligibility_is_the_eligibility_rule(pim, fresh_sandbox_state, developer_credential):
    for scope, role in ((DATA_GROUP, WEBSITE_CONTRIBUTOR), (f"/subscriptions/{SUB_A}", WEBSITE_CONTRIBUTOR)):
        with pytest.raises(HttpResponseError) as refused:
            create(pim, activation(role=role), scope=scope)
        assert error_of(refused) == ("RoleAssignmentRequestPolicyValidationFailed",
                                     'The following policy rules failed: ["EligibilityRule"]')
    # the developer is not eligible for anything (Owner is standing, not eligible)
    developer = client(fresh_sandbox_state, developer_credential)
    with pytest.raises(HttpResponseError) as owner:
        create(developer, activation(principal_id=DEVELOPER_OID))
    assert owner.value.error.message.endswith('["EligibilityRule"]')
    # a wrong linked eligibility id is no eligibility either
    with pytest.raises(HttpResponseError) as linked:
        create(pim, activation(linkedRoleEligibilityScheduleId=str(uuid.uuid4())))
    assert linked.value.error.message.endswith('["EligibilityRule"]')


def test_self_activate_must_name_the_caller(pim):
    with pytest.raises(HttpResponseError) as refused:
        create(pim, activation(principal_id=DEVELOPER_OID))
    assert refused.value.status_code == 400 and "must name the caller" in refused.value.error.message


def test_mfa_required_fails_on_a_password_token_and_passes_with_mfa(pim, fresh_sandbox_state):
    with pytest.raises(HttpResponseError) as refused:
        create(pim, activation(role=CONTRIBUTOR, duration="PT30M"), scope=DATA_GROUP)
    assert error_of(refused) == ("RoleAssignmentRequestPolicyValidationFailed",
                                 'The following policy rules failed: ["MfaRule"]')
    token = _device_code_token(fresh_sandbox_state.manifest, "reader")
    assert "mfa" in decode_claims(token)["amr"]
    with_mfa = client(fresh_sandbox_state, _Credential(token))
    assert create(with_mfa, activation(role=CONTRIBUTOR, duration="PT30M"), scope=DATA_GROUP).status == "Provisioned"


def test_authentication_context_is_a_claims_request_then_passes(pim, fresh_sandbox_state, sandbox_tokens):
    with pytest.raises(HttpResponseError) as refused:
        create(pim, activation(role=SECRETS_USER, duration="PT15M"), scope=VAULT)
    code, message = error_of(refused)
    assert code == "RoleAssignmentRequestAcrsValidationFailed" and "'c1'" in message
    from urllib.parse import unquote

    claims = json.loads(unquote(message.split("&claims=", 1)[1]))
    assert claims == {"access_token": {"acrs": {"essential": True, "value": "c1"}}}
    token = sandbox_tokens.user_token("reader", claims=claims)
    assert "c1" in decode_claims(token)["acrs"]
    stepped_up = client(fresh_sandbox_state, _Credential(token))
    assert create(stepped_up, activation(role=SECRETS_USER, duration="PT15M"), scope=VAULT).status == "Provisioned"


def test_a_service_principal_cannot_self_activate(fresh_sandbox_state, sandbox_tokens):
    app = client(fresh_sandbox_state, _Credential(sandbox_tokens.app_token()))
    with pytest.raises(HttpResponseError) as refused:
        create(app, activation(principal_id=SP_OBJECT_ID))
    assert error_of(refused) == ("RoleAssignmentRequestPolicyValidationFailed",
                                 'The following policy rules failed: ["EligibilityRule"]')


@pytest.mark.parametrize(("body", "code"), [
    ({}, "InvalidRequestContent"),
    ({"properties": {"principalId": READER_OID, "roleDefinitionId": role_ref(WEBSITE_CONTRIBUTOR),
                     "requestType": "SelfPromote"}}, "InvalidRequestContent"),
    ({"properties": {"principalId": READER_OID, "roleDefinitionId": role_ref(str(uuid.uuid4())),
                     "requestType": "SelfActivate"}}, "RoleDefinitionDoesNotExist"),
    (activation(duration="ten minutes"), "InvalidRequestContent"),
    (activation(duration="P99999999999D"), "InvalidRequestContent"),
    (activation(duration="-PT10M"), "InvalidRequestContent"),
    ({"properties": {**activation()["properties"], "scheduleInfo": {"startDateTime": "soon",
                                                                    "expiration": {"duration": "PT10M"}}}},
     "InvalidRequestContent"),
    ({"properties": {**activation()["properties"], "scheduleInfo": {"expiration": {"type": "Whenever"}}}},
     "InvalidRequestContent"),
    ({"properties": {**activation()["properties"], "justification": 7}}, "InvalidRequestContent"),
    (activation(justification="x" * 501), "InvalidRequestContent"),
])
def test_malformed_requests_say_what_is_wrong(fresh_sandbox_state, reader_token, body, code):
    sandbox = fresh_sandbox_state
    answer = httpx_client(sandbox.manifest).put(
        f"{sandbox.manifest['arm_endpoint']}{APP_GROUP}/providers/Microsoft.Authorization/"
        f"roleAssignmentScheduleRequests/{uuid.uuid4()}", params={"api-version": "2020-10-01"}, json=body,
        headers={"Authorization": f"Bearer {reader_token}"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == code, answer.text
    assert answer.json()["error"]["message"]


def test_request_names_and_versions(fresh_sandbox_state, reader_token):
    sandbox = fresh_sandbox_state
    http = httpx_client(sandbox.manifest)
    base = f"{sandbox.manifest['arm_endpoint']}{APP_GROUP}/providers/Microsoft.Authorization/"
    headers = {"Authorization": f"Bearer {reader_token}"}
    bad_name = http.put(base + "roleAssignmentScheduleRequests/not-a-guid", params={"api-version": "2020-10-01"},
                        json=activation(), headers=headers)
    assert bad_name.status_code == 400 and "GUID" in bad_name.json()["error"]["message"]
    name = str(uuid.uuid4())
    assert http.put(base + f"roleAssignmentScheduleRequests/{name}", params={"api-version": "2020-10-01"},
                    json=activation(), headers=headers).status_code == 201
    reused = http.put(base + f"roleAssignmentScheduleRequests/{name}", params={"api-version": "2020-10-01"},
                      json=activation(), headers=headers)
    assert reused.status_code == 409
    version = http.get(base + "roleEligibilityScheduleInstances", params={"api-version": "2015-07-01"},
                       headers=headers)
    assert version.status_code == 400 and "2020-10-01" in version.json()["error"]["message"]
    missing = http.get(base + f"roleAssignmentScheduleRequests/{uuid.uuid4()}", params={"api-version": "2020-10-01"},
                       headers=headers)
    assert missing.status_code == 404


# -- AdminAssign / AdminRemove: time-bound active assignments for service principals ---------------------


def test_admin_assign_gives_a_service_principal_time_bound_access(fresh_sandbox_state, developer_credential,
                                                                  sandbox_tokens):
    sandbox = fresh_sandbox_state
    admin = client(sandbox, developer_credential)
    agent_token = sandbox_tokens.app_token()  # the automation SP: Contributor on rg-prod-app, nothing in rg-prod-data
    http = httpx_client(sandbox.manifest)

    def read_sql():
        return http.get(f"{sandbox.manifest['arm_endpoint']}{DATA_GROUP}", params={"api-version": "2022-09-01"},
                        headers={"Authorization": f"Bearer {agent_token}"}).status_code

    assert read_sql() == 403
    created = create(admin, activation(principal_id=SP_OBJECT_ID, role="acdd72a7-3385-48ef-bd42-f606fba81ae7",
                                       request_type="AdminAssign", justification="agent task"), scope=DATA_GROUP)
    assert created.status == "Provisioned" and created.principal_type == "ServicePrincipal"
    assert created.requestor_id == DEVELOPER_OID
    assert read_sql() == 200
    instance = next(i for i in admin.role_assignment_schedule_instances.list_for_scope(
        DATA_GROUP, filter=f"principalId eq '{SP_OBJECT_ID}'") if i.assignment_type == "Assigned"
        and i.end_date_time is not None)
    assert instance.end_date_time - instance.start_date_time == datetime.timedelta(minutes=10)
    removed = create(admin, activation(principal_id=SP_OBJECT_ID, role="acdd72a7-3385-48ef-bd42-f606fba81ae7",
                                       request_type="AdminRemove", duration=None), scope=DATA_GROUP)
    assert removed.status == "Revoked" and read_sql() == 403
    # and one left alone ends by itself
    create(admin, activation(principal_id=SP_OBJECT_ID, role="acdd72a7-3385-48ef-bd42-f606fba81ae7",
                             request_type="AdminAssign", justification="agent task"), scope=DATA_GROUP)
    assert read_sql() == 200
    sandbox.advance_clock("PT10M")
    assert read_sql() == 403


def test_admin_requests_need_role_assignment_write(pim, fresh_sandbox_state, sandbox_tokens):
    for request_type in ("AdminAssign", "AdminRemove"):
        with pytest.raises(HttpResponseError) as refused:
            create(pim, activation(principal_id=AGENT_IDENTITY_ID, request_type=request_type))
        assert refused.value.status_code == 403 and refused.value.error.code == "AuthorizationFailed"
        assert "Microsoft.Authorization/roleAssignments/write" in refused.value.error.message
    assert fresh_sandbox_state.pim()["requests"] == []


def test_admin_assign_checks_principal_policy_and_duplicates(fresh_sandbox_state, developer_credential):
    admin = client(fresh_sandbox_state, developer_credential)
    with pytest.raises(HttpResponseError) as nobody:
        create(admin, activation(principal_id=str(uuid.uuid4()), request_type="AdminAssign"))
    assert nobody.value.error.code == "PrincipalNotFound"
    with pytest.raises(HttpResponseError) as no_reason:
        create(admin, activation(principal_id=AGENT_IDENTITY_ID, request_type="AdminAssign", justification=None))
    assert no_reason.value.error.message.endswith('["JustificationRule"]')
    with pytest.raises(HttpResponseError) as too_long:
        create(admin, activation(principal_id=AGENT_IDENTITY_ID, request_type="AdminAssign", duration="P200D"))
    assert too_long.value.error.message.endswith('["ExpirationRule"]')
    create(admin, activation(principal_id=AGENT_IDENTITY_ID, request_type="AdminAssign"))
    with pytest.raises(HttpResponseError) as twice:
        create(admin, activation(principal_id=AGENT_IDENTITY_ID, request_type="AdminAssign"))
    assert twice.value.error.code == "RoleAssignmentExists"
    with pytest.raises(HttpResponseError) as absent:
        create(admin, activation(principal_id=AGENT_IDENTITY_ID, role=CONTRIBUTOR, request_type="AdminRemove",
                                 duration=None))
    assert absent.value.error.code == "RoleAssignmentDoesNotExist"


def test_schedule_requests_reach_the_activity_log(pim, sandbox):
    created = create(pim, activation())
    events = [e for e in sandbox.requests("arm") if e["method"] == "PUT"]
    assert events[-1]["operation"] == "Microsoft.Authorization/roleAssignmentScheduleRequests/write"
    assert events[-1]["status"] == 201
    recorded = [e for e in sandbox.state.activity.events(SUB_A) if created.name in json.dumps(e)]
    assert recorded, "the schedule request's write is in the activity log"
    assert "Microsoft.Authorization/roleAssignmentScheduleRequests/write" in json.dumps(recorded[-1])


def _device_code_token(manifest, user):
    import msal
    from conftest import requests_session

    app = msal.PublicClientApplication(manifest["public_client_id"],
                                       authority=f"{manifest['authority_host']}/{manifest['tenant_id']}",
                                       http_client=requests_session(manifest), instance_discovery=False)
    flow = app.initiate_device_flow([ARM_SCOPE])
    upn = next(u for u in manifest["users"] if u["name"] == user)["upn"]
    result = app.acquire_token_by_device_flow(flow, data={"login_hint": upn})
    return result["access_token"]


# -- validate, extend, approval decisions ------------------------------------------------------------


def test_validate_gives_the_verdict_and_changes_nothing(pim, sandbox, reader_token):
    verdict = pim.role_assignment_schedule_requests.validate(APP_GROUP, str(uuid.uuid4()), activation())
    assert verdict.status == "Provisioned"
    with pytest.raises(HttpResponseError) as refused:
        pim.role_assignment_schedule_requests.validate(APP_GROUP, str(uuid.uuid4()), activation(duration="PT3H"))
    assert refused.value.error.message.endswith('["ExpirationRule"]')
    assert restart(sandbox, reader_token).status_code == 403
    assert sandbox.pim()["requests"] == [] and sandbox.pim()["schedules"] == []


def test_admin_extend_moves_the_end_of_a_time_bound_assignment(fresh_sandbox_state, developer_credential,
                                                               sandbox_tokens):
    sandbox = fresh_sandbox_state
    admin = client(sandbox, developer_credential)
    agent = dict(principal_id=AGENT_IDENTITY_ID, role=WEBSITE_CONTRIBUTOR)
    with pytest.raises(HttpResponseError) as nothing:
        create(admin, activation(request_type="AdminExtend", duration="PT20M", **agent))
    assert nothing.value.error.code == "RoleAssignmentDoesNotExist"
    create(admin, activation(request_type="AdminAssign", **agent))
    extended = create(admin, activation(request_type="AdminExtend", duration="PT20M", **agent))
    assert extended.status == "Provisioned"
    instance = next(i for i in admin.role_assignment_schedule_instances.list_for_scope(
        APP_GROUP, filter=f"principalId eq '{AGENT_IDENTITY_ID}'") if i.end_date_time is not None)
    # the new end is the extension's own schedule (20 minutes from the AdminExtend), past the first one's 10
    assert datetime.timedelta(minutes=20) <= instance.end_date_time - instance.start_date_time < \
        datetime.timedelta(minutes=21)
    assert instance.start_date_time == extended.schedule_info.start_date_time or \
        instance.start_date_time <= extended.schedule_info.start_date_time
    allowed = sandbox.state.authorizer.allowed
    sandbox.advance_clock("PT15M")
    assert allowed(AGENT_IDENTITY_ID, RESTART, SITE)
    sandbox.advance_clock("PT6M")
    assert not allowed(AGENT_IDENTITY_ID, RESTART, SITE)


def test_an_approved_request_grants_from_the_approval_and_a_denied_one_never(pim, sandbox, reader_token):
    waiting = create(pim, activation(role=CONTRIBUTOR, duration="PT1H"))
    sandbox.advance_clock("PT30M")
    assert restart(sandbox, reader_token).status_code == 403
    decided = sandbox.decide_pim_approval(waiting.name)
    assert decided["properties"]["status"] == "Provisioned"
    assert restart(sandbox, reader_token).status_code == 200  # Contributor includes the restart
    sandbox.advance_clock("PT59M")
    assert restart(sandbox, reader_token).status_code == 200  # an hour from the approval, not from the request
    sandbox.advance_clock("PT1M")
    assert restart(sandbox, reader_token).status_code == 403
    from azure_agent_mcp.sandbox import SandboxError

    with pytest.raises(SandboxError, match="waiting for approval"):
        sandbox.decide_pim_approval(waiting.name)
    denied = create(pim, activation(role=CONTRIBUTOR, duration="PT1H"))
    assert sandbox.decide_pim_approval(denied.name, approve=False)["properties"]["status"] == "Denied"
    assert restart(sandbox, reader_token).status_code == 403


def test_a_user_access_administrator_service_principal_makes_time_bound_assignments(fresh_sandbox_state,
                                                                                      developer_credential,
                                                                                      sandbox_tokens):
    """Who ephemeral agent identities depend on: a non-Owner principal with roleAssignments/write at a scope."""
    sandbox = fresh_sandbox_state
    uaa = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
    admin = client(sandbox, developer_credential)
    admin.role_assignments.create(DATA_GROUP, str(uuid.uuid4()), {"properties": {
        "roleDefinitionId": role_ref(uaa), "principalId": SP_OBJECT_ID, "principalType": "ServicePrincipal"}})
    automation = client(sandbox, _Credential(sandbox_tokens.app_token()))
    made = create(automation, activation(principal_id=AGENT_IDENTITY_ID, role=CONTRIBUTOR, request_type="AdminAssign",
                                         justification="agent session"), scope=DATA_GROUP)
    assert made.status == "Provisioned" and made.requestor_id == SP_OBJECT_ID
    assert sandbox.state.authorizer.allowed(AGENT_IDENTITY_ID, "Microsoft.Sql/servers/write", f"{DATA_GROUP}/x")
    with pytest.raises(HttpResponseError) as elsewhere:  # its write stops at its scope
        create(automation, activation(principal_id=AGENT_IDENTITY_ID, role=CONTRIBUTOR, request_type="AdminAssign",
                                      justification="agent session"), scope=f"/subscriptions/{SUB_A}")
    assert elsewhere.value.status_code == 403


_SCOPES = (APP_GROUP, DATA_GROUP, VAULT, SITE, f"/subscriptions/{SUB_A}")
_ROLES = (WEBSITE_CONTRIBUTOR, CONTRIBUTOR, SECRETS_USER, "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
          "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9", "acdd72a7-3385-48ef-bd42-f606fba81ae7")
_ELIGIBLE = {(WEBSITE_CONTRIBUTOR, APP_GROUP): 3600, (CONTRIBUTOR, APP_GROUP): 7200, (CONTRIBUTOR, DATA_GROUP): 3600,
             (SECRETS_USER, VAULT): 1800}


def _within(role, scope):
    for (eligible_role, eligible_scope), limit in _ELIGIBLE.items():
        if eligible_role == role and (scope == eligible_scope or scope.startswith(eligible_scope + "/")):
            return limit
    return None


def test_no_request_of_the_reader_grants_more_than_an_eligibility_allows(fresh_sandbox_state, reader_token):
    """Adversarial: whatever the reader sends (types, principals, roles, scopes, schedules, links), anything
    granted is the reader's own, for a role and scope they are eligible for, no longer than the role setting allows,
    and nothing waits for approval yet grants."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    sandbox = fresh_sandbox_state
    http = httpx_client(sandbox.manifest)
    durations = st.one_of(st.none(), st.sampled_from(["PT1M", "PT5M", "PT10M", "PT59M", "PT1H", "PT61M", "PT2H",
                                                      "P1D", "PT0S", "-PT5M", "PT1H0M1S", "P"]))

    # a request that would be granted, then up to three fields changed to anything: grants happen (and are
    # checked) and so does every way of getting a field wrong
    alternatives = {
        "requestType": st.sampled_from(["SelfDeactivate", "AdminAssign", "AdminRemove", "AdminExtend",
                                        "selfactivate", ""]),
        "principalId": st.sampled_from([DEVELOPER_OID, SP_OBJECT_ID, AGENT_IDENTITY_ID, str(uuid.uuid4())]),
        "justification": st.sampled_from([None, "", "   ", "x" * 600]),
        "scheduleInfo": st.one_of(st.none(), st.builds(
            lambda d, start: {"startDateTime": start, "expiration": {"type": "AfterDuration", "duration": d}},
            durations, st.sampled_from([None, "2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z", "yesterday"]))),
        "linkedRoleEligibilityScheduleId": st.uuids().map(str),
        "roleDefinitionId": st.sampled_from(_ROLES).map(role_ref),
        "scope": st.sampled_from(_SCOPES),
    }
    bodies = st.lists(st.sampled_from(sorted(alternatives)), max_size=3, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: alternatives[k] for k in keys}))
    targets = st.sampled_from(sorted(_ELIGIBLE)).map(lambda pair: (pair[1], pair[0]))
    outcomes = []

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    @given(targets, bodies)
    def probe(target, changes):
        scope, role = target
        props = {**activation(role=role)["properties"], **changes}
        scope = props.pop("scope", scope)
        props = {k: v for k, v in props.items() if v is not None}
        sandbox.reset()
        answer = http.put(f"{sandbox.manifest['arm_endpoint']}{scope}/providers/Microsoft.Authorization/"
                          f"roleAssignmentScheduleRequests/{uuid.uuid4()}", params={"api-version": "2020-10-01"},
                          json={"properties": props}, headers={"Authorization": f"Bearer {reader_token}"})
        assert answer.status_code in (201, 400, 403, 404, 409), answer.text
        state = sandbox.pim()
        outcomes.append(answer.status_code)
        for schedule in state["schedules"]:
            p = schedule["properties"]
            role = p["roleDefinitionId"].rsplit("/", 1)[-1]
            limit = _within(role, p["scope"])
            assert p["principalId"] == READER_OID and limit is not None, p
            start = datetime.datetime.fromisoformat(p["startDateTime"][:26] + "+00:00")
            end = datetime.datetime.fromisoformat(p["endDateTime"][:26] + "+00:00")
            assert datetime.timedelta(minutes=5) <= end - start <= datetime.timedelta(seconds=limit)
        for request in state["requests"]:
            if request["properties"]["status"] == "PendingApproval":
                assert state["schedules"] == []
        if answer.status_code != 201:
            assert state["requests"] == [] and state["schedules"] == []

    probe()
    assert outcomes.count(201) >= 3 and len(set(outcomes)) >= 2, outcomes


def test_the_documented_url_forms_and_the_site_scope(fresh_sandbox_state, reader_token):
    """Learn's examples put a subscription under ``/providers/Microsoft.Subscription``; activating at the site,
    below the eligibility's group, is allowed and uses the group's role setting (PT1H)."""
    sandbox = fresh_sandbox_state
    http = httpx_client(sandbox.manifest)
    headers = {"Authorization": f"Bearer {reader_token}"}
    listed = http.get(f"{sandbox.manifest['arm_endpoint']}/providers/Microsoft.Subscription/subscriptions/{SUB_A}/"
                      "providers/Microsoft.Authorization/roleEligibilityScheduleInstances",
                      params={"api-version": "2020-10-01", "$filter": "asTarget()"}, headers=headers)
    assert listed.status_code == 200 and len(listed.json()["value"]) == 4
    url = (f"{sandbox.manifest['arm_endpoint']}{SITE}/providers/Microsoft.Authorization/"
           f"roleAssignmentScheduleRequests/{uuid.uuid4()}")
    over = http.put(url, params={"api-version": "2020-10-01"}, json=activation(duration="PT90M"), headers=headers)
    assert over.json()["error"]["message"].endswith('["ExpirationRule"]')
    made = http.put(url, params={"api-version": "2020-10-01"}, json=activation(), headers=headers)
    assert made.status_code == 201 and made.json()["properties"]["scope"] == SITE
    assert restart(sandbox, reader_token).status_code == 200
    other_site = f"{APP_GROUP}/providers/Microsoft.Storage/storageAccounts/stprodapp01"
    assert not sandbox.state.authorizer.allowed(READER_OID, "Microsoft.Web/sites/write", other_site)


def test_unknown_site_and_unsupported_methods(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    http = httpx_client(sandbox.manifest)
    token = sandbox_tokens.user_token("developer")
    headers = {"Authorization": f"Bearer {token}"}
    gone = http.post(f"{sandbox.manifest['arm_endpoint']}{APP_GROUP}/providers/Microsoft.Web/sites/nope/restart",
                     params={"api-version": "2023-12-01"}, headers=headers)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "ResourceNotFound"
    stopped = http.post(f"{sandbox.manifest['arm_endpoint']}{SITE}/stop", params={"api-version": "2023-12-01"},
                        headers=headers)
    assert stopped.status_code == 200
    assert sandbox.state.world.resources[SITE.lower()]["properties"]["state"] == "Stopped"
    deleted = http.delete(f"{sandbox.manifest['arm_endpoint']}{APP_GROUP}/providers/Microsoft.Authorization/"
                          f"roleEligibilitySchedules/{uuid.uuid4()}", params={"api-version": "2020-10-01"},
                          headers=headers)
    assert deleted.status_code == 405 and "GET" in deleted.json()["error"]["message"]


def test_after_date_time_expiration(pim, sandbox, reader_token):
    end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=20)
    body = activation(duration=None)
    body["properties"]["scheduleInfo"] = {"expiration": {"type": "AfterDateTime",
                                                         "endDateTime": end.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    made = create(pim, body)
    assert made.schedule_info.expiration.type == "AfterDateTime"
    assert made.schedule_info.expiration.end_date_time.replace(microsecond=0) == end.replace(microsecond=0)
    assert restart(sandbox, reader_token).status_code == 200
    sandbox.advance_clock(end.timestamp() - sandbox.clock()["epoch"] + 0.5)
    assert restart(sandbox, reader_token).status_code == 403


def _until(start, end):
    return {"startDateTime": start, "expiration": {"type": "AfterDateTime", "endDateTime": end}}


def test_an_end_instant_is_judged_on_the_span_asked_for_and_runs_from_now(pim, fresh_sandbox_state):
    """A start already past takes effect now; the rules judge the span the request names, so a grant asked
    at 10:00:00 for five minutes and sent at 10:00:02 still ends at 10:05:00 and is not 'too short'."""
    import datetime as dt

    now = dt.datetime.fromisoformat(fresh_sandbox_state.clock()["now"].replace("Z", "+00:00"))
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    asked = now - dt.timedelta(seconds=3)
    made = create(pim, activation(duration=None, scheduleInfo=_until(asked.strftime(fmt),
                                                                      (asked + dt.timedelta(minutes=5)).strftime(fmt))))
    assert made.status == "Provisioned"
    instance = [i for i in fresh_sandbox_state.pim()["instances"]
                if i["properties"]["principalId"] == READER_OID and i["properties"]["roleDefinitionId"].lower()
                .endswith(WEBSITE_CONTRIBUTOR)][0]["properties"]
    ends = dt.datetime.fromisoformat(instance["endDateTime"][:23] + "+00:00")
    assert abs((ends - (asked + dt.timedelta(minutes=5))).total_seconds()) < 0.01  # the end asked for, exactly


@pytest.mark.parametrize("span, code", [(61, "RoleAssignmentRequestPolicyValidationFailed"),
                                        (4, "ActiveDurationTooShort"), (-1, "InvalidRequestContent")])
def test_an_end_instant_outside_the_rules_is_refused(pim, fresh_sandbox_state, span, code):
    import datetime as dt

    now = dt.datetime.fromisoformat(fresh_sandbox_state.clock()["now"].replace("Z", "+00:00"))
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    body = activation(duration=None, scheduleInfo=_until(now.strftime(fmt), (now + dt.timedelta(minutes=span)).strftime(fmt)))
    with pytest.raises(HttpResponseError) as refused:
        create(pim, body)
    assert refused.value.error.code == code
