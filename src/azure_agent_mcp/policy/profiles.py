"""The built-in profiles (SPEC.md, "Built-in policy profiles") and the --read-only narrowing.

| profile        | allows                          | denies                                   | confirms                        |
|----------------|---------------------------------|------------------------------------------|---------------------------------|
| read-only      | */read, metadata DataActions    | every write/delete/action, secret-bearing | -                               |
| no-secrets     | everything else                 | secret-bearing (Deny wins over allow)    | */delete                        |
| unrestricted   | everything                      | -                                        | secret-bearing, */delete        |

They are ordinary policies built from the same model as a file, so ``policy show`` prints them
in the file format and an operator can start a custom policy from one.
"""

from __future__ import annotations

from dataclasses import replace

from azure_agent_mcp.policy.catalog import secret_patterns
from azure_agent_mcp.policy.model import PermissionBlock, Policy

READ_ONLY = "read-only"
NO_SECRETS = "no-secrets"
UNRESTRICTED = "unrestricted"
PROFILE_NAMES = (READ_ONLY, NO_SECRETS, UNRESTRICTED)
DEFAULT_PROFILE = READ_ONLY

READ_ACTIONS: tuple[str, ...] = ("*/read",)
# DataActions that describe data without returning it: names, attributes, public parts.
METADATA_DATA_ACTIONS: tuple[str, ...] = (
    "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
    "Microsoft.KeyVault/vaults/keys/read",
    "Microsoft.KeyVault/vaults/certificates/read",
    "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
)
DELETE_CONFIRM: tuple[str, ...] = ("*/delete",)


def _dedupe(patterns: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    out = []
    for p in patterns:
        if p.lower() not in seen:
            seen.add(p.lower())
            out.append(p)
    return tuple(out)


def builtin_profile(name: str) -> Policy:
    secrets = secret_patterns()
    if name == READ_ONLY:
        return Policy(
            name=READ_ONLY,
            source="builtin",
            role_name="azure-agent-mcp read-only",
            description="Reads only: */read and metadata DataActions; every write, delete, action and "
            "secret-bearing operation is denied.",
            blocks=(PermissionBlock(actions=READ_ACTIONS, data_actions=METADATA_DATA_ACTIONS),),
            deny=secrets,
        )
    if name == NO_SECRETS:
        return Policy(
            name=NO_SECRETS,
            source="builtin",
            role_name="azure-agent-mcp no-secrets",
            description="Everything except secret-bearing operations (Deny wins over allow); deletes need "
            "the user's confirmation.",
            blocks=(PermissionBlock(actions=("*",), data_actions=("*",)),),
            deny=secrets,
            confirm=DELETE_CONFIRM,
        )
    if name == UNRESTRICTED:
        return Policy(
            name=UNRESTRICTED,
            source="builtin",
            role_name="azure-agent-mcp unrestricted",
            description="Everything; secret-bearing operations and deletes need the user's confirmation.",
            blocks=(PermissionBlock(actions=("*",), data_actions=("*",)),),
            confirm=_dedupe((*secrets, *DELETE_CONFIRM)),
        )
    raise KeyError(name)


def narrow_read_only(policy: Policy) -> Policy:
    """``--read-only``: what ``policy`` allows, intersected with reads that carry no secret.

    The original permissions stay (they still have to allow the read); the narrowing adds the
    secret-bearing catalog to Deny and a read-only gate the engine applies after them.
    """
    if policy.read_only:
        return policy
    return replace(policy, deny=_dedupe((*policy.deny, *secret_patterns())), read_only=True)
