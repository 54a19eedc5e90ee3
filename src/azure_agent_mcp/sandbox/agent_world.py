"""The seeded Microsoft Entra Agent ID principals: a blueprint, its agent identity and agent user, a project app.

Why each exists:

- the **agent identity blueprint** is the only thing holding credentials (a client secret, certificates
  registered through the admin API, and a federated identity credential trusting the automation
  service principal's exchange tokens, which is how a managed identity authenticates a blueprint);
- the **agent identity** is a service principal with no credentials at all: only its blueprint can
  impersonate it, through an exchange token (``fmi_path``). As in Entra, its app id and object id
  are the same GUID;
- the **agent user** is a user account that only that agent identity may act as (``user_fic``);
- the shared **project identity** is an ordinary app that published agents have been seen to
  authenticate as instead of their own identity; the wrong-identity switch hands its tokens out so
  identity pinning can be tested.

The blueprint is Owner of the orders app's resource group: it hands the short-lived agent identities it
creates through Microsoft Graph (``graph_agents``) their time-bound role assignments there.

The agent identity, the agent user and the project identity are Readers on subscription A, so ARM
reads succeed for all of them: a wrong identity is invisible at the resource unless someone checks
the token's ``appid`` (which is the point of pinning).
"""

from __future__ import annotations

from azure_agent_mcp.sandbox.principals import (
    SP_OBJECT_ID,
    TENANT_DOMAIN,
    SeedCredentials,
    ServicePrincipal,
    User,
    stable_guid,
)
from azure_agent_mcp.sandbox.rbac import OWNER, READER, RoleAssignment

BLUEPRINT_CLIENT_ID = "5a1db0c5-b1e0-4000-a000-000000000b01"
BLUEPRINT_OBJECT_ID = "5a1db0c5-b1e0-4000-a000-000000000b02"
AGENT_IDENTITY_ID = "5a1db0c5-a9e0-4000-a000-000000000a11"  # app id == object id
AGENT_USER_OBJECT_ID = "5a1db0c5-a9e0-4000-a000-000000000a12"
AGENT_USER_NAME = "agent-orders"
PROJECT_CLIENT_ID = "5a1db0c5-9e0c-4000-a000-000000000c21"
PROJECT_OBJECT_ID = "5a1db0c5-9e0c-4000-a000-000000000c22"

EPHEMERAL_ROLE_GROUP = "rg-prod-app"
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
TOKEN_EXCHANGE_SCOPE = TOKEN_EXCHANGE_AUDIENCE + "/.default"


def agent_principals(creds: SeedCredentials,
                     subscription: str) -> tuple[list[ServicePrincipal], list[User], list[RoleAssignment]]:
    blueprint = ServicePrincipal(
        "agent-blueprint", BLUEPRINT_CLIENT_ID, BLUEPRINT_OBJECT_ID, creds.blueprint_secret,
        "Orders Agent Blueprint", kind="agent_blueprint", federated_subjects=(SP_OBJECT_ID,),
        # admin-granted: the blueprint creates and deletes its own agent identities through Microsoft Graph
        directory={"app_roles": {"https://graph.microsoft.com": ["AgentIdentity.CreateAsManager"]}},
    )
    agent = ServicePrincipal(
        "agent-identity", AGENT_IDENTITY_ID, AGENT_IDENTITY_ID, "", "Orders Agent",
        kind="agent_identity", parent_app_id=BLUEPRINT_CLIENT_ID,
    )
    project = ServicePrincipal("project", PROJECT_CLIENT_ID, PROJECT_OBJECT_ID, creds.project_secret,
                               "Shared Project Identity")
    agent_user = User(AGENT_USER_NAME, f"{AGENT_USER_NAME}@{TENANT_DOMAIN}", AGENT_USER_OBJECT_ID, "",
                      "Orders Agent (agent user)", "Reader on Sandbox Production", agent_identity_id=AGENT_IDENTITY_ID)
    scope = f"/subscriptions/{subscription}"
    assignments = [
        RoleAssignment(stable_guid("ra", "agent-identity", "A"), AGENT_IDENTITY_ID, "ServicePrincipal", READER, scope),
        RoleAssignment(stable_guid("ra", "agent-user", "A"), AGENT_USER_OBJECT_ID, "User", READER, scope),
        RoleAssignment(stable_guid("ra", "project", "A"), PROJECT_OBJECT_ID, "ServicePrincipal", READER, scope),
        # the blueprint gives its short-lived agent identities their time-bound roles (PIM AdminAssign) in the
        # orders app's group; in Azure a "Role Based Access Control Administrator" with a condition would do
        RoleAssignment(stable_guid("ra", "agent-blueprint", "rg-prod-app"), BLUEPRINT_OBJECT_ID, "ServicePrincipal",
                       OWNER, f"{scope}/resourceGroups/{EPHEMERAL_ROLE_GROUP}"),
    ]
    return [blueprint, agent, project], [agent_user], assignments
