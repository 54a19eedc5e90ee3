"""Where Azure is: endpoints, audiences and the CA to trust.

One value object shared by the credentials (authority), the SDK clients (ARM, vault and Log
Analytics endpoints)
and the policy's operation mapper (which hosts are Azure at all). Built either for the public cloud
or from a sandbox manifest (``sandbox.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


PUBLIC_LOGS_ENDPOINT = "https://api.loganalytics.io"
PUBLIC_DEVOPS_ENDPOINT = "https://dev.azure.com"
PUBLIC_DEVOPS_VSSPS_ENDPOINT = "https://vssps.dev.azure.com"
DEVOPS_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
"""Azure DevOps' application id: its token audience, and the resource of its ``/.default`` scope."""


@dataclass(frozen=True)
class AzureEnvironment:
    name: str
    authority_host: str
    arm_endpoint: str
    arm_audience: str
    keyvault_url_template: str
    keyvault_audience: str
    tenant_id: str | None = None
    ca_bundle: str | None = None
    default_subscription: str | None = None
    verify_challenge_resource: bool = True
    logs_endpoint: str = PUBLIC_LOGS_ENDPOINT
    """Log Analytics' query API, without its ``/v1`` (a host of its own in Azure; a path in the sandbox)."""
    logs_audience: str = PUBLIC_LOGS_ENDPOINT
    devops_endpoint: str = PUBLIC_DEVOPS_ENDPOINT
    """Azure DevOps' REST host; the organization is the first path segment (``{endpoint}/{org}``)."""
    devops_vssps_endpoint: str = PUBLIC_DEVOPS_VSSPS_ENDPOINT
    """Azure DevOps' identity and token host (personal access tokens live there)."""
    devops_audience: str = DEVOPS_RESOURCE
    manifest: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def arm_scope(self) -> str:
        return self.arm_audience.rstrip("/") + "/.default"

    @property
    def keyvault_scope(self) -> str:
        return self.keyvault_audience.rstrip("/") + "/.default"

    @property
    def logs_scope(self) -> str:
        return self.logs_audience.rstrip("/") + "/.default"

    @property
    def devops_scope(self) -> str:
        return self.devops_audience.rstrip("/") + "/.default"

    def vault_url(self, vault: str) -> str:
        return self.keyvault_url_template.format(vault=vault)

    @property
    def connection_verify(self) -> str | bool:
        """What to pass as azure-core's ``connection_verify`` / requests' ``verify``."""
        return self.ca_bundle or True

    @property
    def is_sandbox(self) -> bool:
        return self.manifest is not None


def public_cloud(tenant_id: str | None = None, subscription: str | None = None) -> AzureEnvironment:
    return AzureEnvironment(
        name="AzureCloud",
        authority_host="https://login.microsoftonline.com",
        arm_endpoint="https://management.azure.com",
        arm_audience="https://management.azure.com/",
        keyvault_url_template="https://{vault}.vault.azure.net",
        keyvault_audience="https://vault.azure.net",
        tenant_id=tenant_id,
        default_subscription=subscription,
    )


def from_manifest(manifest: dict[str, Any] | str | Path, subscription: str | None = None) -> AzureEnvironment:
    """The environment of a running sandbox, from its manifest dict or the path of its ``sandbox.json``."""
    if not isinstance(manifest, dict):
        manifest = json.loads(Path(manifest).read_text(encoding="utf-8"))
    subscriptions = manifest.get("subscriptions") or []
    default_sub = subscription or (subscriptions[0]["id"] if subscriptions else None)
    return AzureEnvironment(
        name="sandbox",
        authority_host=manifest["authority_host"],
        arm_endpoint=manifest["arm_endpoint"],
        arm_audience=manifest["arm_audience"],
        keyvault_url_template=manifest["keyvault_endpoint"],
        keyvault_audience=manifest["keyvault_audience"],
        tenant_id=manifest["tenant_id"],
        ca_bundle=manifest["ca_bundle"],
        default_subscription=default_sub,
        # The sandbox's vaults live under one loopback host, so the vault host cannot end with
        # the challenge resource's domain as it does in Azure (kv.vault.azure.net).
        verify_challenge_resource=False,
        logs_endpoint=manifest.get("logs_endpoint") or PUBLIC_LOGS_ENDPOINT,
        logs_audience=manifest.get("logs_audience") or PUBLIC_LOGS_ENDPOINT,
        devops_endpoint=manifest.get("devops_endpoint") or PUBLIC_DEVOPS_ENDPOINT,
        devops_vssps_endpoint=manifest.get("devops_vssps_endpoint") or PUBLIC_DEVOPS_VSSPS_ENDPOINT,
        manifest=manifest,
    )
