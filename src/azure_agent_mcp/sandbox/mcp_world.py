"""The seeded registrations a team-hosted MCP server needs: its own API app, a public client, consents.

Why each exists:

- the **MCP server app** is a confidential client that exposes an API (app id URI
  ``api://<client-id>``, one delegated scope ``user_impersonation``, Entra's default name). MCP
  clients get user tokens for it; the server presents them in the on-behalf-of grant to get ARM and
  Key Vault tokens for the same user. It authenticates with its secret, a registered certificate,
  or a federated credential trusting the automation service principal's exchange tokens;
- the **MCP public client** is what MCP clients sign in with: authorization code with PKCE to a
  loopback redirect URI (any port, as Entra allows for loopback), or device code. The server app
  pre-authorizes it, so signing in to the server's API asks no consent;
- **consents**: the developer and the reader have consented to the server app calling ARM, Key
  Vault, Log Analytics and Azure DevOps on their behalf; the **newcomer** (Reader on Sandbox Production, like the reader) has not,
  so an on-behalf-of request for them fails with AADSTS65001 until consent is granted.
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.sandbox.principals import (
    DEVELOPER_OID,
    MCP_PUBLIC_CLIENT_ID,
    MCP_SERVER_CLIENT_ID,
    MCP_SERVER_OBJECT_ID,
    NEWCOMER_OID,
    PUBLIC_CLIENT_ID,
    READER_OID,
    SP_OBJECT_ID,
    TENANT_DOMAIN,
    Consent,
    PublicClient,
    SeedCredentials,
    ServicePrincipal,
    User,
    stable_guid,
)
from azure_agent_mcp.sandbox.rbac import READER, RoleAssignment

MCP_SERVER_SCOPE_NAME = "user_impersonation"
MCP_SERVER_APP_ID_URI = f"api://{MCP_SERVER_CLIENT_ID}"
MCP_SERVER_SCOPE = f"{MCP_SERVER_APP_ID_URI}/{MCP_SERVER_SCOPE_NAME}"
LOOPBACK_REDIRECTS = ("http://localhost", "http://127.0.0.1", "http://localhost/callback",
                      "http://127.0.0.1/callback")
# Resources the server app has delegated permissions for (its "API permissions"), lower case.
ARM_RESOURCE = "https://management.azure.com"
VAULT_RESOURCE = "https://vault.azure.net"
LOGS_RESOURCE = "https://api.loganalytics.io"  # log_query through on-behalf-of
DEVOPS_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"  # Azure DevOps, named by its application id
SERVER_APP_RESOURCES = (ARM_RESOURCE, VAULT_RESOURCE, LOGS_RESOURCE, DEVOPS_RESOURCE)
CONSENTED_USERS = (DEVELOPER_OID, READER_OID)


def mcp_principals(creds: SeedCredentials, subscription: str) -> tuple[
        list[ServicePrincipal], list[PublicClient], list[User], list[RoleAssignment], list[Consent]]:
    server = ServicePrincipal(
        "mcp-server", MCP_SERVER_CLIENT_ID, MCP_SERVER_OBJECT_ID, creds.mcp_server_secret, "Azure Agent MCP Server",
        kind="api", federated_subjects=(SP_OBJECT_ID,), app_id_uris=(MCP_SERVER_APP_ID_URI,),
        api_scopes=(MCP_SERVER_SCOPE_NAME,),
    )
    public_clients = [
        PublicClient(PUBLIC_CLIENT_ID, "Sandbox CLI", LOOPBACK_REDIRECTS),
        PublicClient(MCP_PUBLIC_CLIENT_ID, "Azure Agent MCP Client", LOOPBACK_REDIRECTS),
    ]
    newcomer = User("newcomer", f"newcomer@{TENANT_DOMAIN}", NEWCOMER_OID, creds.newcomer_password,
                    "Sandbox Newcomer", "Reader on Sandbox Production (no consent for the MCP server app)")
    assignments = [RoleAssignment(stable_guid("ra", "newcomer", "A"), NEWCOMER_OID, "User", READER,
                                  f"/subscriptions/{subscription}")]
    consents = [Consent(user, MCP_SERVER_CLIENT_ID, resource)
                for user in CONSENTED_USERS for resource in SERVER_APP_RESOURCES]
    return [server], public_clients, [newcomer], assignments, consents


def consents_listing(world: Any) -> list[dict[str, str]]:
    """The consents, for the manifest and the admin API: who let which app call what."""
    names = {u.object_id: u.upn for u in world.users}
    return sorted(({"user": names.get(c.user_oid, c.user_oid), "object_id": c.user_oid, "client_id": c.client_id,
                    "resource": c.resource} for c in world.consents),
                  key=lambda c: (c["user"], c["client_id"], c["resource"]))


def consent_resource(resource: str) -> str:
    """The resource a consent is recorded for: ARM answers to two identifiers, one permission grant."""
    lowered = resource.lower().rstrip("/")
    return ARM_RESOURCE if lowered == "https://management.core.windows.net" else lowered
