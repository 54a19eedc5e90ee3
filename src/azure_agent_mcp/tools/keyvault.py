"""Key Vault secrets: names and attributes freely (policy permitting), values only when the policy allows."""

from __future__ import annotations

import re
from typing import Any

from azure_agent_mcp.tools.base import AzureTool, DeclaredOperation, PlannedRequest, ToolInputError, ToolOutput
from azure_agent_mcp.tools.clients import AzureSession
from azure_agent_mcp.tools.schemas import LISTING, strings

_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
MAX_SECRETS_LISTED = 500


def _attributes(props: Any) -> dict[str, Any]:
    return {
        "name": props.name,
        "enabled": props.enabled,
        "content_type": props.content_type,
        "created_on": props.created_on.isoformat() if props.created_on else None,
        "updated_on": props.updated_on.isoformat() if props.updated_on else None,
        "expires_on": props.expires_on.isoformat() if props.expires_on else None,
        "tags": props.tags,
    }


def keyvault_secret_list(azure: AzureSession, vault: str) -> ToolOutput:
    client = azure.secrets(vault)
    items = []
    for props in client.list_properties_of_secrets():
        items.append(_attributes(props))
        if len(items) >= MAX_SECRETS_LISTED:
            break
    return ToolOutput(f"{len(items)} secret(s) in {vault} (names and attributes only).", {"vault": vault, "items": items})


def _plan_list(azure: AzureSession, vault: str) -> list[PlannedRequest]:
    return [PlannedRequest("GET", azure.vault_url(vault) + "/secrets?api-version=7.5")]


def _checked_name(name: str) -> str:
    if not _SECRET_NAME.fullmatch(name):
        raise ToolInputError(f"'{name[:60]}' is not a Key Vault secret name (1-127 letters, digits and hyphens).")
    return name


def keyvault_secret_get(azure: AzureSession, vault: str, name: str) -> ToolOutput:
    secret = azure.secrets(vault).get_secret(_checked_name(name))
    data = {"vault": vault, **_attributes(secret.properties), "value": secret.value}
    return ToolOutput(f"Secret {name} from {vault} (version {secret.properties.version}).", data)


def _plan_get(azure: AzureSession, vault: str, name: str) -> list[PlannedRequest]:
    return [PlannedRequest("GET", azure.vault_url(vault) + f"/secrets/{_checked_name(name)}?api-version=7.5")]


TOOLS = (
    AzureTool(
        name="keyvault_secret_list",
        description="A Key Vault's secret names and attributes, never values.",
        run=keyvault_secret_list,
        plan=_plan_list,
        operations=(DeclaredOperation("Microsoft.KeyVault/vaults/secrets/readMetadata/action", data_action=True),),
        output_schema=LISTING,
    ),
    AzureTool(
        name="keyvault_secret_get",
        description="A Key Vault secret's value (secret-bearing).",
        run=keyvault_secret_get,
        plan=_plan_get,
        operations=(DeclaredOperation("Microsoft.KeyVault/vaults/secrets/getSecret/action", data_action=True),),
        # value: the secret, or ***REDACTED*** where the policy withholds secrets
        output_schema=strings("name", "value", required=("name", "value")),
        secret_bearing=True,
    ),
)
