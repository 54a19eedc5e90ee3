"""deployment_list, deployment_get and role_definition_list through `serve` over stdio against the sandbox.

What reached the sandbox (its journal), what the audit decided, and every byte the server wrote are
checked, not only the answers: deployment outputs are a classic leak (a template returning
``listKeys()`` as a plain string), so secure and leaked values are grepped for in the result, the
server's stderr and the audit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from serve_helpers import StdioServe, error_of, sent, text_of
from server_helpers import audit_records

APP_GROUP = "rg-prod-app"
READER_ROLE = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def _sub(sandbox: Any) -> str:
    return sandbox.manifest["subscriptions"][0]["id"]


def _deployment(sandbox: Any, name: str, group: str | None = APP_GROUP) -> Any:
    scope = f"/subscriptions/{_sub(sandbox)}" + (f"/resourceGroups/{group}" if group else "")
    return sandbox.state.world.deployments[f"{scope}/providers/Microsoft.Resources/deployments/{name}".lower()]


def _audit_bytes(audit: Path) -> bytes:
    return b"".join(p.read_bytes() for p in audit.parent.iterdir() if p.name.startswith(audit.name) and p.is_file())


def _decided(audit: Path) -> dict[tuple[str, str], str]:
    """(method, path as sent) -> the operation the guard decided it as."""
    return {(r["method"], r["path"]): r["operation"] for r in audit_records(audit, "intent")}


def test_deployments_at_group_and_subscription_scope_with_their_operations(sandbox, tmp_path):
    audit = tmp_path / "audit.jsonl"
    since = sandbox.last_seq()
    with StdioServe(sandbox, audit, tmp_path / "state") as serve:
        listed = serve.call("deployment_list", {"resource_group": APP_GROUP})
        at_sub = serve.call("deployment_list", {})
        failed = serve.call("deployment_list", {"resource_group": APP_GROUP, "state": "Failed"})
        web = serve.call("deployment_get", {"name": "deploy-orders-web", "resource_group": APP_GROUP})
        baseline = serve.call("deployment_get", {"name": "deploy-platform-baseline"})
        bare = serve.call("deployment_get", {"name": "deploy-orders-storage", "resource_group": APP_GROUP,
                                             "operations": False})
        session = serve.session
    for result in (listed, at_sub, failed, web, baseline, bare):
        assert not result.get("isError"), text_of(result)
    items = listed["structuredContent"]["items"]
    assert [i["name"] for i in items] == ["deploy-orders-web", "deploy-orders-storage"]  # newest first
    assert items[0]["provisioningState"] == "Failed" and items[0]["error"]["code"] == "DeploymentFailed"
    assert "1 failed" in text_of(listed)
    assert [i["name"] for i in at_sub["structuredContent"]["items"]] == ["deploy-platform-baseline"]
    assert [i["name"] for i in failed["structuredContent"]["items"]] == ["deploy-orders-web"]

    operations = web["structuredContent"]["operations"]
    assert sorted(op["provisioningState"] for op in operations) == ["Failed", "Succeeded"]
    bad = next(op for op in operations if op["provisioningState"] == "Failed")
    assert bad["statusCode"] == "Conflict" and bad["timestamp"].startswith("2026-11-30T09:15")
    assert bad["targetResource"]["resourceType"] == "Microsoft.Web/sites"
    assert bad["statusMessage"]["error"]["code"] == "WebsiteAlreadyExists"
    assert web["structuredContent"]["deployment"]["properties"]["error"]["details"][0]["code"] == "Conflict"
    assert "1 failed" in text_of(web)
    assert baseline["structuredContent"]["deployment"]["location"] == "eastus"
    assert baseline["structuredContent"]["operations"][0]["targetResource"]["resourceName"] == "rg-prod-network"
    assert "operations" not in bare["structuredContent"]

    # what reached Azure: the SDK's paths (a group deployment's operations by the older route), each decided
    # by the guard as the operation ARM itself checked
    received = sent(sandbox, since, session=session)
    sub = _sub(sandbox)
    paths = [(r["method"], r["raw_path"]) for r in received]
    group = f"/subscriptions/{sub}/resourcegroups/{APP_GROUP}"
    assert ("GET", f"{group}/deployments/deploy-orders-web/operations") in paths
    assert ("GET", f"/subscriptions/{sub}/providers/Microsoft.Resources/deployments/deploy-platform-baseline"
                   "/operations") in paths
    assert len([p for p in paths if "deploy-orders-storage" in p[1]]) == 1  # operations=false: one request
    decided = _decided(audit)
    for entry in received:
        assert decided[(entry["method"], entry["raw_path"])] == entry["operation"], entry["raw_path"]
    assert {e["operation"] for e in received} == {
        "Microsoft.Resources/deployments/read",
        "Microsoft.Resources/deployments/operations/read",
        "Microsoft.Resources/subscriptions/resourceGroups/deployments/operations/read",
    }


def test_a_deployment_with_hundreds_of_operations_keeps_its_failures(fresh_sandbox_state, tmp_path):
    from dataclasses import replace

    sandbox = fresh_sandbox_state
    web = _deployment(sandbox, "deploy-orders-web")
    template = web.operations[0]  # the succeeded one
    web.operations[:0] = [replace(template, operation_id=f"{i:016X}") for i in range(300)]  # failure is last
    with StdioServe(sandbox, tmp_path / "audit.jsonl", tmp_path / "state") as serve:
        result = serve.call("deployment_get", {"name": "deploy-orders-web", "resource_group": APP_GROUP})
    content = result["structuredContent"]
    assert not result.get("isError") and content["operations_truncated"] is True
    assert len(content["operations"]) == 200 and content["operations"][0]["provisioningState"] == "Failed"
    assert "302 operation(s), 1 failed (200 shown, failed first)" in text_of(result)


def _secret_values(sandbox: Any) -> dict[str, str]:
    storage = _deployment(sandbox, "deploy-orders-storage")
    web = _deployment(sandbox, "deploy-orders-web")
    return {
        "leaked storage key (a String output)": storage.outputs["storageKey"].value,
        "secure output": storage.outputs["storageConnection"].value,
        "secure parameter": web.parameters["sqlAdminPassword"].value,
    }


def _reads_of_the_deployments(serve: StdioServe, sandbox: Any) -> list[dict[str, Any]]:
    deployment_id = (f"/subscriptions/{_sub(sandbox)}/resourceGroups/{APP_GROUP}/providers/Microsoft.Resources/"
                     "deployments/deploy-orders-storage")
    return [
        serve.call("deployment_get", {"name": "deploy-orders-storage", "resource_group": APP_GROUP}),
        serve.call("deployment_get", {"name": "deploy-orders-web", "resource_group": APP_GROUP}),
        serve.call("deployment_list", {"resource_group": APP_GROUP}),
        serve.call("resource_get", {"resource_id": deployment_id, "api_version": "2026-06-01"}),
        serve.call("arm_request", {"method": "GET", "path": deployment_id, "api_version": "2026-06-01"}),
    ]


def test_outputs_are_withheld_under_read_only_and_no_secure_value_reaches_any_byte(sandbox, tmp_path):
    audit = tmp_path / "audit.jsonl"
    with StdioServe(sandbox, audit, tmp_path / "state") as serve:
        results = _reads_of_the_deployments(serve, sandbox)
        stderr_path = serve.stderr_path
    for result in results:
        assert not result.get("isError"), text_of(result)
    got = results[0]["structuredContent"]
    outputs = got["deployment"]["properties"]["outputs"]
    assert outputs["blobEndpoint"] == {"type": "String", "value": "***REDACTED***"}  # withheld by where it stands
    assert outputs["storageConnection"] == {"type": "SecureString"}
    assert "deployment.properties.outputs.blobEndpoint.value" in got["redacted_fields"]
    assert "body.properties.outputs.blobEndpoint.value" in results[4]["structuredContent"]["redacted_fields"]
    written = {"results": json.dumps(results).encode(), "stderr": stderr_path.read_bytes(),
               "audit": _audit_bytes(audit)}
    for what, value in _secret_values(sandbox).items():
        for where, data in written.items():
            assert value.encode() not in data, f"the {what} reached the {where}"


def test_outputs_are_shown_when_the_policy_allows_secrets_but_secure_values_never_are(sandbox, tmp_path):
    audit = tmp_path / "audit.jsonl"
    with StdioServe(sandbox, audit, tmp_path / "state", "--policy", "unrestricted") as serve:
        results = _reads_of_the_deployments(serve, sandbox)
        stderr_path = serve.stderr_path
    values = _secret_values(sandbox)
    outputs = results[0]["structuredContent"]["deployment"]["properties"]["outputs"]
    assert outputs["storageKey"]["value"] == values.pop("leaked storage key (a String output)")
    assert "redacted_fields" not in results[0]["structuredContent"]
    written = {"results": json.dumps(results).encode(), "stderr": stderr_path.read_bytes(),
               "audit": _audit_bytes(audit)}
    for what, value in values.items():  # ARM never returns these: nothing can show them
        for where, data in written.items():
            assert value.encode() not in data, f"the {what} reached the {where}"


def test_an_unknown_deployment_is_a_404_explained_and_bad_names_send_nothing(sandbox, tmp_path):
    since = sandbox.last_seq()
    with StdioServe(sandbox, tmp_path / "audit.jsonl", tmp_path / "state") as serve:
        missing = serve.call("deployment_get", {"name": "deploy-nothing", "resource_group": APP_GROUP})
        no_group = serve.call("deployment_list", {"resource_group": "rg-missing"})
        before_bad = sandbox.last_seq()
        bad = serve.call("deployment_get", {"name": "../deploy-orders-web", "resource_group": APP_GROUP})
        dots = serve.call("deployment_get", {"name": "..", "resource_group": APP_GROUP})
        state = serve.call("deployment_list", {"state": "Failed' or 1 eq 1"})
        bad_sent = sent(sandbox, before_bad, session=serve.session)
        still = serve.call("deployment_list", {"resource_group": APP_GROUP})
        session = serve.session
    error = error_of(missing)
    assert missing["isError"] and error["code"] == "DeploymentNotFound" and error["status"] == 404
    assert "deploy-nothing" in error["message"] and "deployment_list" in error["hint"]
    assert error_of(no_group)["code"] == "ResourceGroupNotFound" and "group_list" in error_of(no_group)["hint"]
    for refused in (bad, dots, state):
        assert refused["isError"] and error_of(refused)["code"] == "InvalidArgument", text_of(refused)
    assert "deployment name" in error_of(bad)["message"] and "provisioning state" in error_of(state)["message"]
    assert bad_sent == []  # refused before anything was sent
    assert not still.get("isError")  # the server keeps serving
    assert any(r["status"] == 404 for r in sent(sandbox, since, session=session))


def test_role_definitions_explain_what_a_role_allows(sandbox, tmp_path):
    audit = tmp_path / "audit.jsonl"
    sub = _sub(sandbox)
    since = sandbox.last_seq()
    with StdioServe(sandbox, audit, tmp_path / "state") as serve:
        by_name = serve.call("role_definition_list", {"role_name": "Reader"})
        assignments = serve.call("role_assignment_list", {"scope": f"/subscriptions/{sub}"})
        reader_ids = {a["roleDefinitionId"] for a in assignments["structuredContent"]["items"]
                      if a["roleDefinitionId"].endswith(READER_ROLE)}
        by_id = serve.call("role_definition_list", {"role_id": reader_ids.pop()})
        custom = serve.call("role_definition_list", {"role_type": "CustomRole"})
        all_roles = serve.call("role_definition_list", {"scope": f"/subscriptions/{sub}/resourceGroups/{APP_GROUP}"})
        missing = serve.call("role_definition_list", {"role_id": "00000000-0000-0000-0000-000000000001"})
        before_both = sandbox.last_seq()
        both = serve.call("role_definition_list", {"role_name": "Reader", "role_id": READER_ROLE})
        both_sent = sent(sandbox, before_both, session=serve.session)
        session = serve.session
    reader = by_name["structuredContent"]["items"]
    assert [r["roleName"] for r in reader] == ["Reader"] and reader[0]["type"] == "BuiltInRole"
    assert reader[0]["permissions"] == [{"actions": ["*/read"], "notActions": [], "dataActions": [],
                                         "notDataActions": []}]
    assert by_id["structuredContent"]["items"][0]["roleName"] == "Reader"
    assert custom["structuredContent"]["items"] == []
    names = {r["roleName"] for r in all_roles["structuredContent"]["items"]}
    assert {"Owner", "Contributor", "Reader", "Key Vault Secrets User"} <= names
    contributor = next(r for r in all_roles["structuredContent"]["items"] if r["roleName"] == "Contributor")
    assert "Microsoft.Authorization/*/Write" in contributor["permissions"][0]["notActions"]
    assert missing["isError"] and error_of(missing)["code"] == "RoleDefinitionDoesNotExist"
    assert "role_name" in error_of(missing)["hint"]
    assert both["isError"] and error_of(both)["code"] == "InvalidArgument" and both_sent == []
    received = [r for r in sent(sandbox, since, session=session) if "roleDefinitions" in r["raw_path"]]
    assert received and {r["operation"] for r in received} == {"Microsoft.Authorization/roleDefinitions/read"}
    filters = [r["query"].get("$filter") for r in received]
    assert "roleName eq 'Reader'" in filters and "type eq 'CustomRole'" in filters
