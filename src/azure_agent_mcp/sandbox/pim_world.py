"""What Privileged Identity Management knows in the sandbox: eligibilities, role settings, requests, schedules.

The seed gives the READER user standing Reader on subscription A (as before) and four
eligibilities, each under its own role setting, so every refusal PIM gives has a case to prove it:

- Website Contributor on ``rg-prod-app`` (the group of ``app-orders-prod``): activation up to PT1H,
  justification required, no MFA, no approval. The demo's restart goes through this one;
- Contributor on ``rg-prod-app``: approval required (the request waits in PendingApproval);
- Contributor on ``rg-prod-data``: multifactor authentication required (a password token fails
  with ``MfaRule``; a token from an interactive sign-in carries ``amr: mfa``);
- Key Vault Secrets User on ``kv-sandbox-prod``: Conditional Access authentication context ``c1``
  required (``RoleAssignmentRequestAcrsValidationFailed`` unless the token carries ``acrs: c1``).

Every other role at every scope has PIM's default role setting (activation up to PT8H with a
justification, permanent active assignments allowed), as Azure gives each role at each scope one.
Service principals are never eligible: Azure refuses eligible assignments for them because they
cannot perform activation; they get time-bound *active* assignments (AdminAssign) instead.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from azure_agent_mcp.sandbox.principals import DEVELOPER_OID, READER_OID, SUBSCRIPTION_A, stable_guid
from azure_agent_mcp.sandbox.rbac import (
    CONTRIBUTOR,
    KEY_VAULT_SECRETS_USER,
    WEBSITE_CONTRIBUTOR,
    RoleAssignment,
)
from azure_agent_mcp.sandbox.timespans import parse_duration

SEED_EPOCH = datetime.datetime(2024, 1, 15, 9, 30, tzinfo=datetime.timezone.utc).timestamp()
PROD_APP = f"/subscriptions/{SUBSCRIPTION_A}/resourceGroups/rg-prod-app"
PROD_DATA = f"/subscriptions/{SUBSCRIPTION_A}/resourceGroups/rg-prod-data"
PROD_VAULT = f"{PROD_APP}/providers/Microsoft.KeyVault/vaults/kv-sandbox-prod"
MIN_ACTIVE_SECONDS = 5 * 60  # PIM's floor: no activation shorter, no deactivation sooner


@dataclass(frozen=True)
class RolePolicy:
    """One role's PIM settings at one scope (a roleManagementPolicy and its assignment)."""

    name: str  # GUID
    scope: str
    role_definition_id: str
    max_activation: str = "PT8H"  # Expiration_EndUser_Assignment.maximumDuration
    justification_required: bool = True
    mfa_required: bool = False
    approval_required: bool = False
    approvers: tuple[str, ...] = ()  # object ids of the approvers
    authentication_context: str | None = None  # Conditional Access authentication context claim value
    admin_assignment_max: str = "P180D"  # Expiration_Admin_Assignment.maximumDuration
    admin_expiration_required: bool = False  # permanent active assignments allowed by default
    admin_justification_required: bool = True
    default: bool = False  # the organisation default (no one changed this role's settings here)

    @property
    def max_activation_seconds(self) -> float:
        return parse_duration(self.max_activation).total_seconds()

    @property
    def admin_assignment_max_seconds(self) -> float:
        return parse_duration(self.admin_assignment_max).total_seconds()

    @property
    def assignment_name(self) -> str:
        """Azure names a policy assignment ``{policy}_{roleDefinition}``."""
        return f"{self.name}_{self.role_definition_id}"


@dataclass(frozen=True)
class Eligibility:
    """A roleEligibilitySchedule and its one instance (eligible from ``start``, until ``end`` or forever)."""

    name: str  # schedule GUID
    instance_name: str
    principal_id: str
    principal_type: str
    role_definition_id: str
    scope: str
    start: float
    end: float | None = None
    request_name: str = ""

    def active_at(self, now: float) -> bool:
        return self.start <= now and (self.end is None or now < self.end)


@dataclass
class ScheduleRequest:
    """A roleAssignmentScheduleRequest as it was accepted (refused requests are not stored, as in Azure)."""

    name: str
    scope: str
    principal_id: str
    principal_type: str
    role_definition_id: str
    request_type: str
    status: str
    requestor_id: str
    created_on: float
    start: float
    end: float | None
    expiration_type: str
    duration: str | None
    justification: str | None
    linked_eligibility: str | None = None  # the eligibility schedule's full id
    target_schedule: str | None = None  # the assignment schedule's full id
    approval_id: str | None = None
    ticket_info: dict[str, str | None] = field(default_factory=dict)
    approval_policy: str | None = None  # the role setting that asked for approval


@dataclass
class ActiveSchedule:
    """A roleAssignmentSchedule made by PIM (an activation, or an AdminAssign) and its role assignment."""

    name: str  # schedule GUID (also the instance's)
    request_name: str
    assignment: RoleAssignment  # the time-bound role assignment RBAC honours
    assignment_type: str  # "Activated" (SelfActivate) or "Assigned" (AdminAssign)
    created_on: float
    linked_eligibility: str | None = None
    ended: float | None = None  # deactivated or removed at (the assignment is gone from RBAC then)

    @property
    def start(self) -> float:
        return self.assignment.start or 0.0

    @property
    def end(self) -> float | None:
        return self.assignment.end

    def active_at(self, now: float) -> bool:
        return self.ended is None and self.assignment.active_at(now)


@dataclass
class PimStore:
    policies: list[RolePolicy]
    eligibilities: list[Eligibility]
    requests: dict[str, ScheduleRequest] = field(default_factory=dict)  # lower name -> request
    schedules: list[ActiveSchedule] = field(default_factory=list)

    def policy_for(self, scope: str, role_definition_id: str) -> RolePolicy:
        """The settings for a role at a scope: the seeded one, or PIM's default for that pair."""
        for policy in self.policies:
            if policy.scope.lower() == scope.rstrip("/").lower() and policy.role_definition_id == role_definition_id:
                return policy
        return default_policy(scope, role_definition_id)


def default_policy(scope: str, role_definition_id: str) -> RolePolicy:
    scope = scope.rstrip("/") or "/"
    return RolePolicy(stable_guid("rmp", scope.lower(), role_definition_id), scope, role_definition_id, default=True)


def eligibility_id(item: Eligibility) -> str:
    return f"{item.scope}/providers/Microsoft.Authorization/roleEligibilitySchedules/{item.name}"


def seed_pim() -> PimStore:
    def policy(scope: str, role: str, **settings: object) -> RolePolicy:
        return RolePolicy(stable_guid("rmp", scope.lower(), role), scope, role, **settings)  # type: ignore[arg-type]

    def eligible(tag: str, role: str, scope: str) -> Eligibility:
        return Eligibility(stable_guid("res", "reader", tag), stable_guid("resi", "reader", tag), READER_OID, "User",
                           role, scope, SEED_EPOCH, None, stable_guid("resr", "reader", tag))

    policies = [
        policy(PROD_APP, WEBSITE_CONTRIBUTOR, max_activation="PT1H"),
        policy(PROD_APP, CONTRIBUTOR, max_activation="PT2H", approval_required=True, approvers=(DEVELOPER_OID,)),
        policy(PROD_DATA, CONTRIBUTOR, max_activation="PT1H", mfa_required=True),
        policy(PROD_VAULT, KEY_VAULT_SECRETS_USER, max_activation="PT30M", authentication_context="c1"),
    ]
    eligibilities = [
        eligible("website-contributor", WEBSITE_CONTRIBUTOR, PROD_APP),
        eligible("contributor-approval", CONTRIBUTOR, PROD_APP),
        eligible("contributor-mfa", CONTRIBUTOR, PROD_DATA),
        eligible("secrets-user-acrs", KEY_VAULT_SECRETS_USER, PROD_VAULT),
    ]
    return PimStore(policies, eligibilities)
