"""Subscriptions, resource groups, generic resources and raw ARM requests."""

from __future__ import annotations

import json
import re
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from azure_agent_mcp.tools import arguments
from azure_agent_mcp.tools import continuation as continuation_tokens
from azure_agent_mcp.tools.base import (
    AzureTool,
    DeclaredOperation,
    PlannedRequest,
    ToolInputError,
    ToolOutput,
    clamp_top,
)
from azure_agent_mcp.tools.clients import RESOURCES_API_VERSION, AzureSession, split_resource_type
from azure_agent_mcp.tools.schemas import ANY_OBJECT, INTEGER, LISTING, NULLABLE_STRING, listing, obj, strings

_RESOURCE_TYPE = re.compile(r"^[A-Za-z0-9.]+/[A-Za-z0-9/]+$")
_NAME_FRAGMENT = re.compile(r"^[-\w.]{1,80}$")
MAX_BODY_BYTES = 256 * 1024
_LISTED_FIELDS = ("id", "name", "type", "location", "kind", "tags")


def _as_dict(model: Any) -> dict[str, Any]:
    """The model as ARM's wire JSON (azure-mgmt-resource 26 models keep camelCase wire names)."""
    return model.as_dict() if hasattr(model, "as_dict") else dict(model)


def _group_path(subscription: str, group: str) -> str:
    return f"/subscriptions/{arguments.subscription_id(subscription)}/resourceGroups/{arguments.group_name(group)}"


# -- subscription_list ----------------------------------------------------------------------


def subscription_list(azure: AzureSession) -> ToolOutput:
    subs = [_as_dict(s) for s in azure.subscriptions().subscriptions.list()]
    slim = [
        {"subscriptionId": s.get("subscriptionId"), "displayName": s.get("displayName"), "state": s.get("state")}
        for s in subs
    ]
    return ToolOutput(f"{len(slim)} subscription(s).", {"items": slim})


def _plan_subscriptions(azure: AzureSession) -> list[PlannedRequest]:
    return [PlannedRequest("GET", azure.arm_url("/subscriptions", RESOURCES_API_VERSION))]


# -- group_list / group_create ------------------------------------------------------------------


def group_list(azure: AzureSession, subscription: str | None = None) -> ToolOutput:
    sub = azure.subscription_id(subscription)
    groups = [_as_dict(g) for g in azure.resources(sub).resource_groups.list()]
    slim = [{"id": g.get("id"), "name": g.get("name"), "location": g.get("location"), "tags": g.get("tags")} for g in groups]
    return ToolOutput(f"{len(slim)} resource group(s) in subscription {sub}.", {"subscription": sub, "items": slim})


def _plan_group_list(azure: AzureSession, subscription: str | None = None) -> list[PlannedRequest]:
    sub = azure.subscription_id(subscription)
    return [PlannedRequest("GET", azure.arm_url(f"/subscriptions/{sub}/resourcegroups", RESOURCES_API_VERSION))]


def group_create(
    azure: AzureSession,
    name: str,
    location: str,
    subscription: str | None = None,
    tags: dict[str, str] | None = None,
) -> ToolOutput:
    sub = azure.subscription_id(subscription)
    _group_path(sub, name)
    body: dict[str, Any] = {"location": location}
    if tags:
        body["tags"] = tags
    group = _as_dict(azure.resources(sub).resource_groups.create_or_update(name, body))
    return ToolOutput(f"Resource group {name} is in place in {location}.", {"group": group})


def _plan_group_create(
    azure: AzureSession, name: str, location: str, subscription: str | None = None, tags: dict[str, str] | None = None
) -> list[PlannedRequest]:
    sub = azure.subscription_id(subscription)
    return [PlannedRequest("PUT", azure.arm_url(_group_path(sub, name), RESOURCES_API_VERSION))]


# -- resource_list ------------------------------------------------------------------------------


def _list_path(sub: str, resource_group: str | None) -> str:
    if resource_group:
        return _group_path(sub, resource_group) + "/resources"
    return f"/subscriptions/{sub}/resources"


def resource_list(
    azure: AzureSession,
    subscription: str | None = None,
    resource_group: str | None = None,
    resource_type: str | None = None,
    name_contains: str | None = None,
    top: int | None = None,
    continuation: str | None = None,
) -> ToolOutput:
    sub = azure.subscription_id(subscription)
    limit = clamp_top(top)
    if resource_type and not _RESOURCE_TYPE.fullmatch(resource_type):
        raise ToolInputError(
            f"'{resource_type}' is not a resource type.", hint="Use the form Namespace/type, e.g. Microsoft.Storage/storageAccounts."
        )
    if name_contains and not _NAME_FRAGMENT.fullmatch(name_contains):
        raise ToolInputError(f"name_contains '{name_contains[:40]}' has characters resource names cannot have.")
    # Raw pages through the SDK's pipeline: the agent gets ARM's JSON, and deserializing
    # every resource into a model (only to dump it again) would cost more than the request.
    if continuation:
        page = azure.arm("GET", _continued_link(azure, continuation, subscription, resource_group), None).body or {}
    else:
        query = {"$top": str(limit)}
        if resource_type:
            query["$filter"] = f"resourceType eq '{resource_type}'"
        path = _list_path(sub, resource_group) + "?" + urlencode(query)
        page = azure.arm("GET", path, RESOURCES_API_VERSION).body or {}
    items: list[dict[str, Any]] = []
    for resource in page.get("value", []):
        if name_contains and name_contains.lower() not in str(resource.get("name", "")).lower():
            continue
        items.append({k: resource[k] for k in _LISTED_FIELDS if resource.get(k) is not None})
        if len(items) >= limit:
            break
    next_link = page.get("nextLink")
    next_token = None
    if isinstance(next_link, str) and next_link:
        listing = _list_path(sub, resource_group) if not continuation else _continued_scope(azure, continuation)
        next_token = continuation_tokens.seal(next_link, tool="resource_list", session_id=azure.session.id, scope=listing)
    scope = f"group {resource_group}" if resource_group else f"subscription {sub}"
    summary = f"{len(items)} resource(s) in {scope}" + ("; more with continuation." if next_token else ".")
    return ToolOutput(summary, {"items": items, "continuation": next_token})


def _continued_scope(azure: AzureSession, continuation: str) -> str:
    return continuation_tokens.unseal(continuation, tool="resource_list", session_id=azure.session.id)[1]


def _continued_link(
    azure: AzureSession, continuation: str, subscription: str | None, resource_group: str | None
) -> str:
    """The next link sealed in ``continuation``, checked against this call (and the link against its listing)."""
    expected = None
    if subscription or resource_group:
        expected = _list_path(azure.subscription_id(subscription), resource_group)
    link, listing = continuation_tokens.unseal(
        continuation, tool="resource_list", session_id=azure.session.id, scope=expected
    )
    parts = urlsplit(link)
    arm = urlsplit(azure.env.arm_endpoint)
    moved = (parts.scheme, parts.netloc.lower()) != (arm.scheme, arm.netloc.lower()) or parts.path.lower() != listing.lower()
    if moved or "#" in link:  # urlsplit drops a fragment ('...resources#' reads as the listing); ARM never sends one
        raise ToolInputError(
            "ARM's next link does not continue the listing it was issued for; nothing was sent.",
            hint="List again without continuation.",
        )
    return link


def plan_resource_list(
    azure: AzureSession,
    subscription: str | None = None,
    resource_group: str | None = None,
    resource_type: str | None = None,
    name_contains: str | None = None,
    top: int | None = None,
    continuation: str | None = None,
) -> list[PlannedRequest]:
    if continuation:
        return [PlannedRequest("GET", _continued_link(azure, continuation, subscription, resource_group))]
    sub = azure.subscription_id(subscription)
    return [PlannedRequest("GET", azure.arm_url(_list_path(sub, resource_group), RESOURCES_API_VERSION))]


# -- resource_get / resource_delete -------------------------------------------------------------


def _checked_id(resource_id: str) -> str:
    return arguments.resource_id(resource_id).path


def resource_get(azure: AzureSession, resource_id: str, api_version: str | None = None) -> ToolOutput:
    rid = _checked_id(resource_id)
    version = api_version or azure.api_version_for(rid)
    body = azure.arm("GET", rid, version).body
    return ToolOutput(f"{body.get('type', 'resource')} {body.get('name', rid)} (api-version {version}).", {"resource": body})


def _plan_resource_get(azure: AzureSession, resource_id: str, api_version: str | None = None) -> list[PlannedRequest]:
    return [PlannedRequest("GET", azure.arm_url(_checked_id(resource_id), api_version))]


def resource_delete(azure: AzureSession, resource_id: str, api_version: str | None = None) -> ToolOutput:
    rid = _checked_id(resource_id)
    version = api_version or azure.api_version_for(rid)
    azure.arm_until_done("DELETE", rid, version)
    return ToolOutput(f"Deleted {rid}.", {"deleted": rid, "api_version": version})


def _plan_resource_delete(azure: AzureSession, resource_id: str, api_version: str | None = None) -> list[PlannedRequest]:
    return [PlannedRequest("DELETE", azure.arm_url(_checked_id(resource_id), api_version))]


# -- arm_request --------------------------------------------------------------------------------

ArmMethod = Literal["GET", "PUT", "PATCH", "POST", "DELETE"]


def _checked_path(path: str) -> str:
    return arguments.arm_path(path)


def arm_request(
    azure: AzureSession,
    method: ArmMethod,
    path: str,
    api_version: str | None = None,
    body: dict[str, Any] | None = None,
) -> ToolOutput:
    checked = _checked_path(path)
    if body is not None and len(json.dumps(body)) > MAX_BODY_BYTES:
        raise ToolInputError(f"body is larger than {MAX_BODY_BYTES // 1024} KB.")
    version = api_version or _resolve_version(azure, checked)
    response = azure.arm(method.upper(), checked, version, body)
    return ToolOutput(
        f"{method.upper()} {checked} -> HTTP {response.status} (api-version {version}).",
        {"status": response.status, "body": response.body, "api_version": version},
    )


def _resolve_version(azure: AzureSession, path: str) -> str:
    bare = path.split("?", 1)[0]
    lowered = bare.lower()
    if "/providers/" not in lowered or lowered.startswith("/providers/"):
        return RESOURCES_API_VERSION
    # a resource, a collection of one, or an action on one: the resource type decides the version
    for candidate in (bare, bare.rsplit("/", 1)[0]):
        try:
            return azure.api_version_for(candidate)
        except ToolInputError:
            continue
    return RESOURCES_API_VERSION


def _plan_arm_request(
    azure: AzureSession,
    method: str,
    path: str,
    api_version: str | None = None,
    body: dict[str, Any] | None = None,
) -> list[PlannedRequest]:
    sent = json.dumps(body).encode("utf-8") if body is not None else None  # a Resource Graph POST is decided by it
    return [PlannedRequest(method.upper(), azure.arm_url(_checked_path(path), api_version), sent)]


TOOLS = (
    AzureTool(
        name="subscription_list",
        description="The Azure subscriptions the signed-in identity can see.",
        run=subscription_list,
        plan=_plan_subscriptions,
        operations=(DeclaredOperation("Microsoft.Resources/subscriptions/read"),),
        output_schema=LISTING,
    ),
    AzureTool(
        name="group_list",
        description="Resource groups in a subscription (the default one when omitted).",
        run=group_list,
        plan=_plan_group_list,
        operations=(DeclaredOperation("Microsoft.Resources/subscriptions/resourceGroups/read"),),
        output_schema=LISTING,
    ),
    AzureTool(
        name="resource_list",
        description=(
            "Resources in a subscription or group, by type (Namespace/type) or name fragment; continuation (this "
            "session only) pages."
        ),
        run=resource_list,
        plan=plan_resource_list,
        operations=(
            DeclaredOperation("Microsoft.Resources/subscriptions/resources/read"),
            DeclaredOperation("Microsoft.Resources/subscriptions/resourceGroups/resources/read"),
        ),
        output_schema=listing(ANY_OBJECT, continuation=NULLABLE_STRING),
    ),
    AzureTool(
        name="resource_get",
        description="One resource by ARM id (api-version from provider metadata when omitted).",
        run=resource_get,
        plan=_plan_resource_get,
        operations=(DeclaredOperation("*/read"),),
        output_schema=obj(("resource",), resource=ANY_OBJECT),
    ),
    AzureTool(
        name="arm_request",
        description=(
            "One ARM request; path relative to ARM (/subscriptions/<id>/resourceGroups/<g>); the policy checks its "
            "operation."
        ),
        run=arm_request,
        plan=_plan_arm_request,
        operations=(DeclaredOperation("*/read"),),
        output_schema=obj(("status",), status=INTEGER, body={}),
        read_only=False,
        destructive=True,
        idempotent=False,
    ),
    AzureTool(
        name="group_create",
        description="Create or update a resource group.",
        run=group_create,
        plan=_plan_group_create,
        operations=(DeclaredOperation("Microsoft.Resources/subscriptions/resourceGroups/write"),),
        output_schema=obj(("group",), group=strings("id")),
        read_only=False,
        destructive=False,
        idempotent=True,
    ),
    AzureTool(
        name="resource_delete",
        description="Delete a resource or group by ARM id, waiting until it is gone.",
        run=resource_delete,
        plan=_plan_resource_delete,
        operations=(DeclaredOperation("*/delete"),),
        output_schema=strings("deleted", required=("deleted",)),
        read_only=False,
        destructive=True,
        idempotent=True,
    ),
)
