"""PIM role settings: their ARM documents, and which of their rules a request breaks.

A refused request names the rules it broke the way PIM does (``The following policy rules failed:
["ExpirationRule","JustificationRule"]``); the rules are the policy's, so the caller can GET the
roleManagementPolicy and read what it requires.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from azure_agent_mcp.sandbox.pim_world import RolePolicy
from azure_agent_mcp.sandbox.rbac import BUILTIN_ROLES

MAX_JUSTIFICATION = 500  # PIM's limit on a justification's length


class PimRequestError(Exception):
    """PIM's refusal of a schedule request, in ARM's error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def policy_rules_failed(rules: list[str]) -> PimRequestError:
    return PimRequestError(400, "RoleAssignmentRequestPolicyValidationFailed",
                           "The following policy rules failed: " + json.dumps(rules, separators=(",", ":")))


def acrs_challenge(claim_value: str) -> PimRequestError:
    """Azure's refusal when the role setting asks for a Conditional Access authentication context.

    The message ends with the claims request (``&claims=...``) a client adds to its next token
    request, as Azure PowerShell surfaces it.
    """
    claims = json.dumps({"access_token": {"acrs": {"essential": True, "value": claim_value}}}, separators=(",", ":"))
    return PimRequestError(400, "RoleAssignmentRequestAcrsValidationFailed",
                           f"The role assignment request requires the Conditional Access authentication context "
                           f"'{claim_value}'; request a token with these claims and send the request again: "
                           f"&claims={quote(claims, safe='')}")


def activation_failures(policy: RolePolicy, duration_seconds: float | None, justification: str | None,
                        claims: dict[str, Any]) -> list[str]:
    """The end-user activation rules a SelfActivate breaks, in the order PIM lists them."""
    failed: list[str] = []
    if duration_seconds is None or duration_seconds > policy.max_activation_seconds:
        failed.append("ExpirationRule")
    if policy.justification_required and not (justification or "").strip():
        failed.append("JustificationRule")
    if policy.mfa_required and "mfa" not in _amr(claims):
        failed.append("MfaRule")
    return failed


def admin_assignment_failures(policy: RolePolicy, duration_seconds: float | None,
                              justification: str | None) -> list[str]:
    """The admin active-assignment rules an AdminAssign breaks (None = NoExpiration)."""
    failed: list[str] = []
    if duration_seconds is None:
        if policy.admin_expiration_required:
            failed.append("ExpirationRule")
    elif duration_seconds > policy.admin_assignment_max_seconds:
        failed.append("ExpirationRule")
    if policy.admin_justification_required and not (justification or "").strip():
        failed.append("JustificationRule")
    return failed


def has_context(claims: dict[str, Any], claim_value: str) -> bool:
    acrs = claims.get("acrs") or []
    if isinstance(acrs, str):
        acrs = [acrs]
    return claim_value in acrs


def _amr(claims: dict[str, Any]) -> list[str]:
    amr = claims.get("amr") or []
    return [amr] if isinstance(amr, str) else [str(a) for a in amr]


# -- documents ---------------------------------------------------------------------------------------


def role_definition_ref(scope: str, role_definition_id: str) -> str:
    parts = [p for p in scope.split("/") if p]
    prefix = f"/subscriptions/{parts[1]}" if len(parts) >= 2 and parts[0].lower() == "subscriptions" else ""
    return f"{prefix}/providers/Microsoft.Authorization/roleDefinitions/{role_definition_id}"


def policy_id(policy: RolePolicy) -> str:
    return f"{policy.scope.rstrip('/')}/providers/Microsoft.Authorization/roleManagementPolicies/{policy.name}"


def _target(caller: str, level: str) -> dict[str, Any]:
    return {"caller": caller, "operations": ["All"], "level": level, "targetObjects": None,
            "inheritableSettings": None, "enforcedSettings": None}


def policy_rules(policy: RolePolicy) -> list[dict[str, Any]]:
    enabled = [name for name, on in (("Justification", policy.justification_required),
                                     ("MultiFactorAuthentication", policy.mfa_required)) if on]
    return [
        {"isExpirationRequired": True, "maximumDuration": policy.max_activation, "id": "Expiration_EndUser_Assignment",
         "ruleType": "RoleManagementPolicyExpirationRule", "target": _target("EndUser", "Assignment")},
        {"enabledRules": enabled, "id": "Enablement_EndUser_Assignment",
         "ruleType": "RoleManagementPolicyEnablementRule", "target": _target("EndUser", "Assignment")},
        {"setting": {
            "isApprovalRequired": policy.approval_required,
            "isApprovalRequiredForExtension": False,
            "isRequestorJustificationRequired": True,
            "approvalMode": "SingleStage",
            "approvalStages": [{
                "approvalStageTimeOutInDays": 1,
                "isApproverJustificationRequired": True,
                "escalationTimeInMinutes": 0,
                "primaryApprovers": [{"id": a, "description": None, "isBackup": False, "userType": "User"}
                                     for a in policy.approvers],
                "isEscalationEnabled": False,
                "escalationApprovers": None,
            }],
        }, "id": "Approval_EndUser_Assignment", "ruleType": "RoleManagementPolicyApprovalRule",
            "target": _target("EndUser", "Assignment")},
        {"isEnabled": policy.authentication_context is not None, "claimValue": policy.authentication_context or "",
         "id": "AuthenticationContext_EndUser_Assignment",
         "ruleType": "RoleManagementPolicyAuthenticationContextRule", "target": _target("EndUser", "Assignment")},
        {"isExpirationRequired": policy.admin_expiration_required, "maximumDuration": policy.admin_assignment_max,
         "id": "Expiration_Admin_Assignment", "ruleType": "RoleManagementPolicyExpirationRule",
         "target": _target("Admin", "Assignment")},
        {"enabledRules": ["Justification"] if policy.admin_justification_required else [],
         "id": "Enablement_Admin_Assignment", "ruleType": "RoleManagementPolicyEnablementRule",
         "target": _target("Admin", "Assignment")},
        {"isExpirationRequired": False, "maximumDuration": "P365D", "id": "Expiration_Admin_Eligibility",
         "ruleType": "RoleManagementPolicyExpirationRule", "target": _target("Admin", "Eligibility")},
    ]


def policy_document(policy: RolePolicy) -> dict[str, Any]:
    rules = policy_rules(policy)
    role = BUILTIN_ROLES.get(policy.role_definition_id)
    return {
        "id": policy_id(policy),
        "name": policy.name,
        "type": "Microsoft.Authorization/RoleManagementPolicies",
        "properties": {
            "scope": policy.scope,
            "displayName": "Default" if policy.default else f"{role.name if role else 'Role'} settings",
            "description": "Default" if policy.default else "Role settings set for this role at this scope",
            "isOrganizationDefault": policy.default,
            "lastModifiedBy": None,
            "lastModifiedDateTime": None,
            "rules": rules,
            "effectiveRules": rules,
            "policyProperties": {"scope": {"id": policy.scope, "displayName": policy.scope.rsplit("/", 1)[-1] or "/",
                                           "type": scope_type(policy.scope)}},
        },
    }


def policy_assignment_document(policy: RolePolicy) -> dict[str, Any]:
    return {
        "id": f"{policy.scope.rstrip('/')}/providers/Microsoft.Authorization/roleManagementPolicyAssignments/"
              f"{policy.assignment_name}",
        "name": policy.assignment_name,
        "type": "Microsoft.Authorization/RoleManagementPolicyAssignment",
        "properties": {
            "scope": policy.scope,
            "roleDefinitionId": role_definition_ref(policy.scope, policy.role_definition_id),
            "policyId": policy_id(policy),
            "effectiveRules": policy_rules(policy),
        },
    }


def scope_type(scope: str) -> str:
    parts = [p for p in scope.split("/") if p]
    if not parts:
        return "managementgroup"
    if len(parts) == 2:
        return "subscription"
    if len(parts) == 4:
        return "resourcegroup"
    return "resource"
