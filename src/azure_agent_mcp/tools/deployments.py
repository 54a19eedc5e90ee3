"""Template deployments (ARM deployment history): what was deployed, whether it worked, and why not.

Through azure-mgmt-resource-deployments (``azure.deployments(sub)``, the guarded transport). A
deployment's ``outputs`` are whatever its template returned, a ``listKeys()`` result included:
they travel in the deployment's ``properties`` exactly where ARM puts them, so that
``policy.redaction.withhold_outputs`` finds them by shape when the policy denies secrets, as it
does for ``resource_get``. The operations' recorded HTTP request and response bodies (a debug
setting) are never returned: they can hold anything the template sent.
"""

from __future__ import annotations

import re
from typing import Any

from azure_agent_mcp.tools import arguments
from azure_agent_mcp.tools.base import (
    AzureTool,
    DeclaredOperation,
    PlannedRequest,
    ToolInputError,
    ToolOutput,
    clamp_top,
)
from azure_agent_mcp.tools.clients import DEPLOYMENTS_API_VERSION, AzureSession
from azure_agent_mcp.tools.schemas import ANY_OBJECT, LISTING, OBJECTS, obj

_STATE = re.compile(r"[A-Za-z]{1,40}")
_LISTED = ("provisioningState", "timestamp", "duration", "correlationId")
_PROVIDER_PATH = "/providers/Microsoft.Resources/deployments"
MAX_OPERATIONS = 200
"""Operations returned at most (failed ones first): a large template records hundreds."""


def _as_dict(model: Any) -> dict[str, Any]:
    return model.as_dict() if hasattr(model, "as_dict") else dict(model)


def _scope(azure: AzureSession, subscription: str | None, resource_group: str | None) -> tuple[str, str]:
    sub = azure.subscription_id(subscription)
    if resource_group:
        return sub, f"/subscriptions/{sub}/resourceGroups/{arguments.group_name(resource_group)}"
    return sub, f"/subscriptions/{sub}"


def _where(sub: str, resource_group: str | None) -> str:
    return f"group {resource_group}" if resource_group else f"subscription {sub}"


def _error(error: Any) -> dict[str, Any] | None:
    if not isinstance(error, dict):
        return None
    details = [{"code": d.get("code"), "message": d.get("message")} for d in error.get("details") or []
               if isinstance(d, dict)]
    shown = {"code": error.get("code"), "message": error.get("message")}
    return {**shown, "details": details} if details else shown


# -- deployment_list --------------------------------------------------------------------------------


def _state_filter(state: str | None) -> str | None:
    if state is None:
        return None
    if not _STATE.fullmatch(state):
        raise ToolInputError(f"state '{state[:40]}' is not a provisioning state.",
                             hint="Use one word such as Succeeded, Failed, Running or Canceled.")
    return f"provisioningState eq '{state}'"


def deployment_list(
    azure: AzureSession,
    subscription: str | None = None,
    resource_group: str | None = None,
    state: str | None = None,
    top: int | None = None,
) -> ToolOutput:
    sub, scope = _scope(azure, subscription, resource_group)
    limit = clamp_top(top, default=20, maximum=800)
    query = _state_filter(state)
    client = azure.deployments(sub).deployments
    pager = (client.list_by_resource_group(resource_group, filter=query, top=limit) if resource_group
             else client.list_at_subscription_scope(filter=query, top=limit))
    items: list[dict[str, Any]] = []
    for model in pager:
        wire = _as_dict(model)
        props = wire.get("properties") or {}
        item = {"id": wire.get("id"), "name": wire.get("name")}
        item.update({k: props[k] for k in _LISTED if props.get(k) is not None})
        failure = _error(props.get("error"))
        if failure:
            item["error"] = failure
        items.append(item)
        if len(items) >= limit:
            break
    items.sort(key=lambda i: str(i.get("timestamp") or ""), reverse=True)
    failed = sum(1 for i in items if _failed(i))
    summary = f"{len(items)} deployment(s) in {_where(sub, resource_group)}, newest first; {failed} failed."
    return ToolOutput(summary, {"scope": scope, "items": items})


def _plan_list(
    azure: AzureSession,
    subscription: str | None = None,
    resource_group: str | None = None,
    state: str | None = None,
    top: int | None = None,
) -> list[PlannedRequest]:
    _, scope = _scope(azure, subscription, resource_group)
    _state_filter(state)
    clamp_top(top, default=20, maximum=800)
    return [PlannedRequest("GET", azure.arm_url(scope + _PROVIDER_PATH, DEPLOYMENTS_API_VERSION))]


# -- deployment_get ---------------------------------------------------------------------------------


def _name(name: str) -> str:
    return arguments.deployment_name(name)


def _operation(model: Any) -> dict[str, Any]:
    wire = _as_dict(model)
    props = wire.get("properties") or {}
    target = props.get("targetResource") or {}
    message = props.get("statusMessage")
    shown: dict[str, Any] = {
        "operationId": wire.get("operationId"),
        "provisioningOperation": props.get("provisioningOperation"),
        "provisioningState": props.get("provisioningState"),
        "statusCode": props.get("statusCode"),
        "timestamp": props.get("timestamp"),
        "targetResource": {k: target[k] for k in ("id", "resourceType", "resourceName") if k in target} or None,
    }
    if isinstance(message, dict):
        error = _error(message.get("error"))
        shown["statusMessage"] = {"status": message.get("status"), **({"error": error} if error else {})}
    return shown


def _failed(item: dict[str, Any]) -> bool:
    return str(item.get("provisioningState", "")).lower() == "failed"


def deployment_get(
    azure: AzureSession,
    name: str,
    subscription: str | None = None,
    resource_group: str | None = None,
    operations: bool = True,
) -> ToolOutput:
    sub, _ = _scope(azure, subscription, resource_group)
    deployment_name = _name(name)
    client = azure.deployments(sub)
    if resource_group:
        model = client.deployments.get(resource_group, deployment_name)
    else:
        model = client.deployments.get_at_subscription_scope(deployment_name)
    wire = _as_dict(model)
    props = wire.get("properties") or {}
    kept = ("provisioningState", "timestamp", "duration", "mode", "correlationId", "parameters", "outputs",
            "outputResources")
    properties = {k: props[k] for k in kept if props.get(k) is not None}
    failure = _error(props.get("error"))
    if failure:
        properties["error"] = failure
    deployment = {k: wire[k] for k in ("id", "name", "location") if wire.get(k) is not None}
    deployment["properties"] = properties
    data: dict[str, Any] = {"deployment": deployment}
    state = properties.get("provisioningState", "unknown state")
    summary = f"Deployment {deployment_name} in {_where(sub, resource_group)}: {state}"
    if operations:
        if resource_group:
            listed = client.deployment_operations.list(resource_group, deployment_name)
        else:
            listed = client.deployment_operations.list_at_subscription_scope(deployment_name)
        shown, stopped = [], False
        for op in listed:
            shown.append(_operation(op))
            if len(shown) >= 4 * MAX_OPERATIONS:  # enough pages to find the failures; stop paging there
                stopped = True
                break
        failed = [op for op in shown if _failed(op)]
        summary += f"; {len(shown)}{'+' if stopped else ''} operation(s), {len(failed)} failed"
        if len(shown) > MAX_OPERATIONS:  # keep the failures, then the others in ARM's order
            others = [op for op in shown if not _failed(op)]
            shown = (failed + others)[:MAX_OPERATIONS]
            data["operations_truncated"] = True
            summary += f" ({MAX_OPERATIONS} shown, failed first)"
        data["operations"] = shown
    return ToolOutput(summary + ".", data)


def _plan_get(
    azure: AzureSession,
    name: str,
    subscription: str | None = None,
    resource_group: str | None = None,
    operations: bool = True,
) -> list[PlannedRequest]:
    _, scope = _scope(azure, subscription, resource_group)
    deployment = f"{_PROVIDER_PATH}/{_name(name)}"
    planned = [PlannedRequest("GET", azure.arm_url(scope + deployment, DEPLOYMENTS_API_VERSION))]
    if operations:
        # the SDK lists a group deployment's operations on ARM's older route, without the provider
        listing_path = (f"{scope}/deployments/{_name(name)}/operations" if resource_group
                        else f"{scope}{deployment}/operations")
        planned.append(PlannedRequest("GET", azure.arm_url(listing_path, DEPLOYMENTS_API_VERSION)))
    return planned


_DEPLOYMENT_READ = DeclaredOperation("Microsoft.Resources/deployments/read")

TOOLS = (
    AzureTool(
        name="deployment_list",
        description=(
            "A group's template deployments (else the subscription's), newest first, with state and error."
        ),
        run=deployment_list,
        plan=_plan_list,
        operations=(_DEPLOYMENT_READ,),
        output_schema=LISTING,
    ),
    AzureTool(
        name="deployment_get",
        description=(
            "A deployment: parameters, outputs (withheld if secrets are denied), error, operations."
        ),
        run=deployment_get,
        plan=_plan_get,
        operations=(
            _DEPLOYMENT_READ,
            DeclaredOperation("Microsoft.Resources/deployments/operations/read"),
            DeclaredOperation("Microsoft.Resources/subscriptions/resourceGroups/deployments/operations/read"),
        ),
        output_schema=obj(
            ("deployment",),
            deployment=ANY_OBJECT,  # ARM's deployment: properties.provisioningState, outputs, error
            operations=OBJECTS,
        ),
    ),
)
