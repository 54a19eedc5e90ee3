"""One HTTP request -> one decision, unmappable requests included (they are denied, with a reason)."""

from __future__ import annotations

from azure_agent_mcp.policy.engine import Decision, Effect, decide
from azure_agent_mcp.policy.errors import UnmappableRequestError
from azure_agent_mcp.policy.model import Policy
from azure_agent_mcp.policy.operations import Endpoints, MappedRequest, map_request

UNMAPPABLE_RULE = "unmappable request"


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
                hint="Only requests to the configured ARM and Key Vault endpoints, in shapes ARM and Key Vault "
                "define, are sent.",
            ),
            None,
        )
    return decide(policy, mapped.operation, mapped.scope, data_action=mapped.data_action), mapped
