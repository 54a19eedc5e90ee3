"""One HTTP request -> one decision, unmappable requests included (they are denied, with a reason).

An operation its namespace's published list does not name (``known_operations``) is refused by
the read-only policies: otherwise a typo or a trick in a path could become an allowed ``*/read``.
Other policies decide it as usual; the audit marks it either way.

A few operations act where their body says (a Resource Graph query names its subscriptions in
its JSON body): given the body, they are decided at every scope it names, and the most
restrictive decision wins; a body that cannot be read is refused (``body_scopes``). Without a
body argument (``policy explain --url``) they are decided at the URL's scope, ``/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from azure_agent_mcp.policy.body_scopes import BodyScopeError, body_scopes, is_body_scoped
from azure_agent_mcp.policy.devops_body_scopes import HINT as DEVOPS_HINT
from azure_agent_mcp.policy.devops_body_scopes import devops_body_scopes
from azure_agent_mcp.policy.effects import Decision, Effect
from azure_agent_mcp.policy.engine import decide
from azure_agent_mcp.policy.errors import UnmappableRequestError
from azure_agent_mcp.policy.known_operations import namespace_of, shipped_namespaces
from azure_agent_mcp.policy.model import Policy
from azure_agent_mcp.policy.operations import Endpoints, MappedRequest, map_request
from azure_agent_mcp.policy.profiles import READ_ONLY

UNMAPPABLE_RULE = "unmappable request"
UNKNOWN_OPERATION_RULE = "unknown_operation"
UNREADABLE_BODY_RULE = "unreadable request body"
NOT_GIVEN: Any = object()  # decide_request's body argument was not given: decide by the URL alone
_RESTRICTIVENESS = {Effect.DENY: 0, Effect.CONFIRM: 1, Effect.ALLOW: 2}


def refuses_unknown_operations(policy: Policy) -> bool:
    """The read-only profile, a file based on it (``Profile``) and any policy narrowed by --read-only."""
    return policy.read_only or (policy.builtin and policy.name == READ_ONLY) or policy.profile == READ_ONLY


def _unknown(policy: Policy, mapped: MappedRequest) -> Decision:
    listed = shipped_namespaces().get(namespace_of(mapped.operation).lower())
    if listed is not None:
        commit = str(listed.source.get("commit", ""))[:12]
        why = (f"{mapped.operation} is not an operation Azure publishes for {listed.namespace} (its published "
               f"operation list, azure-docs commit {commit}, does not name it)")
    else:  # a shape the mapper marks unknown whatever the namespace (a resource-centric log query)
        why = f"{mapped.operation} is not an operation Azure publishes"
    return Decision(
        effect=Effect.DENY,
        operation=mapped.operation,
        scope=mapped.scope,
        data_action=mapped.data_action,
        rule=UNKNOWN_OPERATION_RULE,
        policy=policy.name,
        reason=f"{why}, and policy '{policy.name}' refuses operations it cannot name.",
        hint="Check the path for a typo or a resource type that does not exist; "
        "azure-agent-mcp policy explain --url shows what a path maps to.",
    )


def _without_query(url: str, limit: int = 300) -> str:
    """The URL without query string or fragment (they may carry tokens), shortened for messages."""
    shown = url.split("?", 1)[0].split("#", 1)[0]
    return shown if len(shown) <= limit else shown[:limit] + "..."


def _unreadable(policy: Policy, mapped: MappedRequest, problem: str) -> Decision:
    hint = (DEVOPS_HINT if mapped.plane == "devops" else "Send a JSON object whose 'subscriptions' is a list of "
            "subscription GUIDs and/or whose 'managementGroups' is a list of management group names.")
    return Decision(
        effect=Effect.DENY,
        operation=mapped.operation,
        scope=mapped.scope,
        data_action=mapped.data_action,
        rule=UNREADABLE_BODY_RULE,
        policy=policy.name,
        reason=f"{mapped.operation} acts at the scopes its request body names, and the body cannot be read for "
        f"them: {problem}. The guard refuses what it cannot decide.",
        hint=hint,
    )


def _at_body_scopes(policy: Policy, mapped: MappedRequest, body: Any) -> tuple[Decision, MappedRequest]:
    try:
        if mapped.plane == "devops":
            scopes = devops_body_scopes(mapped.operation, mapped.scope, body)
        else:
            scopes = body_scopes(body)
    except BodyScopeError as exc:
        return _unreadable(policy, mapped, str(exc)), mapped
    decisions = [decide(policy, mapped.operation, scope, data_action=mapped.data_action) for scope in scopes]
    strictest = min(decisions, key=lambda d: _RESTRICTIVENESS[d.effect])  # the first of the most restrictive
    return strictest, replace(mapped, scopes=scopes)


def decide_request(
    policy: Policy,
    endpoints: Endpoints,
    method: str,
    url: str,
    body: Any = NOT_GIVEN,
    *,
    read_body: Callable[[], Any] | None = None,
) -> tuple[Decision, MappedRequest | None]:
    """The decision for one request; the body (``body`` as sent, or what ``read_body()`` returns, called only
    when needed: reading an azure-core request's body is not free) matters only for body-scoped operations."""
    try:
        mapped = map_request(method, url, endpoints)
    except UnmappableRequestError as exc:
        return (
            Decision(
                effect=Effect.DENY,
                operation=f"{method.upper()} {_without_query(exc.url)}",
                scope="",
                data_action=False,
                rule=UNMAPPABLE_RULE,
                policy=policy.name,
                reason=f"The request cannot be mapped to an Azure operation: {exc.problem}.",
                hint="Only requests to the configured ARM, Key Vault, Log Analytics and Azure DevOps endpoints, in shapes those "
                "services define, are sent.",
            ),
            None,
        )
    if (body is not NOT_GIVEN or read_body is not None) and is_body_scoped(mapped.operation):
        decision, mapped = _at_body_scopes(policy, mapped, body if body is not NOT_GIVEN else read_body())
    else:
        decision = decide(policy, mapped.operation, mapped.scope, data_action=mapped.data_action)
    if mapped.unknown_operation and decision.effect is not Effect.DENY and refuses_unknown_operations(policy):
        decision = _unknown(policy, mapped)
    return decision, mapped
