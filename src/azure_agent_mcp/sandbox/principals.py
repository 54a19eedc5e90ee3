"""Who exists in the sandbox's tenant: its fixed ids, the seed credentials, users and service principals.

These types sit below the world that seeds them and the Entra Agent ID principals added to it,
so neither of those imports the other.
"""

from __future__ import annotations

import secrets as _secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

TENANT_ID = "5a1db0c5-0000-4000-a000-000000000001"
TENANT_DOMAIN = "sandbox.onmicrosoft.com"
SUBSCRIPTION_A = "5a1db0c5-a000-4000-a000-00000000000a"
SUBSCRIPTION_B = "5a1db0c5-b000-4000-a000-00000000000b"
DEVELOPER_OID = "5a1db0c5-de00-4000-a000-000000000d01"
READER_OID = "5a1db0c5-4ead-4000-a000-000000000d02"
SP_CLIENT_ID = "5a1db0c5-a990-4000-a000-000000000a01"
SP_OBJECT_ID = "5a1db0c5-5900-4000-a000-000000000a02"
PUBLIC_CLIENT_ID = "5a1db0c5-c11e-4000-a000-000000000c01"
# The MCP server's own app registration (a confidential client exposing an API), the public client
# MCP clients sign in with, and a user who has not consented to the server app (see ``mcp_world``).
MCP_SERVER_CLIENT_ID = "5a1db0c5-3c90-4000-a000-000000000e01"
MCP_SERVER_OBJECT_ID = "5a1db0c5-3c90-4000-a000-000000000e02"
MCP_PUBLIC_CLIENT_ID = "5a1db0c5-c11e-4000-a000-000000000c02"
NEWCOMER_OID = "5a1db0c5-0e00-4000-a000-000000000d03"

SEED_TIME = "2024-01-15T09:30:00.0000000Z"
_NS = uuid.UUID("5a1db0c5-0000-4000-a000-00000000f00d")


def stable_guid(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


@dataclass(frozen=True)
class SeedCredentials:
    """Secrets minted once per sandbox start; reused by every reset."""

    developer_password: str
    reader_password: str
    sp_secret: str
    key_salt: str
    blueprint_secret: str = ""
    project_secret: str = ""
    mcp_server_secret: str = ""
    newcomer_password: str = ""

    @classmethod
    def generate(cls) -> SeedCredentials:
        return cls(
            developer_password="Dev-" + _secrets.token_urlsafe(12),
            reader_password="Rdr-" + _secrets.token_urlsafe(12),
            sp_secret="sp~" + _secrets.token_urlsafe(24),
            key_salt=_secrets.token_hex(16),
            blueprint_secret="bp~" + _secrets.token_urlsafe(24),
            project_secret="prj~" + _secrets.token_urlsafe(24),
            mcp_server_secret="mcp~" + _secrets.token_urlsafe(24),
            newcomer_password="New-" + _secrets.token_urlsafe(12),
        )


@dataclass
class User:
    name: str
    upn: str
    object_id: str
    password: str
    display_name: str
    roles: str
    # An agent user (Entra Agent ID): the agent identity that alone may act as it (user_fic grant).
    agent_identity_id: str | None = None


@dataclass
class ServicePrincipal:
    name: str
    client_id: str
    object_id: str
    client_secret: str
    display_name: str
    # Registered certificates for client assertions: {sha1_hex, sha256_hex, public_key_pem}.
    certificates: list[dict[str, str]] = field(default_factory=list)
    # "application", "agent_blueprint" or "agent_identity" (Entra Agent ID).
    kind: str = "application"
    # Agent identities: the app id of the blueprint that alone may impersonate it.
    parent_app_id: str | None = None
    # Federated identity credentials: subjects (``sub``) of sandbox-issued exchange tokens accepted as
    # this app's client assertion (how a managed identity authenticates a blueprint).
    federated_subjects: tuple[str, ...] = ()
    # An app that exposes an API ("Expose an API" in the portal): its app id URIs and delegated scopes.
    app_id_uris: tuple[str, ...] = ()
    api_scopes: tuple[str, ...] = ()
    # What Microsoft Graph shows of a directory object beyond the above (agent identities made through
    # ``graph_agents``: tags, sponsors, createdDateTime, createdByAppId).
    directory: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PublicClient:
    """A public client registration: no credential, redirect URIs only (loopback ones match any port)."""

    client_id: str
    display_name: str
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class Consent:
    """A user's delegated consent for one client app to call one resource (Entra's oauth2PermissionGrant).

    ``resource`` is the resource's identifier as requested, lower case without trailing slash
    (``https://management.azure.com``).
    """

    user_oid: str
    client_id: str
    resource: str
