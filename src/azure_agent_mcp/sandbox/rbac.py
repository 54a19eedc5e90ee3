"""Azure RBAC as ARM evaluates it: built-in role definitions, assignments, and the permission check.

This is deliberately an implementation of its own (it does not import the product's policy
engine): the sandbox is the independent oracle the product's policy is tested against.
Semantics follow ARM: an assignment applies at its scope and every scope below it; a role grants
an operation when it matches one of the role's Actions (DataActions for data-plane operations)
and none of its NotActions (NotDataActions); ``*`` matches any run of characters including
``/``; comparison is case-insensitive.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
WEBSITE_CONTRIBUTOR = "de139f84-1756-47ae-9be6-808fbbe84772"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"


@dataclass(frozen=True)
class Permission:
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoleDefinition:
    id: str  # the GUID
    name: str
    description: str
    permissions: tuple[Permission, ...]
    assignable_scopes: tuple[str, ...] = ("/",)

    def grants(self, operation: str, data_action: bool) -> bool:
        for perm in self.permissions:
            allow, deny = (
                (perm.data_actions, perm.not_data_actions) if data_action else (perm.actions, perm.not_actions)
            )
            if any(pattern_matches(p, operation) for p in allow) and not any(
                pattern_matches(p, operation) for p in deny
            ):
                return True
        return False

    def to_arm(self, scope: str) -> dict[str, Any]:
        # ARM names a role definition read at or below a subscription by the subscription's id, whatever the
        # scope asked (a group, a resource), and at the tenant root without one
        parts = [p for p in scope.split("/") if p]
        prefix = f"/subscriptions/{parts[1]}" if len(parts) >= 2 and parts[0].lower() == "subscriptions" else ""
        return {
            "id": f"{prefix}/providers/Microsoft.Authorization/roleDefinitions/{self.id}",
            "name": self.id,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {
                "roleName": self.name,
                "type": "BuiltInRole",
                "description": self.description,
                "assignableScopes": list(self.assignable_scopes),
                "permissions": [
                    {
                        "actions": list(p.actions),
                        "notActions": list(p.not_actions),
                        "dataActions": list(p.data_actions),
                        "notDataActions": list(p.not_data_actions),
                    }
                    for p in self.permissions
                ],
                "createdOn": "2015-02-02T21:55:09.8806423Z",
                "updatedOn": "2024-01-01T00:00:00.0000000Z",
                "createdBy": None,
                "updatedBy": None,
            },
        }


BUILTIN_ROLES: dict[str, RoleDefinition] = {
    r.id: r
    for r in (
        RoleDefinition(
            OWNER,
            "Owner",
            "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
            (Permission(actions=("*",)),),
        ),
        RoleDefinition(
            CONTRIBUTOR,
            "Contributor",
            "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, "
            "manage assignments in Azure Blueprints, or share image galleries.",
            (
                Permission(
                    actions=("*",),
                    not_actions=(
                        "Microsoft.Authorization/*/Delete",
                        "Microsoft.Authorization/*/Write",
                        "Microsoft.Authorization/elevateAccess/Action",
                        "Microsoft.Blueprint/blueprintAssignments/write",
                        "Microsoft.Blueprint/blueprintAssignments/delete",
                        "Microsoft.Compute/galleries/share/action",
                        "Microsoft.Purview/consents/write",
                        "Microsoft.Purview/consents/delete",
                        "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
                        "Microsoft.Subscription/cancel/action",
                        "Microsoft.Subscription/enable/action",
                    ),
                ),
            ),
        ),
        RoleDefinition(READER, "Reader", "View all resources, but does not allow you to make any changes.",
                       (Permission(actions=("*/read",)),)),
        RoleDefinition(
            KEY_VAULT_SECRETS_USER,
            "Key Vault Secrets User",
            "Read secret contents. Only works for key vaults that use the 'Azure role-based access control' "
            "permission model.",
            (
                Permission(
                    data_actions=(
                        "Microsoft.KeyVault/vaults/secrets/getSecret/action",
                        "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
                    )
                ),
            ),
        ),
        RoleDefinition(
            KEY_VAULT_SECRETS_OFFICER,
            "Key Vault Secrets Officer",
            "Perform any action on the secrets of a key vault, except manage permissions. Only works for key "
            "vaults that use the 'Azure role-based access control' permission model.",
            (
                Permission(
                    actions=(
                        "Microsoft.Authorization/*/read",
                        "Microsoft.Insights/alertRules/*",
                        "Microsoft.Resources/deployments/*",
                        "Microsoft.Resources/subscriptions/resourceGroups/read",
                        "Microsoft.Support/*",
                        "Microsoft.KeyVault/checkNameAvailability/read",
                        "Microsoft.KeyVault/deletedVaults/read",
                        "Microsoft.KeyVault/locations/*/read",
                        "Microsoft.KeyVault/vaults/*/read",
                        "Microsoft.KeyVault/operations/read",
                    ),
                    data_actions=("Microsoft.KeyVault/vaults/secrets/*",),
                ),
            ),
        ),
        RoleDefinition(
            USER_ACCESS_ADMINISTRATOR,
            "User Access Administrator",
            "Lets you manage user access to Azure resources.",
            (Permission(actions=("*/read", "Microsoft.Authorization/*", "Microsoft.Support/*")),),
        ),
        RoleDefinition(
            WEBSITE_CONTRIBUTOR,
            "Website Contributor",
            "Lets you manage websites (not web plans), but not access to them.",
            (
                Permission(
                    actions=(
                        "Microsoft.Authorization/*/read",
                        "Microsoft.Insights/alertRules/*",
                        "Microsoft.Insights/components/*",
                        "Microsoft.ResourceHealth/availabilityStatuses/read",
                        "Microsoft.Resources/deployments/*",
                        "Microsoft.Resources/subscriptions/resourceGroups/read",
                        "Microsoft.Support/*",
                        "Microsoft.Web/certificates/*",
                        "Microsoft.Web/listSitesAssignedToHostName/read",
                        "Microsoft.Web/serverFarms/join/action",
                        "Microsoft.Web/serverFarms/read",
                        "Microsoft.Web/sites/*",
                    ),
                ),
            ),
        ),
    )
}


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.IGNORECASE)


def pattern_matches(pattern: str, operation: str) -> bool:
    """ARM's wildcard match: ``*`` spans any characters including ``/``; case-insensitive."""
    return _compile(pattern).fullmatch(operation) is not None


def scope_contains(outer: str, inner: str) -> bool:
    """Whether an assignment at ``outer`` applies at ``inner`` (segment-wise, case-insensitive)."""
    o = outer.rstrip("/").lower()
    i = inner.rstrip("/").lower()
    return o == "" or i == o or i.startswith(o + "/")


@dataclass(frozen=True)
class RoleAssignment:
    id: str  # the GUID
    principal_id: str
    principal_type: str  # "User" | "ServicePrincipal"
    role_definition_id: str  # the role GUID
    scope: str
    created_on: str = "2024-01-15T09:30:00.0000000Z"
    # A time-bound assignment (a PIM activation or an AdminAssign with an expiration) grants from
    # ``start`` (inclusive) to ``end`` (exclusive), in seconds on the sandbox clock; None = unbounded.
    start: float | None = None
    end: float | None = None

    @property
    def time_bound(self) -> bool:
        return self.start is not None or self.end is not None

    def active_at(self, now: float) -> bool:
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)

    def to_arm(self) -> dict[str, Any]:
        subscription = self.scope.split("/")[2] if self.scope.lower().startswith("/subscriptions/") else None
        definition_prefix = f"/subscriptions/{subscription}" if subscription else ""
        return {
            "id": f"{self.scope.rstrip('/')}/providers/Microsoft.Authorization/roleAssignments/{self.id}",
            "name": self.id,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": {
                "roleDefinitionId": f"{definition_prefix}/providers/Microsoft.Authorization/roleDefinitions/"
                f"{self.role_definition_id}",
                "principalId": self.principal_id,
                "principalType": self.principal_type,
                "scope": self.scope,
                "condition": None,
                "conditionVersion": None,
                "createdOn": self.created_on,
                "updatedOn": self.created_on,
                "createdBy": None,
                "updatedBy": None,
                "delegatedManagedIdentityResourceId": None,
                "description": None,
            },
        }


@dataclass
class Authorizer:
    """Answers "may principal P perform operation O at scope S?" from the role assignments.

    Time-bound assignments are judged against the sandbox clock on every call: a remembered answer
    carries the moment it stops being true (the next start or end of a time-bound assignment it
    depended on), so an activation stops granting exactly at its end time, cache or not.
    """

    assignments: list[RoleAssignment]
    roles: dict[str, RoleDefinition] = field(default_factory=lambda: dict(BUILTIN_ROLES))
    clock: Callable[[], float] = time.time
    _cache: dict[tuple[str, str, str, bool], tuple[bool, float]] = field(default_factory=dict, repr=False)

    def invalidate(self) -> None:
        self._cache.clear()

    def allowed(self, principal_id: str, operation: str, scope: str, data_action: bool = False) -> bool:
        now = self.clock()
        key = (principal_id, operation.lower(), scope.lower(), data_action)
        hit = self._cache.get(key)
        if hit is not None and now < hit[1]:
            return hit[0]
        result = False
        valid_until = math.inf
        for assignment in self.assignments:
            if assignment.principal_id != principal_id or not scope_contains(assignment.scope, scope):
                continue
            if assignment.time_bound:
                if assignment.start is not None and now < assignment.start:
                    valid_until = min(valid_until, assignment.start)
                    continue
                if assignment.end is not None and now >= assignment.end:
                    continue
            role = self.roles.get(assignment.role_definition_id)
            if role is not None and role.grants(operation, data_action):
                result = True
                if assignment.end is not None:
                    valid_until = min(valid_until, assignment.end)
                break
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = (result, valid_until)
        return result

    def active(self) -> list[RoleAssignment]:
        """The assignments granting now (time-bound ones between their start and end)."""
        now = self.clock()
        return [a for a in self.assignments if a.active_at(now)]

    def has_any_access_within(self, principal_id: str, scope: str) -> bool:
        """ARM shows a subscription to anyone with an assignment at, above or below it."""
        now = self.clock()
        return any(
            a.principal_id == principal_id and a.active_at(now)
            and (scope_contains(a.scope, scope) or scope_contains(scope, a.scope))
            for a in self.assignments
        )
