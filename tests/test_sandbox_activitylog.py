"""The sandbox's activity log: its own ARM's writes, deletes and actions become EventData events."""

from __future__ import annotations

import json
import threading
import uuid

from conftest import decode_claims, httpx_client

from azure_agent_mcp.sandbox.activitylog import OBJECT_ID_CLAIM, ActivityLog, iso_timestamp, is_recorded

SUB_A = "5a1db0c5-a000-4000-a000-00000000000a"
SUB_B = "5a1db0c5-b000-4000-a000-00000000000b"
GROUP = f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-app"
STORAGE = f"{GROUP}/providers/Microsoft.Storage/storageAccounts/stprodapp01"


def _arm(sandbox, method, path, token, api_version="2022-09-01", body=None, correlation=None):
    headers = {"Authorization": f"Bearer {token}",
               "x-ms-correlation-request-id": correlation or str(uuid.uuid4()),
               "x-ms-client-request-id": str(uuid.uuid4())}
    client = httpx_client(sandbox.manifest)
    response = client.request(method, sandbox.manifest["arm_endpoint"] + path, params={"api-version": api_version},
                              headers=headers, json=body)
    return response, headers


def _by_correlation(sandbox, correlation):
    return [e for e in sandbox.state.activity.events() if e["correlationId"] == correlation]


def test_a_put_by_an_agent_session_is_a_succeeded_event_with_its_claims(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    token = sandbox_tokens.user_token(session="agent-activity-1")
    claims = decode_claims(token)
    response, headers = _arm(sandbox, "PUT", f"/subscriptions/{SUB_A}/resourceGroups/rg-activity",
                             token, body={"location": "westus2"})
    assert response.status_code == 201
    [event] = _by_correlation(sandbox, headers["x-ms-correlation-request-id"])
    group_id = f"/subscriptions/{SUB_A}/resourceGroups/rg-activity"
    assert event["operationName"]["value"] == "Microsoft.Resources/subscriptions/resourceGroups/write"
    assert event["authorization"] == {"action": "Microsoft.Resources/subscriptions/resourceGroups/write",
                                      "scope": group_id}
    assert event["resourceId"] == group_id and event["resourceGroupName"] == "rg-activity"
    assert event["resourceType"]["value"] == "Microsoft.Resources/subscriptions/resourceGroups"
    assert event["resourceProviderName"]["value"] == "Microsoft.Resources"
    assert event["status"]["value"] == "Succeeded" and event["level"] == "Informational"
    assert event["subStatus"] == {"value": "Created", "localizedValue": "Created (HTTP Status Code: 201)"}
    assert event["caller"] == claims["upn"]
    assert event["claims"]["xms_cli_ses"] == "agent-activity-1"
    assert event["claims"][OBJECT_ID_CLAIM] == claims["oid"]
    assert event["claims"]["exp"] == str(claims["exp"])
    assert event["category"]["value"] == "Administrative" and event["channels"] == "Operation"
    assert event["eventName"]["value"] == "EndRequest"
    assert event["subscriptionId"] == SUB_A and event["tenantId"] == sandbox.manifest["tenant_id"]
    assert event["httpRequest"] == {"clientRequestId": headers["x-ms-client-request-id"],
                                    "clientIpAddress": "127.0.0.1", "method": "PUT"}
    assert event["id"] == f"{group_id}/events/{event['eventDataId']}/ticks/{event['id'].rsplit('/', 1)[1]}"
    assert event["eventTimestamp"].endswith("Z") and len(event["eventTimestamp"]) == len("2026-01-01T00:00:00.0000000Z")
    # No token, in any field.
    assert token not in json.dumps(event) and token.split(".")[2] not in json.dumps(event)


def test_delete_and_post_action_are_events_and_gets_are_not(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    token = sandbox_tokens.user_token()
    before = len(sandbox.state.activity.events())
    for path, version in ((GROUP, "2022-09-01"), (STORAGE, "2023-05-01"), (f"/subscriptions/{SUB_A}", "2022-12-01"),
                          (f"/subscriptions/{SUB_A}/resourceGroups", "2022-09-01")):
        assert _arm(sandbox, "GET", path, token, version)[0].status_code == 200
    assert len(sandbox.state.activity.events()) == before, "reads are not activity"

    keys, keys_headers = _arm(sandbox, "POST", STORAGE + "/listKeys", token, "2023-05-01")
    assert keys.status_code == 200
    [action] = _by_correlation(sandbox, keys_headers["x-ms-correlation-request-id"])
    assert action["operationName"]["value"] == "Microsoft.Storage/storageAccounts/listKeys/action"
    assert action["resourceId"] == STORAGE and action["status"]["value"] == "Succeeded"
    assert action["resourceType"]["value"] == "Microsoft.Storage/storageAccounts"
    assert action["httpRequest"]["method"] == "POST"
    for key in keys.json()["keys"]:
        assert key["value"] not in json.dumps(action), "an action's response body never reaches the event"

    deleted, delete_headers = _arm(sandbox, "DELETE", STORAGE, token, "2023-05-01")
    assert deleted.status_code == 200
    [removal] = _by_correlation(sandbox, delete_headers["x-ms-correlation-request-id"])
    assert removal["operationName"]["value"] == "Microsoft.Storage/storageAccounts/delete"
    assert removal["subStatus"]["value"] == "OK" and removal["status"]["value"] == "Succeeded"
    assert [e["operationName"]["value"] for e in sandbox.state.activity.events()][-2:] == [
        "Microsoft.Storage/storageAccounts/listKeys/action", "Microsoft.Storage/storageAccounts/delete"]


def test_a_group_delete_is_accepted_then_its_poll_is_not_an_event(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    token = sandbox_tokens.user_token()
    response, headers = _arm(sandbox, "DELETE", f"/subscriptions/{SUB_A}/resourceGroups/rg-prod-data", token)
    assert response.status_code == 202
    [event] = _by_correlation(sandbox, headers["x-ms-correlation-request-id"])
    assert event["status"]["value"] == "Accepted"
    assert event["subStatus"]["localizedValue"] == "Accepted (HTTP Status Code: 202)"
    count = len(sandbox.state.activity.events())
    poll = httpx_client(sandbox.manifest).get(response.headers["location"],
                                              headers={"Authorization": f"Bearer {token}"})
    assert poll.status_code == 200
    assert len(sandbox.state.activity.events()) == count


def test_authorization_failed_is_a_failed_event_naming_the_error(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    token = sandbox_tokens.user_token("reader", session="agent-activity-2")
    response, headers = _arm(sandbox, "PUT", f"/subscriptions/{SUB_A}/resourceGroups/rg-denied", token,
                             body={"location": "eastus"})
    assert response.status_code == 403
    [event] = _by_correlation(sandbox, headers["x-ms-correlation-request-id"])
    assert event["status"]["value"] == "Failed" and event["level"] == "Error"
    assert event["subStatus"] == {"value": "Forbidden", "localizedValue": "Forbidden (HTTP Status Code: 403)"}
    assert event["properties"]["statusCode"] == "Forbidden"
    assert json.loads(event["properties"]["statusMessage"])["error"]["code"] == "AuthorizationFailed"
    assert event["caller"] == decode_claims(token)["upn"]
    assert event["claims"]["xms_cli_ses"] == "agent-activity-2"
    assert sandbox.state.world.groups.get(f"/subscriptions/{SUB_A}/resourcegroups/rg-denied") is None


def test_the_agent_rule_refusal_is_a_failed_event_and_the_keys_never_appear(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    token = sandbox_tokens.user_token(session="agent-activity-3")
    response, headers = _arm(sandbox, "POST", STORAGE + "/regenerateKey", token, "2023-05-01",
                             body={"keyName": "key1"})
    assert response.status_code == 403
    [event] = _by_correlation(sandbox, headers["x-ms-correlation-request-id"])
    assert event["operationName"]["value"] == "Microsoft.Storage/storageAccounts/regenerateKey/action"
    assert json.loads(event["properties"]["statusMessage"])["error"]["code"] == "AgentSessionSecretAccessDenied"
    for key in sandbox.state.world.keys[STORAGE.lower()]:
        assert key["value"] not in json.dumps(sandbox.state.activity.events())


def test_an_application_caller_is_named_by_its_app_id(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    token = sandbox_tokens.app_token()
    _, headers = _arm(sandbox, "PATCH", GROUP, token, body={"tags": {"touched": "yes"}})
    [event] = _by_correlation(sandbox, headers["x-ms-correlation-request-id"])
    assert event["caller"] == sandbox.manifest["service_principals"][0]["client_id"]
    assert "upn" not in json.dumps(event["claims"])


def test_events_filter_by_subscription_and_reset_clears_them(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    token = sandbox_tokens.user_token()
    _arm(sandbox, "PUT", f"/subscriptions/{SUB_A}/resourceGroups/rg-a", token, body={"location": "eastus"})
    _arm(sandbox, "PUT", f"/subscriptions/{SUB_B}/resourceGroups/rg-b", token, body={"location": "eastus"})
    log = sandbox.state.activity
    assert [e["resourceGroupName"] for e in log.events(SUB_A)] == ["rg-a"]
    assert [e["resourceGroupName"] for e in log.events(SUB_B.upper())] == ["rg-b"]
    assert [e["resourceGroupName"] for e in log.events()] == ["rg-a", "rg-b"]
    log.events()[0]["caller"] = "changed"
    assert log.events()[0]["caller"] != "changed", "readers get copies"
    sandbox.reset()
    assert log.events() == [] and sandbox.state.activity is log


def test_unauthenticated_and_versionless_requests_are_not_events(fresh_sandbox_state, sandbox_tokens):
    sandbox = fresh_sandbox_state
    client = httpx_client(sandbox.manifest)
    url = sandbox.manifest["arm_endpoint"] + f"/subscriptions/{SUB_A}/resourceGroups/rg-x"
    assert client.put(url, params={"api-version": "2022-09-01"}, json={"location": "eastus"}).status_code == 401
    token = sandbox_tokens.user_token()
    assert client.put(url, headers={"Authorization": f"Bearer {token}"}, json={"location": "eastus"}).status_code == 400
    assert sandbox.state.activity.events() == []


def test_the_log_is_bounded_and_safe_under_concurrent_writers():
    log = ActivityLog("tenant", clock=lambda: 0.0, limit=50)

    def write(worker: int) -> None:
        for i in range(200):
            log.append({"subscriptionId": "s", "n": (worker, i)})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = log.events()
    assert len(events) == 50 == len(log)
    for worker in range(4):
        mine = [e["n"][1] for e in events if e["n"][0] == worker]
        assert mine == sorted(mine), "each writer's events stay in order"


def test_which_requests_azure_records():
    assert is_recorded("PUT", "Microsoft.Resources/subscriptions/resourceGroups/write")
    assert is_recorded("POST", "Microsoft.Storage/storageAccounts/listKeys/action")
    assert not is_recorded("GET", "Microsoft.Storage/storageAccounts/read")
    assert not is_recorded("POST", "Microsoft.ResourceGraph/resources/action")
    assert not is_recorded("POST", "Microsoft.ResourceGraph/resources/read")


def test_the_posts_the_guard_counts_as_reads_are_not_recorded():
    from azure_agent_mcp.policy.known_operations import post_reads

    for entry in post_reads().values():
        assert not is_recorded("POST", entry.action), entry.action


def test_timestamps_carry_seven_fractional_digits():
    assert iso_timestamp(0.25) == "1970-01-01T00:00:00.2500000Z"
    assert iso_timestamp(1_764_590_400.0) == "2025-12-01T12:00:00.0000000Z"
    assert iso_timestamp(1_764_590_400.99999997) == "2025-12-01T12:00:01.0000000Z"  # the carry into the second
    stamps = [iso_timestamp(1_764_590_400 + i / 7) for i in range(50)]
    assert stamps == sorted(stamps) and len({len(s) for s in stamps}) == 1
