"""Storage accounts: listing through ARM's generic resource list, keys through ``listKeys``."""

from __future__ import annotations

from azure_agent_mcp.tools.arm import plan_resource_list, resource_list
from azure_agent_mcp.tools.base import AzureTool, DeclaredOperation, PlannedRequest, ToolInputError, ToolOutput
from azure_agent_mcp.tools import arguments
from azure_agent_mcp.tools.clients import AzureSession
from azure_agent_mcp.tools.schemas import LISTING, OBJECTS, obj

STORAGE_TYPE = "Microsoft.Storage/storageAccounts"
STORAGE_API_VERSION = "2023-05-01"


def storage_account_list(
    azure: AzureSession, subscription: str | None = None, resource_group: str | None = None
) -> ToolOutput:
    listed = resource_list(azure, subscription=subscription, resource_group=resource_group, resource_type=STORAGE_TYPE, top=1000)
    items = listed.data["items"]
    return ToolOutput(f"{len(items)} storage account(s).", {"items": items})


def _plan_list(azure: AzureSession, subscription: str | None = None, resource_group: str | None = None) -> list[PlannedRequest]:
    return plan_resource_list(azure, subscription=subscription, resource_group=resource_group)


def _account_id(resource_id: str) -> str:
    parsed = arguments.resource_id(resource_id)
    if f"{parsed.namespace}/{parsed.resource_type}".lower() != STORAGE_TYPE.lower():
        raise ToolInputError(
            f"'{resource_id[:200]}' is not a storage account id.",
            hint="Pass the id of a Microsoft.Storage/storageAccounts resource, as storage_account_list returns it.",
        )
    return parsed.path


def storage_account_keys(azure: AzureSession, resource_id: str) -> ToolOutput:
    account = _account_id(resource_id)
    body = azure.arm("POST", account + "/listKeys", STORAGE_API_VERSION).body
    keys = body.get("keys", []) if isinstance(body, dict) else []
    return ToolOutput(f"{len(keys)} key(s) for {account.split('/')[-1]}.", {"resource_id": account, "keys": keys})


def _plan_keys(azure: AzureSession, resource_id: str) -> list[PlannedRequest]:
    return [PlannedRequest("POST", azure.arm_url(_account_id(resource_id) + "/listKeys", STORAGE_API_VERSION))]


TOOLS = (
    AzureTool(
        name="storage_account_list",
        description="Storage accounts in a subscription or resource group.",
        run=storage_account_list,
        plan=_plan_list,
        operations=(DeclaredOperation("Microsoft.Resources/subscriptions/resources/read"),),
        output_schema=LISTING,
    ),
    AzureTool(
        name="storage_account_keys",
        description="A storage account's access keys (secret-bearing).",
        run=storage_account_keys,
        plan=_plan_keys,
        operations=(DeclaredOperation("Microsoft.Storage/storageAccounts/listKeys/action"),),
        output_schema=obj(("keys",), keys=OBJECTS),  # each {keyName, value, permissions}
        read_only=False,
        idempotent=True,
        secret_bearing=True,
    ),
)
