"""One HTTP request -> one decision, unmappable requests included (they are denied, with a reason).

An operation its namespace's published list does not name (``known_operations``) is refused by
the read-only policies: otherwise a typo or a trick in a path could become an allowed ``*/read``.
Other policies decide it as usual; the audit marks it either way.
"""

from __future__ import annotations

from azure_agent_mcp.policy.effects import Decision, Effect
from azure_agent_mcp.policy.engine import decide
from azure_agent_mcp.policy.errors import UnmappableRequestError
from azure_agent_mcp.policy.known_operations import namespace_of, shipped_namespaces
from azure_agent_mcp.policy.model import Policy
from azure_agent_mcp.policy.operations import Endpoints, MappedRequest, map_request
from azure_agent_mcp.policy.profiles import READ_ONLY

UNMAPPABLE_RULE = "unmappable request"
UNKNOWN_OPERATION_RULE = "unknown_operation"


def refuses_unknown_operations(policy: Policy) -> bool:
    """The read-only profile and any policy narrowed by --read-only."""
    return policy.read_only or (policy.builtin and policy.name == READ_ONLY)


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


def decide_request(
    policy: Policy, endpoints: Endpoints, method: str, url: str
) -> tuple[Decision, MappedRequest | None]:
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
                hint="Only requests to the configured ARM, Key Vault and Log Analytics endpoints, in shapes those "
                "services define, are sent.",
            ),
            None,
        )
    decision = decide(policy, mapped.operation, mapped.scope, data_action=mapped.data_action)
    if mapped.unknown_operation and decision.effect is not Effect.DENY and refuses_unknown_operations(policy):
        decision = _unknown(policy, mapped)
    return decision, mapped
