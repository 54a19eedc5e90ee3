"""The seeded deployment history: template deployments at group and subscription scope, and their operations.

A deployment keeps what ARM's deployment history keeps, in ARM's shapes (``DeploymentExtended``,
``DeploymentOperation``). Values of ``secureString``/``secureObject`` parameters and outputs are
known here (the template evaluated them) but, as in Azure, never rendered: ARM does not record
them in the history, so ``to_arm`` gives their type only. A plain ``String`` output is rendered with
its value whatever it holds, which is how a template author leaks a ``listKeys()`` result, and why
the product withholds output values by where they stand rather than by name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from azure_agent_mcp.sandbox.principals import stable_guid

SECURE_TYPES = frozenset({"securestring", "secureobject"})


@dataclass(frozen=True)
class TemplateValue:
    type: str  # "String", "SecureString", "Object", ...
    value: Any

    def to_arm(self) -> dict[str, Any]:
        if self.type.lower() in SECURE_TYPES:
            return {"type": self.type}
        return {"type": self.type, "value": self.value}


@dataclass(frozen=True)
class DeploymentOperation:
    operation_id: str
    provisioning_operation: str  # "Create", "EvaluateDeploymentOutput", ...
    state: str
    status_code: str
    timestamp: str
    duration: str
    target: tuple[str, str] | None = None  # (resource id, resource type)
    error: tuple[str, str] | None = None  # (code, message) of a failed operation

    def to_arm(self, deployment_id: str) -> dict[str, Any]:
        props: dict[str, Any] = {
            "provisioningOperation": self.provisioning_operation,
            "provisioningState": self.state,
            "timestamp": self.timestamp,
            "duration": self.duration,
            "trackingId": stable_guid("tracking", deployment_id, self.operation_id),
            "serviceRequestId": stable_guid("request", deployment_id, self.operation_id),
            "statusCode": self.status_code,
        }
        if self.error is not None:
            props["statusMessage"] = {"status": "Failed", "error": {"code": self.error[0], "message": self.error[1]}}
        if self.target is not None:
            rid, rtype = self.target
            props["targetResource"] = {"id": rid, "resourceType": rtype, "resourceName": rid.rsplit("/", 1)[1]}
        return {"id": f"{deployment_id}/operations/{self.operation_id}", "operationId": self.operation_id,
                "properties": props}


@dataclass
class Deployment:
    scope: str  # the resource group id or the subscription id it was deployed at
    name: str
    state: str
    timestamp: str
    duration: str
    location: str | None = None  # subscription-scope deployments have one
    parameters: dict[str, TemplateValue] = field(default_factory=dict)
    outputs: dict[str, TemplateValue] = field(default_factory=dict)
    output_resources: list[str] = field(default_factory=list)
    operations: list[DeploymentOperation] = field(default_factory=list)
    error: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.scope}/providers/Microsoft.Resources/deployments/{self.name}"

    @property
    def at_subscription(self) -> bool:
        return "/resourcegroups/" not in self.scope.lower()

    def to_arm(self) -> dict[str, Any]:
        types = sorted({op.target[1] for op in self.operations if op.target is not None})
        props: dict[str, Any] = {
            "templateHash": str(int(hashlib.sha256(self.id.lower().encode()).hexdigest()[:15], 16)),
            "parameters": {name: value.to_arm() for name, value in self.parameters.items()},
            "mode": "Incremental",
            "provisioningState": self.state,
            "timestamp": self.timestamp,
            "duration": self.duration,
            "correlationId": stable_guid("deployment", self.id.lower()),
            "providers": [
                {"namespace": t.split("/", 1)[0],
                 "resourceTypes": [{"resourceType": t.split("/", 1)[1], "locations": [self.location or "eastus"]}]}
                for t in types
            ],
            "dependencies": [],
            "outputResources": [{"id": rid} for rid in self.output_resources],
        }
        if self.state == "Succeeded":
            props["outputs"] = {name: value.to_arm() for name, value in self.outputs.items()}
        if self.error is not None:
            props["error"] = self.error
        body: dict[str, Any] = {"id": self.id, "name": self.name, "type": "Microsoft.Resources/deployments"}
        if self.location:
            body["location"] = self.location
        body["properties"] = props
        return body


def _operation_id(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16].upper()


def seed_deployments(subscription: str, app_group: str, network_group: str, storage_key: str,
                     sql_password: str) -> dict[str, Deployment]:
    """Three deployments: one that succeeded (with a leaked key output and a secure one), one that failed,
    and one at subscription scope. Keys are lower-cased deployment ids."""
    storage_id = f"{app_group}/providers/Microsoft.Storage/storageAccounts/stprodapp01"
    plan_id = f"{app_group}/providers/Microsoft.Web/serverFarms/plan-orders-prod"
    site_id = f"{app_group}/providers/Microsoft.Web/sites/app-orders-prod"
    connection = ("DefaultEndpointsProtocol=https;AccountName=stprodapp01;AccountKey=" + storage_key
                  + ";EndpointSuffix=core.windows.net")
    storage = Deployment(
        app_group, "deploy-orders-storage", "Succeeded", "2026-11-30T08:00:00.0000000Z", "PT41.2337516S",
        parameters={"storageAccountName": TemplateValue("String", "stprodapp01"),
                    "skuName": TemplateValue("String", "Standard_LRS")},
        outputs={
            # what a template author can do with listKeys(): a plain string output, stored in the history
            "storageKey": TemplateValue("String", storage_key),
            "blobEndpoint": TemplateValue("String", "https://stprodapp01.blob.core.windows.net/"),
            # the right way: a secure output, which ARM never records
            "storageConnection": TemplateValue("SecureString", connection),
        },
        output_resources=[storage_id],
        operations=[
            DeploymentOperation(_operation_id("storage", "create"), "Create", "Succeeded", "OK",
                                "2026-11-30T08:00:38.1000000Z", "PT35.8S", (storage_id, "Microsoft.Storage/storageAccounts")),
            DeploymentOperation(_operation_id("storage", "outputs"), "EvaluateDeploymentOutput", "Succeeded", "OK",
                                "2026-11-30T08:00:41.2000000Z", "PT0.4S"),
        ],
    )
    web = Deployment(
        app_group, "deploy-orders-web", "Failed", "2026-11-30T09:15:00.0000000Z", "PT1M12.5S",
        parameters={"siteName": TemplateValue("String", "app-orders-prod"),
                    "sqlAdminPassword": TemplateValue("SecureString", sql_password)},
        output_resources=[plan_id],
        operations=[
            DeploymentOperation(_operation_id("web", "plan"), "Create", "Succeeded", "OK",
                                "2026-11-30T09:14:20.0000000Z", "PT20.1S", (plan_id, "Microsoft.Web/serverFarms")),
            DeploymentOperation(_operation_id("web", "site"), "Create", "Failed", "Conflict",
                                "2026-11-30T09:15:00.0000000Z", "PT40.3S", (site_id, "Microsoft.Web/sites"),
                                ("WebsiteAlreadyExists", "Website with given name app-orders-prod already exists.")),
        ],
        error={
            "code": "DeploymentFailed",
            "target": f"{app_group}/providers/Microsoft.Resources/deployments/deploy-orders-web",
            "message": "At least one resource deployment operation failed. Please list deployment operations for "
                       "details. Please see https://aka.ms/arm-deployment-operations for usage details.",
            "details": [{"code": "Conflict",
                         "message": "Website with given name app-orders-prod already exists."}],
        },
    )
    sub_scope = f"/subscriptions/{subscription}"
    baseline = Deployment(
        sub_scope, "deploy-platform-baseline", "Succeeded", "2026-11-29T17:30:00.0000000Z", "PT18.9S",
        location="eastus",
        parameters={"environment": TemplateValue("String", "prod")},
        outputs={"networkGroupId": TemplateValue("String", network_group)},
        output_resources=[network_group],
        operations=[
            DeploymentOperation(_operation_id("baseline", "group"), "Create", "Succeeded", "Created",
                                "2026-11-29T17:30:15.0000000Z", "PT2.7S",
                                (network_group, "Microsoft.Resources/resourceGroups")),
        ],
    )
    return {d.id.lower(): d for d in (storage, web, baseline)}
