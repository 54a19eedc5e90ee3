"""The enforcement point in real SDK pipelines against the sandbox: what is denied never leaves.

Real clients (azure-mgmt-resource, azure-keyvault-secrets), a real credential (azure-identity
ClientSecretCredential for the sandbox's service principal), real HTTPS. The sandbox's request
log is the witness of what was sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.rest import HttpRequest

from azure_agent_mcp.callcontext import call_scope
from azure_agent_mcp.policy import (
    AuditLog,
    ConfirmationRequiredError,
    Decision,
    Effect,
    Endpoints,
    PolicyDeniedError,
    Guard,
    load_policy,
    narrow_read_only,
    parse_policy,
    verify_audit,
)

RG = "rg-prod-app"


@pytest.fixture(scope="module")
def manifest(sandbox) -> dict[str, Any]:
    return sandbox.manifest


@pytest.fixture(scope="module")
def sub_a(manifest) -> str:
    return manifest["subscriptions"][0]["id"]


@pytest.fixture(scope="module")
def sp_credential(manifest) -> Iterator[Any]:
    from azure.identity import ClientSecretCredential

    sp = manifest["service_principals"][0]
    credential = ClientSecretCredential(
        manifest["tenant_id"],
        sp["client_id"],
        sp["client_secret"],
        authority=manifest["authority_host"],
        disable_instance_discovery=True,
        connection_verify=manifest["ca_bundle"],
    )
    yield credential
    credential.close()


@pytest.fixture
def audit(tmp_path) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl")


def _records(audit: AuditLog) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(audit.path).read_text().splitlines()]


def _requests(audit: AuditLog) -> list[dict[str, Any]]:
    """One view per attempt: a refusal as written, an intent joined with its outcome (status, duration)."""
    records = _records(audit)
    outcomes = {r["request_id"]: r for r in records if r["kind"] == "outcome"}
    views = []
    for record in records:
        if record["kind"] == "refused":
            views.append(record)
        elif record["kind"] == "intent":
            outcome = outcomes.get(record["request_id"], {})
            assert outcome.get("intent_seq") == record["seq"], "every intent's outcome names it"
            views.append({**record, "status": outcome.get("status", "no outcome")})
    return views


def _enforcement(sandbox, policy, audit=None, confirmer=None, endpoints=None) -> Guard:
    return Guard(policy, endpoints or Endpoints.from_environment(sandbox.environment()), confirmer=confirmer, audit=audit)


def _arm(manifest, credential, sub, enforcement, base_url: str | None = None) -> Any:
    from azure.mgmt.resource.resources import ResourceManagementClient

    from azure_agent_mcp.identity import CorrelationPolicy

    return ResourceManagementClient(
        credential,
        sub,
        base_url=base_url or manifest["arm_endpoint"],
        credential_scopes=[manifest["arm_audience"] + ".default"],
        per_call_policies=[CorrelationPolicy()],
        transport=enforcement.transport(connection_verify=manifest["ca_bundle"]),
        connection_verify=manifest["ca_bundle"],
        retry_backoff_factor=0.01,
    )


def _secrets(manifest, credential, vault_url: str, enforcement) -> Any:
    from azure.keyvault.secrets import SecretClient

    return SecretClient(
        vault_url,
        credential,
        verify_challenge_resource=False,
        transport=enforcement.transport(connection_verify=manifest["ca_bundle"]),
        connection_verify=manifest["ca_bundle"],
        retry_backoff_factor=0.01,
    )


def _mark(sandbox) -> int:
    return sandbox.stats()["last_seq"]


def _sent(sandbox, since: int, kind: str | None = None) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests(kind=kind, since=since) if r["kind"] in ("arm", "vault")]


def test_allowed_read_is_sent_and_audited_with_the_principal(sandbox, manifest, sub_a, sp_credential, audit):
    client = _arm(manifest, sp_credential, sub_a, _enforcement(sandbox, load_policy("read-only"), audit))
    mark = _mark(sandbox)
    assert client.resource_groups.get(RG).name == RG
    sent = _sent(sandbox, mark)
    assert [(r["method"], r["status"]) for r in sent] == [("GET", 200)]
    [record] = _requests(audit)
    assert record["kind"] == "intent" and record["decision"] == "allow" and record["status"] == 200
    assert record["path"] == sent[0]["raw_path"]  # decided == sent
    assert record["operation"] == "Microsoft.Resources/subscriptions/resourceGroups/read"
    assert record["scope"].lower() == f"/subscriptions/{sub_a}/resourcegroups/{RG}"
    assert record["rule"] == "Actions: */read" and record["policy"] == "read-only"
    sp = manifest["service_principals"][0]
    assert record["principal"] == {"oid": sp["object_id"], "appid": sp["client_id"]}
    assert record["correlation_id"] == sent[0]["correlation_id"]
    assert "eyJ" not in Path(audit.path).read_text()


def test_denied_write_never_reaches_the_sandbox(sandbox, manifest, sub_a, sp_credential, audit):
    client = _arm(manifest, sp_credential, sub_a, _enforcement(sandbox, load_policy("read-only"), audit))
    mark = _mark(sandbox)
    with pytest.raises(PolicyDeniedError) as caught:
        client.resource_groups.create_or_update("agent-made", {"location": "eastus"})
    decision = caught.value.decision
    assert decision.effect is Effect.DENY and decision.rule == "no Actions pattern matches"
    assert decision.operation == "Microsoft.Resources/subscriptions/resourceGroups/write"
    assert "--policy no-secrets" in decision.hint
    assert _sent(sandbox, mark) == []
    [record] = _requests(audit)
    assert (record["decision"], record["status"]) == ("deny", "not-sent")


def test_secret_bearing_post_is_denied_under_no_secrets(sandbox, manifest, sub_a, sp_credential, audit):
    client = _arm(manifest, sp_credential, sub_a, _enforcement(sandbox, load_policy("no-secrets"), audit))
    account = next(
        r.id for r in client.resources.list_by_resource_group(RG) if r.type.lower() == "microsoft.storage/storageaccounts"
    )
    mark = _mark(sandbox)
    with pytest.raises(PolicyDeniedError) as caught:
        client.send_request(HttpRequest("POST", f"{manifest['arm_endpoint']}{account}/listKeys?api-version=2023-05-01"))
    assert caught.value.decision.rule == "Deny: */listKeys/action (secret-bearing catalog)"
    assert _sent(sandbox, mark) == []


def test_unmappable_and_foreign_requests_are_refused(sandbox, manifest, sub_a, sp_credential, audit):
    client = _arm(manifest, sp_credential, sub_a, _enforcement(sandbox, load_policy("unrestricted"), audit))
    mark = _mark(sandbox)
    for method, url in [
        ("POST", f"{manifest['arm_endpoint']}/batch?api-version=2020-06-01"),
        ("GET", f"{manifest['arm_endpoint']}/subscriptions/{sub_a}/resourceGroups/{RG}/%2e%2e/x"),
        ("GET", "https://localhost:1/subscriptions"),
    ]:
        with pytest.raises(PolicyDeniedError) as caught:
            client.send_request(HttpRequest(method, url))
        assert caught.value.decision.rule == "unmappable request"
    assert _sent(sandbox, mark) == []
    assert [r["decision"] for r in _requests(audit)] == ["deny"] * 3


def test_page_two_on_another_host_is_denied(sandbox, manifest, sub_a, sp_credential, audit):
    """The client talks to https://localhost:PORT; the sandbox's nextLink names https://127.0.0.1:PORT.

    Same server, but not the endpoint the policy was configured with: the first page is allowed,
    the second page request is refused before it is sent.
    """
    port = manifest["arm_endpoint"].rsplit(":", 1)[1]
    localhost = f"https://localhost:{port}"
    endpoints = Endpoints(localhost, localhost + "/vaults/{vault}")
    client = _arm(manifest, sp_credential, sub_a, _enforcement(sandbox, load_policy("read-only"), audit, endpoints=endpoints),
                  base_url=localhost)
    mark = _mark(sandbox)
    pages = client.resources.list_by_resource_group(RG, top=2).by_page()
    first = list(next(pages))
    assert len(first) == 2
    with pytest.raises(PolicyDeniedError) as caught:
        next(pages)
    decision = caught.value.decision
    assert decision.rule == "unmappable request" and "127.0.0.1" in decision.reason
    sent = _sent(sandbox, mark)
    assert len(sent) == 1 and "$skiptoken" not in sent[0]["query"]
    assert [r["decision"] for r in _requests(audit)] == ["allow", "deny"]


def test_page_two_needs_its_own_confirmation(sandbox, manifest, sub_a, sp_credential, audit):
    """Confirm on listing a group's resources; the user approves one request, not the whole listing."""
    policy = parse_policy(
        {"Name": "confirm listings", "Actions": ["*/read"],
         "Confirm": ["Microsoft.Resources/subscriptions/resourceGroups/resources/read"]},
        source="confirm-listings.json",
    )
    asked: list[Decision] = []

    def approve_once(decision: Decision) -> bool:
        asked.append(decision)
        return len(asked) == 1

    client = _arm(manifest, sp_credential, sub_a, _enforcement(sandbox, policy, audit, confirmer=approve_once))
    mark = _mark(sandbox)
    pages = client.resources.list_by_resource_group(RG, top=2).by_page()
    assert len(list(next(pages))) == 2
    with pytest.raises(ConfirmationRequiredError) as caught:
        next(pages)
    assert caught.value.decision.effect is Effect.CONFIRM
    assert len(asked) == 2 and asked[1].rule == "Confirm: Microsoft.Resources/subscriptions/resourceGroups/resources/read"
    assert len(_sent(sandbox, mark)) == 1
    assert [r["decision"] for r in _requests(audit)] == ["confirmed", "unconfirmed"]


def test_confirm_without_a_confirmer_is_denied(fresh_sandbox_state, manifest, sub_a, developer_credential, audit):
    sandbox = fresh_sandbox_state
    client = _arm(manifest, developer_credential, sub_a, _enforcement(sandbox, load_policy("unrestricted"), audit))
    client.resource_groups.create_or_update("policy-doomed", {"location": "eastus"})
    mark = _mark(sandbox)
    with pytest.raises(ConfirmationRequiredError) as caught:
        client.resource_groups.begin_delete("policy-doomed").result()
    assert caught.value.decision.rule == "Confirm: */delete"
    assert _sent(sandbox, mark) == []
    assert client.resource_groups.check_existence("policy-doomed") is True


def test_confirmed_delete_runs_and_its_polls_are_checked(fresh_sandbox_state, manifest, sub_a, developer_credential, audit):
    sandbox = fresh_sandbox_state
    asked: list[Decision] = []

    def approve(decision: Decision) -> bool:
        asked.append(decision)
        return True

    client = _arm(manifest, developer_credential, sub_a,
                  _enforcement(sandbox, load_policy("no-secrets"), audit, confirmer=approve))
    client.resource_groups.create_or_update("policy-doomed", {"location": "eastus"})
    mark = _mark(sandbox)
    with call_scope(session_id="sess-1", tool="resource_delete", client_name="pytest",
                    extra={"principal": {"oid": "from-the-call", "upn": "dev@sandbox"}}) as call:
        client.resource_groups.begin_delete("policy-doomed", polling_interval=0.05).result()
    assert [d.operation for d in asked] == ["Microsoft.Resources/subscriptions/resourceGroups/delete"]
    sent = _sent(sandbox, mark)
    assert sent[0]["method"] == "DELETE" and any("/operationresults/" in r["path"] for r in sent[1:])
    records = [r for r in _requests(audit) if r.get("session_id") == "sess-1"]
    assert records[0]["decision"] == "confirmed" and records[0]["status"] == 202
    polls = [r for r in records if r["operation"] == "Microsoft.Resources/subscriptions/operationresults/read"]
    assert polls, [(r["method"], r["operation"]) for r in records]
    assert polls and all(r["decision"] == "allow" for r in polls)
    assert len(records) == len(sent)
    assert all(r["tool"] == "resource_delete" and r["client"] == "pytest" for r in records)
    assert all(r["principal"] == {"oid": "from-the-call", "upn": "dev@sandbox"} for r in records)
    # The DELETE carries the call's correlation id. Polls run on azure-core's poller thread, outside
    # the call's context: they are still checked and attributed to the call, with the id they were sent with.
    assert records[0]["correlation_id"] == call.correlation_id == sent[0]["correlation_id"]
    assert [r["correlation_id"] for r in records] == [r["correlation_id"] for r in sent]
    assert client.resource_groups.check_existence("policy-doomed") is False


def test_declined_confirmation_sends_nothing(sandbox, manifest, sub_a, sp_credential, audit):
    client = _arm(manifest, sp_credential, sub_a,
                  _enforcement(sandbox, load_policy("no-secrets"), audit, confirmer=lambda decision: False))
    mark = _mark(sandbox)
    with pytest.raises(ConfirmationRequiredError):
        client.resource_groups.begin_delete(RG).result()
    assert _sent(sandbox, mark) == []


def test_a_failing_confirmer_counts_as_no(sandbox, manifest, sub_a, sp_credential, audit):
    def broken(decision: Decision) -> bool:
        raise RuntimeError("elicitation transport closed")

    client = _arm(manifest, sp_credential, sub_a, _enforcement(sandbox, load_policy("no-secrets"), audit, confirmer=broken))
    mark = _mark(sandbox)
    with pytest.raises(ConfirmationRequiredError):
        client.resource_groups.begin_delete(RG).result()
    assert _sent(sandbox, mark) == []


def test_every_retry_is_checked_and_audited(fresh_sandbox_state, manifest, sub_a, sp_credential, audit):
    sandbox = fresh_sandbox_state
    client = _arm(manifest, sp_credential, sub_a, _enforcement(sandbox, load_policy("read-only"), audit))
    sandbox.add_fault(f"/resourcegroups/{RG}$", status=503, count=1)
    mark = _mark(sandbox)
    assert client.resource_groups.get(RG).name == RG
    assert [r["status"] for r in _sent(sandbox, mark)] == [503, 200]
    assert [(r["decision"], r["status"]) for r in _requests(audit)] == [("allow", 503), ("allow", 200)]


def test_a_confirmed_request_is_asked_once_across_retries(fresh_sandbox_state, manifest, sub_a, developer_credential, audit):
    sandbox = fresh_sandbox_state
    asked: list[Decision] = []

    def approve(decision: Decision) -> bool:
        asked.append(decision)
        return True

    client = _arm(manifest, developer_credential, sub_a,
                  _enforcement(sandbox, load_policy("unrestricted"), audit, confirmer=approve))
    client.resource_groups.create_or_update("policy-retried", {"location": "eastus"})
    sandbox.add_fault("/resourcegroups/policy-retried$", status=503, count=1)
    mark = _mark(sandbox)
    client.resource_groups.begin_delete("policy-retried", polling_interval=0.05).result()
    deletes = [r for r in _sent(sandbox, mark) if r["method"] == "DELETE"]
    assert [r["status"] for r in deletes] == [503, 202]
    assert len(asked) == 1
    assert [r["decision"] for r in _requests(audit) if r["method"] == "DELETE"] == ["confirmed", "confirmed"]


def test_subscription_client_fenced_by_assignable_scopes(sandbox, manifest, sub_a, developer_credential, audit):
    from azure.mgmt.resource.subscriptions import SubscriptionClient

    fenced = parse_policy({"Name": "sub A only", "Actions": ["*/read"], "AssignableScopes": [f"/subscriptions/{sub_a}"]},
                          source="sub-a.json")
    client = SubscriptionClient(
        developer_credential,
        base_url=manifest["arm_endpoint"],
        credential_scopes=[manifest["arm_audience"] + ".default"],
        transport=_enforcement(sandbox, fenced, audit).transport(connection_verify=manifest["ca_bundle"]),
        connection_verify=manifest["ca_bundle"],
    )
    mark = _mark(sandbox)
    assert client.subscriptions.get(sub_a).subscription_id == sub_a
    with pytest.raises(PolicyDeniedError) as caught:
        list(client.subscriptions.list())
    assert caught.value.decision.rule == f"outside AssignableScopes [/subscriptions/{sub_a}]"
    assert caught.value.decision.scope == "/"
    with pytest.raises(PolicyDeniedError):
        client.subscriptions.get(manifest["subscriptions"][1]["id"])
    assert [(r["method"], r["path"].lower()) for r in _sent(sandbox, mark)] == [("GET", f"/subscriptions/{sub_a}")]


def test_key_vault_values_denied_metadata_allowed(sandbox, manifest, developer_credential, audit):
    vault_url = manifest["vaults"][0]["url"]
    enforcement = _enforcement(sandbox, narrow_read_only(load_policy("unrestricted")), audit)
    client = _secrets(manifest, developer_credential, vault_url, enforcement)
    names = [p.name for p in client.list_properties_of_secrets()]
    assert names
    mark = _mark(sandbox)
    with pytest.raises(PolicyDeniedError) as caught:
        client.get_secret(names[0])
    decision = caught.value.decision
    assert decision.operation == "Microsoft.KeyVault/vaults/secrets/getSecret/action" and decision.data_action
    assert decision.rule == "Deny: Microsoft.KeyVault/vaults/secrets/getSecret/action (secret-bearing catalog)"
    assert _sent(sandbox, mark) == []
    allowed = [r for r in _requests(audit) if r["decision"] == "allow"]
    assert allowed and all(r["operation"] == "Microsoft.KeyVault/vaults/secrets/readMetadata/action" for r in allowed)
    assert all(r["plane"] == "keyvault" and r["data_action"] for r in allowed)


def test_one_enforcement_instance_is_safe_to_share_between_clients(sandbox, manifest, sub_a, developer_credential, audit):
    """The server puts one instance in every client; each client must keep its own pipeline."""
    enforcement = _enforcement(sandbox, load_policy("read-only"), audit)
    arm = _arm(manifest, developer_credential, sub_a, enforcement)
    secrets = _secrets(manifest, developer_credential, manifest["vaults"][0]["url"], enforcement)
    mark = _mark(sandbox)
    assert list(secrets.list_properties_of_secrets())
    assert arm.resource_groups.get(RG).name == RG
    assert list(secrets.list_properties_of_secrets())
    statuses = [(r["kind"], r["status"]) for r in _sent(sandbox, mark)]
    assert ("arm", 200) in statuses and statuses.count(("vault", 200)) == 2


def test_audit_of_a_pipeline_run_verifies(sandbox, manifest, sub_a, sp_credential, audit):
    client = _arm(manifest, sp_credential, sub_a, _enforcement(sandbox, load_policy("read-only"), audit))
    list(client.resources.list_by_resource_group(RG))
    with pytest.raises(PolicyDeniedError):
        client.resource_groups.create_or_update("x", {"location": "eastus"})
    result = verify_audit([audit.path])
    assert result.ok and result.records == len(_records(audit)) >= 2
