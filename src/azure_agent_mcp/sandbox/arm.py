"""Azure Resource Manager: routing, authorization as ARM does it, and the resource handlers.

Every request goes: authenticate (401 + ``WWW-Authenticate``) -> api-version present ->
claims challenge -> RBAC (403 ``AuthorizationFailed``) -> RP agent rule (403
``AgentSessionSecretAccessDenied``) -> body parsed -> handler. Paths are case-insensitive.

Role assignment listing at a scope without a filter returns the assignments at, above and below
that scope (as ARM does); ``$filter=atScope()`` returns at and above; ``principalId eq '...'`` and
``assignedTo('...')`` narrow by principal.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
import uuid
from typing import Any, Callable
from urllib.parse import quote, urlencode

from azure_agent_mcp.sandbox import catalog
from azure_agent_mcp.sandbox.access import (
    AuthFailure,
    Principal,
    agent_rule_message,
    authenticate,
    is_secret_bearing,
)
from azure_agent_mcp.sandbox.armpath import ArmTarget, map_arm, split_path
from azure_agent_mcp.sandbox.protocol import BadRequestBodyError, Request, Response, arm_error, json_response
from azure_agent_mcp.sandbox.rbac import BUILTIN_ROLES, RoleAssignment, scope_contains
from azure_agent_mcp.sandbox.rooms import ArmRoom
from azure_agent_mcp.sandbox.world import Vault

ARM_AUDIENCES = frozenset({
    "https://management.azure.com/",
    "https://management.azure.com",
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
})
MAX_PAGE = 1000
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-[a-z]+)?$", re.IGNORECASE)
_GROUP_NAME = re.compile(r"^[-\w._()]{1,90}$")
_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_SUBSTRING = re.compile(r"^\s*substringof\(\s*'((?:[^']|'')*)'\s*,\s*name\s*\)\s*$", re.IGNORECASE)
_ASSIGNED_TO = re.compile(r"^\s*assignedTo\(\s*'([^']*)'\s*\)\s*$", re.IGNORECASE)
_AT_SCOPE = re.compile(r"^\s*atScope\(\s*\)\s*$", re.IGNORECASE)


class ArmFailure(Exception):
    """An ARM error answer raised from inside a handler."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _not_found_route(request: Request) -> ArmFailure:
    return ArmFailure(404, "NotFound", f"No HTTP resource was found that matches the request URI "
                                       f"'{request.origin}{request.path}'.")



def request_body(request: Request) -> Any:
    """The JSON body, or ARM's 400 for one it cannot read (every room under ARM answers the same)."""
    try:
        return request.json()
    except BadRequestBodyError as exc:
        raise ArmFailure(400, "InvalidRequestContent",
                         f"The request content was invalid and could not be deserialized: '{exc}'.") from exc

class ArmPlane:
    def __init__(self, state: Any) -> None:
        self.state = state
        # Services of their own (Resource Graph, monitor, ...) that live under ARM's origin and token:
        # each is asked, in order, whether it serves a path before ARM's own routes are tried.
        self.rooms: list[ArmRoom] = []
        # Called with (request, principal, response) after every authenticated ARM answer.
        self.listeners: list[Callable[[Request, Principal, Response], None]] = []

    # -- entry point ----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        parts = split_path(request.path)
        if [p.lower() for p in parts] == ["metadata", "endpoints"] and request.method in ("GET", "HEAD"):
            return json_response(200, self.cloud_metadata())
        principal = authenticate(self.state.tokens, request, ARM_AUDIENCES)
        if isinstance(principal, AuthFailure):
            return self._unauthorized(principal)
        log = principal.log_fields()
        try:
            response = self._authorized(request, parts, principal, log)
        except ArmFailure as exc:
            response = arm_error(exc.status, exc.code, exc.message)
        response.log.update(log)
        for listener in self.listeners:
            listener(request, principal, response)
        return response

    def cloud_metadata(self) -> dict[str, Any]:
        """ARM's ``/metadata/endpoints``: served without a token, as Azure does, so that
        ``az cloud register --endpoint-resource-manager`` can discover the sandbox."""
        origin = self.state.origin
        return {
            "name": "AzureAgentMcpSandbox",
            "resourceManager": origin + "/",
            "portal": origin + "/",
            "authentication": {
                "loginEndpoint": origin + "/",
                "audiences": ["https://management.azure.com/", "https://management.core.windows.net/"],
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "suffixes": {"keyVaultDns": "vault.azure.net", "storage": "core.windows.net"},
        }

    def _unauthorized(self, failure: AuthFailure) -> Response:
        challenge = (f'Bearer authorization_uri="{self.state.authority}", error="invalid_token", '
                     f'error_description="{failure.description}"')
        return arm_error(401, failure.code, failure.message, [("www-authenticate", challenge)])

    def _authorized(self, request: Request, parts: list[str], principal: Principal,
                    log: dict[str, Any]) -> Response:
        api_version = request.query_ci("api-version")
        if not api_version:
            raise ArmFailure(400, "MissingApiVersionParameter",
                             "The api-version query parameter (?api-version=) is required for all requests.")
        if not _API_VERSION.match(api_version):
            raise ArmFailure(400, "InvalidApiVersionParameter",
                             f"The api-version '{api_version}' is invalid. The supported versions look like "
                             "'2022-09-01' or '2023-08-01-preview'.")
        if not parts:
            raise _not_found_route(request)
        target = map_arm(request.method, parts)
        log["operation"] = target.operation
        log["scope"] = target.scope
        challenge = self.state.claims_challenge_for(request.path, principal)
        if challenge is not None:
            return self.insufficient_claims(challenge)
        low = [p.lower() for p in parts]
        for room in self.rooms:
            if room.serves(request.method, low):
                return room.handle(request, parts, target, principal)
        return self._route(request, parts, target, principal, api_version)

    def insufficient_claims(self, challenge: Any) -> Response:
        header = (f'Bearer authorization_uri="{self.state.authority}", error="insufficient_claims", '
                  f'claims="{challenge.encoded}"')
        return arm_error(401, "InvalidAuthenticationToken",
                         "The access token is missing claims required by this resource (a claims challenge); "
                         "request a new token with the claims in the WWW-Authenticate header.",
                         [("www-authenticate", header)])

    # -- authorization ---------------------------------------------------------------------------

    def require(self, principal: Principal, operation: str, scope: str) -> None:
        """ARM's RBAC check (403 AuthorizationFailed), and the agent rule on secret-bearing operations."""
        self._require(principal, operation, scope)

    def _require(self, principal: Principal, operation: str, scope: str) -> None:
        if not self.state.authorizer.allowed(principal.object_id, operation, scope):
            raise ArmFailure(
                403,
                "AuthorizationFailed",
                f"The client '{principal.display}' with object id '{principal.object_id}' does not have "
                f"authorization to perform action '{operation}' over scope '{scope}' or the scope is invalid. "
                "If access was recently granted, please refresh your credentials.",
            )
        if self.state.agent_rule and principal.tagged and is_secret_bearing(operation):
            raise ArmFailure(403, "AgentSessionSecretAccessDenied", agent_rule_message(principal, operation))

    def _can_read(self, principal: Principal, operation: str, scope: str) -> bool:
        return self.state.authorizer.allowed(principal.object_id, operation, scope)

    # -- routing ---------------------------------------------------------------------------------

    def _route(self, request: Request, parts: list[str], target: ArmTarget, principal: Principal,
               api_version: str) -> Response:
        low = [p.lower() for p in parts]
        method = request.method
        if low == ["subscriptions"] and method == "GET":
            return self._list_subscriptions(principal)
        if low == ["tenants"] and method == "GET":
            return self._list_tenants()
        if low[0] == "providers":
            return self._tenant_providers(request, parts, target, principal)
        if low[0] != "subscriptions" or len(parts) < 2:
            raise _not_found_route(request)
        sub = self._subscription(parts[1])
        sub_scope = f"/subscriptions/{sub}"
        rest = low[2:]
        auth_index = self._authorization_index(low)
        if auth_index is not None:
            return self._authorization(request, parts, auth_index, target, principal)
        if not rest:
            if method != "GET":
                raise _not_found_route(request)
            if not self.state.authorizer.has_any_access_within(principal.object_id, sub_scope):
                self._require(principal, target.operation, sub_scope)
            return json_response(200, self._subscription_doc(sub))
        if rest == ["locations"] and method == "GET":
            self._require_visible(principal, target, sub_scope)
            return json_response(200, {"value": catalog.location_documents(sub)})
        if rest == ["providers"] and method == "GET":
            self._require_visible(principal, target, sub_scope)
            return json_response(200, {"value": [catalog.provider_document(sub, ns) for ns in catalog.PROVIDERS]})
        if len(rest) == 2 and rest[0] == "providers" and method == "GET":
            self._require_visible(principal, target, sub_scope)
            namespace = catalog.canonical_namespace(parts[3])
            if namespace is None:
                raise ArmFailure(404, "InvalidResourceNamespace",
                                 f"The resource namespace '{parts[3]}' is invalid.")
            return json_response(200, catalog.provider_document(sub, namespace))
        if len(rest) == 2 and rest[0] == "operationresults" and method == "GET":
            return self._operation_result(sub, parts[3], principal, target)
        if rest == ["resources"] and method == "GET":
            return self._list_resources(request, principal, target, sub_scope, None)
        if rest == ["resourcegroups"] and method == "GET":
            return self._list_groups(request, principal, target, sub)
        if rest[0] == "resourcegroups" and len(rest) >= 2:
            group_id = f"{sub_scope}/resourceGroups/{parts[3]}"
            if len(rest) == 2:
                return self._group(request, principal, target, sub, parts[3])
            if rest[2:] == ["resources"] and method == "GET":
                group = self._group_doc(group_id)
                return self._list_resources(request, principal, target, group["id"], group["id"])
            if rest[2] == "providers" and len(rest) >= 5:
                return self._provider_resource(request, parts, target, principal, api_version, group_id)
            raise _not_found_route(request)
        if rest[0] == "providers" and len(rest) == 3 and method == "GET":
            return self._list_by_type(request, principal, target, sub_scope, parts[3], parts[4], api_version)
        raise _not_found_route(request)

    @staticmethod
    def _authorization_index(low: list[str]) -> int | None:
        for i in range(len(low) - 2, -1, -1):
            if low[i] == "providers" and low[i + 1] == "microsoft.authorization":
                return i
        return None

    def _require_visible(self, principal: Principal, target: ArmTarget, sub_scope: str) -> None:
        if not self.state.authorizer.has_any_access_within(principal.object_id, sub_scope):
            self._require(principal, target.operation, sub_scope)

    # -- subscriptions / tenants ------------------------------------------------------------------

    def _subscription(self, raw: str) -> str:
        for sub in self.state.world.subscriptions:
            if sub.lower() == raw.lower():
                return sub
        raise ArmFailure(404, "SubscriptionNotFound", f"The subscription '{raw}' could not be found.")

    def _subscription_doc(self, sub: str) -> dict[str, Any]:
        return {
            "id": f"/subscriptions/{sub}",
            "authorizationSource": "RoleBased",
            "managedByTenants": [],
            "subscriptionId": sub,
            "tenantId": self.state.tenant_id,
            "displayName": self.state.world.subscriptions[sub],
            "state": "Enabled",
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off",
            },
        }

    def _list_subscriptions(self, principal: Principal) -> Response:
        visible = [
            self._subscription_doc(sub)
            for sub in self.state.world.subscriptions
            if self.state.authorizer.has_any_access_within(principal.object_id, f"/subscriptions/{sub}")
        ]
        return json_response(200, {"value": visible, "count": {"type": "Total", "value": len(visible)}})

    def _list_tenants(self) -> Response:
        return json_response(200, {"value": [{
            "id": f"/tenants/{self.state.tenant_id}",
            "tenantId": self.state.tenant_id,
            "tenantCategory": "Home",
            "displayName": "Azure Agent MCP Sandbox",
            "defaultDomain": "sandbox.onmicrosoft.com",
            "domains": ["sandbox.onmicrosoft.com"],
            "tenantType": "AAD",
        }]})

    def _tenant_providers(self, request: Request, parts: list[str], target: ArmTarget,
                          principal: Principal) -> Response:
        low = [p.lower() for p in parts]
        if len(low) >= 2 and low[1] == "microsoft.authorization":
            return self._authorization(request, parts, 0, target, principal)
        if request.method != "GET":
            raise _not_found_route(request)
        if len(parts) == 1:
            return json_response(200, {"value": [catalog.provider_document(None, ns) for ns in catalog.PROVIDERS]})
        if len(parts) == 2:
            namespace = catalog.canonical_namespace(parts[1])
            if namespace is None:
                raise ArmFailure(404, "InvalidResourceNamespace", f"The resource namespace '{parts[1]}' is invalid.")
            return json_response(200, catalog.provider_document(None, namespace))
        raise _not_found_route(request)

    # -- resource groups ---------------------------------------------------------------------------

    def _group_doc(self, group_id: str) -> dict[str, Any]:
        group = self.state.world.groups.get(group_id.lower())
        if group is None:
            name = group_id.rsplit("/", 1)[1]
            raise ArmFailure(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
        return group

    def _list_groups(self, request: Request, principal: Principal, target: ArmTarget, sub: str) -> Response:
        sub_scope = f"/subscriptions/{sub}"
        if not self._can_read(principal, target.operation, sub_scope):
            if not self.state.authorizer.has_any_access_within(principal.object_id, sub_scope):
                self._require(principal, target.operation, sub_scope)
        prefix = sub_scope.lower() + "/"
        clauses = self._filter(request, {"tagname", "tagvalue", "name"})
        groups = [
            g for key, g in self.state.world.groups.items()
            if key.startswith(prefix)
            and self._can_read(principal, "Microsoft.Resources/subscriptions/resourceGroups/read", g["id"])
            and _matches(g, clauses)
        ]
        return self._page(request, groups, lambda g: g)

    def _group(self, request: Request, principal: Principal, target: ArmTarget, sub: str, name: str) -> Response:
        group_id = f"/subscriptions/{sub}/resourceGroups/{name}"
        method = request.method
        self._require(principal, target.operation, group_id)
        existing = self.state.world.groups.get(group_id.lower())
        if method in ("GET", "HEAD"):
            if method == "HEAD":
                return Response(204 if existing else 404)
            return json_response(200, self._group_doc(group_id))
        if method == "PUT":
            return self._put_group(request, group_id, name, existing)
        if method == "PATCH":
            group = self._group_doc(group_id)
            body = request_body(request) or {}
            if not isinstance(body, dict):
                raise ArmFailure(400, "InvalidRequestContent", "The request content must be a JSON object.")
            if isinstance(body.get("tags"), dict):
                group["tags"] = {str(k): str(v) for k, v in body["tags"].items()}
            return json_response(200, group)
        if method == "DELETE":
            group = self._group_doc(group_id)
            if group["properties"]["provisioningState"] != "Deleting":
                group["properties"]["provisioningState"] = "Deleting"
            operation_id = uuid.uuid4().hex
            self.state.world.operations[operation_id] = {"kind": "delete-group", "group_id": group_id.lower(),
                                                         "subscription": sub, "done": False}
            api_version = request.query_ci("api-version")
            location = (f"{self.state.origin}/subscriptions/{sub}/operationresults/{operation_id}"
                        f"?api-version={quote(api_version or '')}")
            return Response(202, b"", [("location", location), ("retry-after", "1")])
        raise _not_found_route(request)

    def _put_group(self, request: Request, group_id: str, name: str, existing: dict[str, Any] | None) -> Response:
        if not _GROUP_NAME.match(name) or name.endswith("."):
            raise ArmFailure(400, "InvalidResourceGroup",
                             f"The provided resource group name '{name}' has invalid characters or length. The name "
                             "can only be 1-90 letters, digits, '-', '.', '(', ')' or '_', and cannot end with '.'.")
        body = request_body(request)
        if not isinstance(body, dict):
            raise ArmFailure(400, "InvalidRequestContent", "The request content must be a JSON object with a "
                                                           "'location'.")
        location = body.get("location")
        if not isinstance(location, str) or not location:
            raise ArmFailure(400, "LocationRequired", "The location property is required for this definition.")
        tags = body.get("tags") or {}
        if not isinstance(tags, dict):
            raise ArmFailure(400, "InvalidRequestContent", "'tags' must be an object of string values.")
        if existing is not None:
            if existing["location"].lower() != location.lower().replace(" ", ""):
                raise ArmFailure(409, "InvalidResourceGroupLocation",
                                 f"Invalid resource group location '{location}'. The Resource group already exists "
                                 f"in location '{existing['location']}'.")
            if existing["properties"]["provisioningState"] == "Deleting":
                raise ArmFailure(409, "ResourceGroupBeingDeleted",
                                 f"The resource group '{name}' is in deprovisioning state and cannot perform this "
                                 "operation.")
            existing["tags"] = {str(k): str(v) for k, v in tags.items()}
            return json_response(200, existing)
        group = {
            "id": group_id,
            "name": name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": location.lower().replace(" ", ""),
            "tags": {str(k): str(v) for k, v in tags.items()},
            "properties": {"provisioningState": "Succeeded"},
        }
        self.state.world.groups[group_id.lower()] = group
        return json_response(201, group)

    def _operation_result(self, sub: str, operation_id: str, principal: Principal, target: ArmTarget) -> Response:
        self._require_visible(principal, target, f"/subscriptions/{sub}")
        operation = self.state.world.operations.get(operation_id.lower()) or self.state.world.operations.get(
            operation_id)
        if operation is None or operation["subscription"] != sub:
            raise ArmFailure(404, "OperationNotFound", f"The operation '{operation_id}' could not be found.")
        if not operation["done"]:
            self._delete_group(operation["group_id"])
            operation["done"] = True
        return Response(200)

    def _delete_group(self, group_key: str) -> None:
        world = self.state.world
        world.groups.pop(group_key, None)
        prefix = group_key + "/"
        for store in (world.resources, world.children, world.keys, world.app_settings, world.connection_strings):
            for key in [k for k in store if k.startswith(prefix)]:
                del store[key]
        for name in [n for n, v in world.vaults.items() if v.resource_id.lower().startswith(prefix)]:
            del world.vaults[name]
        before = len(world.role_assignments)
        world.role_assignments[:] = [a for a in world.role_assignments if not scope_contains(group_key, a.scope)]
        if len(world.role_assignments) != before:
            self.state.authorizer.invalidate()

    # -- resource listing ------------------------------------------------------------------------

    def _filter(self, request: Request, allowed: set[str]) -> list[tuple[str, str]]:
        raw = request.query_ci("$filter")
        if raw is None or not raw.strip():
            return []
        clauses: list[tuple[str, str]] = []
        for part in re.split(r"\s+and\s+", raw.strip(), flags=re.IGNORECASE):
            sub = _SUBSTRING.match(part)
            if sub and "substringof" in allowed:
                clauses.append(("substringof", sub.group(1).replace("''", "'")))
                continue
            match = _CLAUSE.match(part)
            if not match or match.group(1).lower() not in allowed:
                raise ArmFailure(400, "InvalidFilterInQueryString",
                                 f"The $filter '{raw}' is not supported. Supported: "
                                 + ", ".join(sorted(f"{a} eq '...'" for a in allowed if a != "substringof"))
                                 + (", substringof('...', name)" if "substringof" in allowed else "")
                                 + ", joined with 'and'.")
            clauses.append((match.group(1).lower(), match.group(2).replace("''", "'")))
        return clauses

    def _list_resources(self, request: Request, principal: Principal, target: ArmTarget, scope: str,
                        group_id: str | None) -> Response:
        if not self._can_read(principal, target.operation, scope):
            if not self.state.authorizer.has_any_access_within(principal.object_id, scope):
                self._require(principal, target.operation, scope)
        clauses = self._filter(request, {"resourcetype", "name", "location", "tagname", "tagvalue",
                                         "resourcegroup", "substringof"})
        prefix = (group_id or scope).lower() + "/"
        items = [
            r for key, r in self.state.world.resources.items()
            if key.startswith(prefix) and _matches(r, clauses)
            and self._can_read(principal, f"{r['type']}/read", r["id"])
        ]
        expand = (request.query_ci("$expand") or "").lower()
        return self._page(request, items, lambda r: _expanded(r, expand))

    def _list_by_type(self, request: Request, principal: Principal, target: ArmTarget, scope: str,
                      namespace: str, rtype: str, api_version: str) -> Response:
        known = catalog.lookup_type(namespace, rtype)
        if known is None:
            raise self._unknown_type(namespace, rtype, api_version)
        self._check_version(known, api_version)
        if not self._can_read(principal, target.operation, scope):
            if not self.state.authorizer.has_any_access_within(principal.object_id, scope):
                self._require(principal, target.operation, scope)
        full_type = f"{known[0]}/{known[1]}".lower()
        prefix = scope.lower() + "/"
        items = [
            r for key, r in self.state.world.resources.items()
            if key.startswith(prefix) and r["type"].lower() == full_type
            and self._can_read(principal, f"{r['type']}/read", r["id"])
        ]
        return self._page(request, items, lambda r: r)

    def _page(self, request: Request, items: list[dict[str, Any]],
              render: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
        top_raw = request.query_ci("$top")
        top = MAX_PAGE
        if top_raw is not None:
            try:
                top = int(top_raw)
            except ValueError:
                top = 0
            if not 1 <= top <= MAX_PAGE:
                raise ArmFailure(400, "InvalidTopValue",
                                 f"The value '{top_raw}' of query parameter '$top' is invalid: use 1 to {MAX_PAGE}.")
        offset = 0
        token = request.query_ci("$skiptoken")
        if token:
            offset = _decode_skiptoken(token)
        page = items[offset:offset + top]
        payload: dict[str, Any] = {"value": [render(i) for i in page]}
        if offset + top < len(items):
            params = {"api-version": request.query_ci("api-version") or ""}
            for name in ("$filter", "$expand"):
                value = request.query_ci(name)
                if value:
                    params[name] = value
            if top_raw is not None:
                params["$top"] = str(top)
            params["$skiptoken"] = _encode_skiptoken(offset + top)
            payload["nextLink"] = f"{self.state.origin}{request.path}?{urlencode(params, quote_via=quote)}"
        return json_response(200, payload)

    # -- generic resources -----------------------------------------------------------------------

    def _unknown_type(self, namespace: str, type_chain: str, api_version: str) -> ArmFailure:
        if catalog.canonical_namespace(namespace) is None:
            return ArmFailure(404, "InvalidResourceNamespace", f"The resource namespace '{namespace}' is invalid.")
        return ArmFailure(404, "InvalidResourceType",
                          f"The resource type '{type_chain}' could not be found in the namespace '{namespace}' for "
                          f"api version '{api_version}'.")

    @staticmethod
    def _check_version(known: tuple[str, str, list[str]], api_version: str) -> None:
        if api_version not in known[2]:
            raise ArmFailure(
                400,
                "NoRegisteredProviderFound",
                f"No registered resource provider found for location 'eastus' and API version '{api_version}' for "
                f"type '{known[1]}'. The supported api-versions are '{', '.join(known[2])}'. The supported "
                "locations are 'eastus, westus2, westeurope'.",
            )

    def _provider_resource(self, request: Request, parts: list[str], target: ArmTarget, principal: Principal,
                           api_version: str, group_id: str) -> Response:
        # parts: subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{t1}/{n1}/...
        namespace = parts[5]
        rest = parts[6:]
        method = request.method
        self._require(principal, target.operation, target.scope)
        is_action = method == "POST"
        resource_parts = rest[:2] if is_action else rest
        type_chain = "/".join(resource_parts[0::2])
        known = catalog.lookup_type(namespace, type_chain)
        if known is None:
            raise self._unknown_type(namespace, type_chain, api_version)
        self._check_version(known, api_version)
        group = self._group_doc(group_id)
        base = f"{group['id']}/providers/{known[0]}"
        if is_action:
            resource_id = f"{base}/{rest[0]}/{rest[1]}"
            resource = self._resource(resource_id, known)
            return self._action(request, resource, known, "/".join(rest[2:]).lower())
        if len(rest) % 2 == 1:
            if method != "GET":
                raise _not_found_route(request)
            parent_prefix = (f"{base}/" + "/".join(rest[:-1])).lower() + "/" if len(rest) > 1 else base.lower() + "/"
            full_type = f"{known[0]}/{known[1]}".lower()
            stores = [self.state.world.resources, self.state.world.children]
            items = [r for store in stores for key, r in store.items()
                     if key.startswith(parent_prefix) and r["type"].lower() == full_type
                     and self._can_read(principal, f"{r['type']}/read", r["id"])]
            return self._page(request, items, lambda r: r)
        resource_id = f"{base}/" + "/".join(rest)
        if method == "GET":
            return json_response(200, self._resource(resource_id, known))
        if method == "HEAD":
            exists = self._find(resource_id) is not None
            return Response(204 if exists else 404)
        if method == "PUT":
            return self._put_resource(request, resource_id, known, group, rest)
        if method == "PATCH":
            resource = self._resource(resource_id, known)
            body = request_body(request) or {}
            if not isinstance(body, dict):
                raise ArmFailure(400, "InvalidRequestContent", "The request content must be a JSON object.")
            if isinstance(body.get("tags"), dict):
                resource["tags"] = {str(k): str(v) for k, v in body["tags"].items()}
            if isinstance(body.get("properties"), dict):
                resource.setdefault("properties", {}).update(body["properties"])
            return json_response(200, resource)
        if method == "DELETE":
            if self._find(resource_id) is None:
                return Response(204)
            self._delete_resource(resource_id)
            return Response(200)
        raise _not_found_route(request)

    def _find(self, resource_id: str) -> dict[str, Any] | None:
        key = resource_id.lower()
        return self.state.world.resources.get(key) or self.state.world.children.get(key)

    def _resource(self, resource_id: str, known: tuple[str, str, list[str]]) -> dict[str, Any]:
        found = self._find(resource_id)
        if found is None:
            parts = split_path(resource_id)
            name = "/".join(parts[7::2])
            raise ArmFailure(404, "ResourceNotFound",
                             f"The Resource '{known[0]}/{known[1]}/{name}' under resource group '{parts[3]}' was not "
                             "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")
        return found

    def _put_resource(self, request: Request, resource_id: str, known: tuple[str, str, list[str]],
                      group: dict[str, Any], rest: list[str]) -> Response:
        body = request_body(request)
        if not isinstance(body, dict):
            raise ArmFailure(400, "InvalidRequestContent", "The request content must be a JSON object.")
        child = len(rest) > 2
        if child:
            parent_id = resource_id.rsplit("/", 2)[0]
            if self._find(parent_id) is None:
                raise ArmFailure(404, "ParentResourceNotFound",
                                 f"Can not perform requested operation on nested resource. Parent resource "
                                 f"'{parent_id.rsplit('/', 1)[1]}' not found.")
        location = body.get("location")
        if not child and (not isinstance(location, str) or not location):
            raise ArmFailure(400, "LocationRequired", "The location property is required for this definition.")
        existing = self._find(resource_id)
        full_type = f"{known[0]}/{known[1]}"
        canonical_id = resource_id
        resource: dict[str, Any] = {
            "id": canonical_id,
            "name": "/".join(rest[1::2]) if full_type in _LISTED_CHILD_TYPES else rest[-1],
            "type": full_type,
            "location": (location or group["location"]).lower().replace(" ", ""),
            "tags": {str(k): str(v) for k, v in (body.get("tags") or {}).items()}
            if isinstance(body.get("tags"), dict) else {},
            "properties": dict(body.get("properties") or {}) if isinstance(body.get("properties"), dict) else {},
        }
        for extra in ("sku", "kind", "identity", "zones", "plan"):
            if extra in body:
                resource[extra] = body[extra]
        resource["properties"]["provisioningState"] = "Succeeded"
        store = self.state.world.children if (child and full_type not in _LISTED_CHILD_TYPES) else \
            self.state.world.resources
        key = resource_id.lower()
        if full_type == "Microsoft.Storage/storageAccounts" and key not in self.state.world.keys:
            self.state.world.keys[key] = [
                {"keyName": k, "value": base64.b64encode(secrets.token_bytes(64)).decode(), "permissions": "FULL",
                 "creationTime": _now_iso()} for k in ("key1", "key2")]
        if full_type == "Microsoft.Web/sites":
            self.state.world.app_settings.setdefault(key, {})
            self.state.world.connection_strings.setdefault(key, {})
        if full_type == "Microsoft.KeyVault/vaults":
            name = rest[1]
            other = self.state.world.vaults.get(name.lower())
            if other is not None and other.resource_id.lower() != key:
                raise ArmFailure(409, "VaultAlreadyExists",
                                 f"The vault name '{name}' is already in use. Vault names are globally unique.")
            resource["properties"].setdefault("tenantId", self.state.tenant_id)
            resource["properties"].setdefault("sku", {"family": "A", "name": "standard"})
            resource["properties"]["vaultUri"] = f"{self.state.origin}/vaults/{name}/"
            resource["properties"].setdefault("enableRbacAuthorization", True)
            resource["properties"].setdefault("enableSoftDelete", True)
            if other is None:
                parts = split_path(resource_id)
                self.state.world.vaults[name.lower()] = Vault(name, parts[1], parts[3], resource_id)
        store[key] = resource
        return json_response(200 if existing is not None else 201, resource)

    def _delete_resource(self, resource_id: str) -> None:
        world = self.state.world
        key = resource_id.lower()
        for store in (world.resources, world.children, world.keys, world.app_settings, world.connection_strings):
            for k in [k for k in store if k == key or k.startswith(key + "/")]:
                del store[k]
        for name in [n for n, v in world.vaults.items() if v.resource_id.lower() == key]:
            del world.vaults[name]

    # -- actions ---------------------------------------------------------------------------------

    def _action(self, request: Request, resource: dict[str, Any], known: tuple[str, str, list[str]],
                action: str) -> Response:
        rtype = resource["type"].lower()
        key = resource["id"].lower()
        world = self.state.world
        if rtype == "microsoft.storage/storageaccounts" and action == "listkeys":
            return json_response(200, {"keys": [dict(k) for k in world.keys.get(key, [])]})
        if rtype == "microsoft.storage/storageaccounts" and action == "regeneratekey":
            body = request_body(request)
            key_name = body.get("keyName") if isinstance(body, dict) else None
            entries = world.keys.get(key, [])
            target = next((k for k in entries if isinstance(key_name, str) and k["keyName"] == key_name.lower()), None)
            if target is None:
                raise ArmFailure(400, "InvalidValuesForRequestParameters",
                                 "Values for request parameters are invalid: keyName. Use {\"keyName\": \"key1\"} or "
                                 "{\"keyName\": \"key2\"}.")
            target["value"] = base64.b64encode(secrets.token_bytes(64)).decode()
            target["creationTime"] = _now_iso()
            return json_response(200, {"keys": [dict(k) for k in entries]})
        if rtype == "microsoft.web/sites" and action in ("config/appsettings/list", "config/connectionstrings/list"):
            settings = world.app_settings if action.endswith("appsettings/list") else world.connection_strings
            name = "appsettings" if "appsettings" in action else "connectionstrings"
            return json_response(200, {
                "id": f"{resource['id']}/config/{name}",
                "name": name,
                "type": "Microsoft.Web/sites/config",
                "location": resource["location"],
                "properties": json.loads(json.dumps(settings.get(key, {}))),
            })
        if rtype == "microsoft.documentdb/databaseaccounts" and action == "listkeys":
            return json_response(200, {n: _derived_key(self.state, key, n) for n in (
                "primaryMasterKey", "secondaryMasterKey", "primaryReadonlyMasterKey", "secondaryReadonlyMasterKey")})
        if rtype == "microsoft.cache/redis" and action == "listkeys":
            return json_response(200, {n: _derived_key(self.state, key, n) for n in ("primaryKey", "secondaryKey")})
        if rtype == "microsoft.containerregistry/registries" and action == "listcredentials":
            return json_response(200, {"username": resource["name"], "passwords": [
                {"name": n, "value": _derived_key(self.state, key, n)[:32]} for n in ("password", "password2")]})
        raise ArmFailure(404, "InvalidResourceType",
                         f"The action '{action}' is not supported on resource type '{resource['type']}' by the "
                         "sandbox.")

    # -- Microsoft.Authorization -----------------------------------------------------------------

    def _authorization(self, request: Request, parts: list[str], index: int, target: ArmTarget,
                       principal: Principal) -> Response:
        scope = "/" + "/".join(parts[:index]) if index else "/"
        low = [p.lower() for p in parts]
        tail = low[index + 2:]
        method = request.method
        if scope != "/":
            self._check_scope_exists(scope)
        if not tail or tail[0] not in ("roleassignments", "roledefinitions") or len(tail) > 2:
            raise _not_found_route(request)
        self._require(principal, target.operation, scope)
        if tail[0] == "roledefinitions":
            if method != "GET":
                raise _not_found_route(request)
            if len(tail) == 2:
                role = BUILTIN_ROLES.get(tail[1])
                if role is None:
                    raise ArmFailure(404, "RoleDefinitionDoesNotExist",
                                     f"The specified role definition with ID '{parts[index + 3]}' does not exist.")
                return json_response(200, role.to_arm(scope))
            clauses = self._filter(request, {"rolename", "type"})
            roles = [r for r in BUILTIN_ROLES.values()
                     if all((n == "rolename" and r.name.lower() == v.lower()) or (n == "type" and v == "BuiltInRole")
                            for n, v in clauses)]
            return json_response(200, {"value": [r.to_arm(scope) for r in roles]})
        assignments = self.state.world.role_assignments
        if len(tail) == 2:
            name = tail[1]
            found = next((a for a in assignments if a.id == name and a.scope.lower() == scope.lower()), None)
            if method == "GET":
                if found is None:
                    raise ArmFailure(404, "RoleAssignmentNotFound",
                                     f"The role assignment '{parts[index + 3]}' is not found.")
                return json_response(200, found.to_arm())
            if method == "PUT":
                return self._put_assignment(request, scope, parts[index + 3], found)
            if method == "DELETE":
                if found is None:
                    return Response(204)
                assignments.remove(found)
                self.state.authorizer.invalidate()
                return json_response(200, found.to_arm())
            raise _not_found_route(request)
        if method != "GET":
            raise _not_found_route(request)
        return json_response(200, {"value": [a.to_arm() for a in self._assignments_at(request, scope)]})

    def _check_scope_exists(self, scope: str) -> None:
        parts = split_path(scope)
        if len(parts) >= 4:
            self._group_doc("/" + "/".join(parts[:4]))
        if len(parts) > 4 and self._find(scope) is None:
            raise ArmFailure(404, "ResourceNotFound", f"The Resource '{scope}' was not found.")

    def _assignments_at(self, request: Request, scope: str) -> list[RoleAssignment]:
        raw = (request.query_ci("$filter") or "").strip()
        at_scope = False
        principal_filter: str | None = None
        if raw:
            for part in re.split(r"\s+and\s+", raw, flags=re.IGNORECASE):
                clause = _CLAUSE.match(part)
                assigned = _ASSIGNED_TO.match(part)
                if _AT_SCOPE.match(part):
                    at_scope = True
                elif assigned:
                    principal_filter = assigned.group(1)
                elif clause and clause.group(1).lower() == "principalid":
                    principal_filter = clause.group(2)
                else:
                    raise ArmFailure(400, "InvalidFilterInQueryString",
                                     f"The $filter '{raw}' is not supported. Supported: atScope(), "
                                     "principalId eq '{id}', assignedTo('{id}'), joined with 'and'.")
        result = []
        for a in self.state.authorizer.active():  # time-bound (PIM) assignments only while they grant
            above_or_at = scope_contains(a.scope, scope)
            below = scope_contains(scope, a.scope)
            if not (above_or_at or (below and not at_scope)):
                continue
            if principal_filter is not None and a.principal_id.lower() != principal_filter.lower():
                continue
            result.append(a)
        return result

    def _put_assignment(self, request: Request, scope: str, name: str, found: RoleAssignment | None) -> Response:
        try:
            uuid.UUID(name)
        except ValueError as exc:
            raise ArmFailure(400, "InvalidRoleAssignmentId",
                             f"The role assignment ID '{name}' is not valid. The role assignment ID must be a "
                             "GUID.") from exc
        body = request_body(request)
        props = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(props, dict):
            raise ArmFailure(400, "InvalidRequestContent",
                             "The request content must be {\"properties\": {\"roleDefinitionId\", \"principalId\"}}.")
        role_id = str(props.get("roleDefinitionId", "")).rstrip("/").rsplit("/", 1)[-1].lower()
        principal_id = str(props.get("principalId", ""))
        if role_id not in BUILTIN_ROLES:
            raise ArmFailure(400, "RoleDefinitionDoesNotExist",
                             f"The specified role definition with ID '{role_id}' does not exist.")
        world = self.state.world
        known_principals = {u.object_id: "User" for u in [*world.users, *world.agent_users]}
        known_principals.update({s.object_id: "ServicePrincipal" for s in world.service_principals})
        if principal_id not in known_principals:
            raise ArmFailure(400, "PrincipalNotFound",
                             f"Principal {principal_id} does not exist in the directory {self.state.tenant_id}.")
        if found is not None:
            return json_response(200, found.to_arm())
        for a in world.role_assignments:
            if (a.principal_id == principal_id and a.role_definition_id == role_id
                    and a.scope.lower() == scope.lower()):
                raise ArmFailure(409, "RoleAssignmentExists", "The role assignment already exists.")
        assignment = RoleAssignment(name.lower(), principal_id, known_principals[principal_id], role_id, scope,
                                    _now_iso())
        world.role_assignments.append(assignment)
        self.state.authorizer.invalidate()
        return json_response(201, assignment.to_arm())


_LISTED_CHILD_TYPES = frozenset({"Microsoft.Sql/servers/databases"})


def _matches(resource: dict[str, Any], clauses: list[tuple[str, str]]) -> bool:
    tag_name = None
    for name, value in clauses:
        lowered = value.lower()
        if name == "resourcetype" and resource.get("type", "").lower() != lowered:
            return False
        if name == "name" and resource.get("name", "").lower() != lowered:
            return False
        if name == "location" and resource.get("location", "").lower() != lowered:
            return False
        if name == "resourcegroup" and split_path(resource["id"])[3].lower() != lowered:
            return False
        if name == "substringof" and lowered not in resource.get("name", "").lower():
            return False
        if name == "tagname":
            tag_name = value
            if not any(k.lower() == lowered for k in (resource.get("tags") or {})):
                return False
        if name == "tagvalue":
            tags = resource.get("tags") or {}
            values = [v for k, v in tags.items() if tag_name is None or k.lower() == tag_name.lower()]
            if value not in values:
                return False
    return True


def _expanded(resource: dict[str, Any], expand: str) -> dict[str, Any]:
    item = {k: resource[k] for k in ("id", "name", "type", "sku", "kind", "location", "tags") if k in resource}
    if "provisioningstate" in expand:
        item["provisioningState"] = resource.get("properties", {}).get("provisioningState", "Succeeded")
    if "createdtime" in expand:
        item["createdTime"] = "2024-01-15T09:30:00.0000000Z"
    if "changedtime" in expand:
        item["changedTime"] = "2024-01-15T09:30:00.0000000Z"
    return item


def _encode_skiptoken(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_skiptoken(token: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(data["o"])
        if offset < 0:
            raise ValueError
        return offset
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise ArmFailure(400, "InvalidSkipToken",
                         "The $skiptoken is not valid. Use the nextLink of the previous page as it was "
                         "returned.") from exc


def _derived_key(state: Any, resource_key: str, name: str) -> str:
    import hashlib

    digest = hashlib.sha512(f"{state.creds.key_salt}/{resource_key}/{name}".encode()).digest()
    return base64.b64encode(digest).decode()


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
