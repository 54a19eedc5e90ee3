"""The seed world: one tenant, two subscriptions, their groups, resources, secrets and people.

GUIDs are fixed (prefix ``5a1db0c5``) so documentation and tests can cite them; passwords and the
service principal's secret are minted per sandbox start and published only in ``sandbox.json``.
``reset()`` rebuilds this world from scratch with the same credentials.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from azure_agent_mcp.sandbox.principals import (  # noqa: F401  (re-exported: the world's ids and principals)
    DEVELOPER_OID,
    PUBLIC_CLIENT_ID,
    READER_OID,
    SEED_TIME,
    SP_CLIENT_ID,
    SP_OBJECT_ID,
    SUBSCRIPTION_A,
    SUBSCRIPTION_B,
    TENANT_DOMAIN,
    TENANT_ID,
    Consent,
    PublicClient,
    SeedCredentials,
    ServicePrincipal,
    User,
    stable_guid,
)
from azure_agent_mcp.sandbox.agent_world import agent_principals
from azure_agent_mcp.sandbox.mcp_world import mcp_principals
from azure_agent_mcp.sandbox.deployment_world import Deployment, seed_deployments
from azure_agent_mcp.sandbox.rbac import (
    CONTRIBUTOR,
    KEY_VAULT_SECRETS_OFFICER,
    OWNER,
    READER,
    RoleAssignment,
)

@dataclass
class SecretVersion:
    version: str
    value: str
    created: int
    updated: int
    enabled: bool = True
    content_type: str | None = None
    tags: dict[str, str] | None = None


@dataclass
class DeletedSecret:
    versions: list[SecretVersion]
    deleted_date: int
    scheduled_purge_date: int


@dataclass
class Vault:
    name: str
    subscription: str
    resource_group: str
    resource_id: str
    secrets: dict[str, list[SecretVersion]] = field(default_factory=dict)  # lower name -> versions
    secret_names: dict[str, str] = field(default_factory=dict)  # lower -> display name
    deleted: dict[str, DeletedSecret] = field(default_factory=dict)


@dataclass
class World:
    origin: str
    tenant_id: str
    subscriptions: dict[str, str]  # id -> display name, in order (A first)
    groups: dict[str, dict[str, Any]]  # lower id -> ARM resource group
    resources: dict[str, dict[str, Any]]  # lower id -> ARM resource (top-level and listed nested)
    children: dict[str, dict[str, Any]]  # lower id -> child resources (GET only, not listed)
    keys: dict[str, list[dict[str, str]]]  # lower storage id -> listKeys entries
    app_settings: dict[str, dict[str, str]]  # lower site id -> settings
    connection_strings: dict[str, dict[str, dict[str, str]]]  # lower site id -> {name: {value, type}}
    vaults: dict[str, Vault]  # lower vault name -> vault
    users: list[User]
    service_principals: list[ServicePrincipal]
    role_assignments: list[RoleAssignment]
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)  # pending async operations
    agent_users: list[User] = field(default_factory=list)  # Entra Agent ID users: no password, no sign-in
    public_clients: list[PublicClient] = field(default_factory=list)
    consents: set[Consent] = field(default_factory=set)
    deployments: dict[str, Deployment] = field(default_factory=dict)  # lower deployment id -> deployment

    def public_client(self, client_id: str) -> PublicClient | None:
        for client in self.public_clients:
            if client.client_id.lower() == client_id.lower():
                return client
        return None

    def api_app(self, resource: str) -> ServicePrincipal | None:
        """The app exposing an API under this identifier (an app id URI, or its client id), if any."""
        lowered = resource.lower().rstrip("/")
        for sp in self.service_principals:
            if sp.api_scopes and (lowered == sp.client_id.lower() or lowered in (u.lower() for u in sp.app_id_uris)):
                return sp
        return None

    def user_by_oid(self, oid: str) -> User | None:
        for user in self.users:
            if user.object_id.lower() == oid.lower():
                return user
        return None

    def agent_user(self, upn: str | None = None, object_id: str | None = None) -> User | None:
        for user in self.agent_users:
            if (upn and user.upn.lower() == upn.lower()) or (object_id and user.object_id.lower() == object_id.lower()):
                return user
        return None

    def vault_url(self, name: str) -> str:
        return f"{self.origin}/vaults/{name}"

    def user_by_upn(self, upn: str) -> User | None:
        lowered = upn.lower()
        for user in self.users:
            if user.upn.lower() == lowered or user.name == lowered:
                return user
        return None

    def sp_by_client_id(self, client_id: str) -> ServicePrincipal | None:
        for sp in self.service_principals:
            if sp.client_id.lower() == client_id.lower():
                return sp
        return None

    def principal_name(self, object_id: str) -> str | None:
        for user in self.users:
            if user.object_id == object_id:
                return user.upn
        for sp in self.service_principals:
            if sp.object_id == object_id:
                return sp.client_id
        for user in self.agent_users:
            if user.object_id == object_id:
                return user.upn
        return None


def _storage_key(salt: str, account: str, key_name: str) -> str:
    return base64.b64encode(hashlib.sha512(f"{salt}/{account}/{key_name}".encode()).digest()[:64]).decode()


class _Builder:
    def __init__(self, origin: str, creds: SeedCredentials) -> None:
        self.origin = origin
        self.creds = creds
        self.groups: dict[str, dict[str, Any]] = {}
        self.resources: dict[str, dict[str, Any]] = {}
        self.children: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, list[dict[str, str]]] = {}
        self.app_settings: dict[str, dict[str, str]] = {}
        self.connection_strings: dict[str, dict[str, dict[str, str]]] = {}
        self.vaults: dict[str, Vault] = {}

    def group(self, sub: str, name: str, location: str, tags: dict[str, str] | None = None) -> str:
        gid = f"/subscriptions/{sub}/resourceGroups/{name}"
        self.groups[gid.lower()] = {
            "id": gid,
            "name": name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": location,
            "tags": tags or {},
            "properties": {"provisioningState": "Succeeded"},
        }
        return gid

    def resource(
        self,
        group_id: str,
        rtype: str,
        name: str,
        location: str,
        properties: dict[str, Any] | None = None,
        *,
        sku: dict[str, Any] | None = None,
        kind: str | None = None,
        tags: dict[str, str] | None = None,
        child: bool = False,
    ) -> str:
        namespace, *types = rtype.split("/")
        names = name.split("/")
        path = f"{group_id}/providers/{namespace}"
        for t, n in zip(types, names):
            path += f"/{t}/{n}"
        body: dict[str, Any] = {"id": path, "name": names[-1] if child else name, "type": rtype, "location": location}
        if tags is not None or not child:
            body["tags"] = tags or {}
        if sku is not None:
            body["sku"] = sku
        if kind is not None:
            body["kind"] = kind
        props = {"provisioningState": "Succeeded"}
        props.update(properties or {})
        body["properties"] = props
        (self.children if child else self.resources)[path.lower()] = body
        return path

    def storage(self, group_id: str, name: str, location: str, tags: dict[str, str] | None = None,
                min_tls: str = "TLS1_2") -> str:
        rid = self.resource(
            group_id,
            "Microsoft.Storage/storageAccounts",
            name,
            location,
            {
                "creationTime": "2024-01-15T09:30:00.0000000Z",
                "primaryLocation": location,
                "statusOfPrimary": "available",
                "accessTier": "Hot",
                "supportsHttpsTrafficOnly": True,
                "minimumTlsVersion": min_tls,
                "allowBlobPublicAccess": False,
                "allowSharedKeyAccess": True,
                "primaryEndpoints": {
                    "blob": f"https://{name}.blob.core.windows.net/",
                    "queue": f"https://{name}.queue.core.windows.net/",
                    "table": f"https://{name}.table.core.windows.net/",
                    "file": f"https://{name}.file.core.windows.net/",
                },
            },
            sku={"name": "Standard_LRS", "tier": "Standard"},
            kind="StorageV2",
            tags=tags,
        )
        self.resource(group_id, "Microsoft.Storage/storageAccounts/blobServices", f"{name}/default", location,
                      {"deleteRetentionPolicy": {"enabled": True, "days": 7}}, child=True)
        self.keys[rid.lower()] = [
            {"keyName": k, "value": _storage_key(self.creds.key_salt, name, k), "permissions": "FULL",
             "creationTime": "2024-01-15T09:30:00.0000000Z"}
            for k in ("key1", "key2")
        ]
        return rid

    def vault(self, sub: str, group: str, group_id: str, name: str, location: str,
              secrets: dict[str, str]) -> str:
        rid = self.resource(
            group_id,
            "Microsoft.KeyVault/vaults",
            name,
            location,
            {
                "tenantId": TENANT_ID,
                "sku": {"family": "A", "name": "standard"},
                "vaultUri": f"{self.origin}/vaults/{name}/",
                "enableRbacAuthorization": True,
                "enableSoftDelete": True,
                "softDeleteRetentionInDays": 90,
                "accessPolicies": [],
                "publicNetworkAccess": "Enabled",
            },
            tags={"env": "prod" if sub == SUBSCRIPTION_A else "dev"},
        )
        vault = Vault(name, sub, group, rid)
        for index, (secret_name, value) in enumerate(secrets.items()):
            created = 1705311000 + index * 60
            vault.secrets[secret_name.lower()] = [
                SecretVersion(stable_guid(name, secret_name, "v1").replace("-", ""), value, created, created,
                              content_type="text/plain")
            ]
            vault.secret_names[secret_name.lower()] = secret_name
        self.vaults[name.lower()] = vault
        return rid

    def web_app(self, group_id: str, name: str, plan_id: str, location: str, settings: dict[str, str],
                connection_strings: dict[str, dict[str, str]]) -> str:
        rid = self.resource(
            group_id,
            "Microsoft.Web/sites",
            name,
            location,
            {
                "state": "Running",
                "hostNames": [f"{name}.azurewebsites.net"],
                "defaultHostName": f"{name}.azurewebsites.net",
                "serverFarmId": plan_id,
                "httpsOnly": True,
                "enabled": True,
            },
            kind="app,linux",
        )
        self.resource(group_id, "Microsoft.Web/sites/config", f"{name}/web", location,
                      {"linuxFxVersion": "PYTHON|3.11", "alwaysOn": True, "ftpsState": "Disabled",
                       "minTlsVersion": "1.2"}, child=True)
        self.app_settings[rid.lower()] = settings
        self.connection_strings[rid.lower()] = connection_strings
        return rid

    def vm(self, group_id: str, sub: str, name: str, location: str, subnet_id: str, size: str,
           public_ip: bool) -> str:
        pip_id = None
        if public_ip:
            pip_id = self.resource(group_id, "Microsoft.Network/publicIPAddresses", f"pip-{name}", location,
                                   {"publicIPAllocationMethod": "Static", "ipAddress": "20.0.0." + str(len(name)),
                                    "publicIPAddressVersion": "IPv4"},
                                   sku={"name": "Standard", "tier": "Regional"})
        ip_config: dict[str, Any] = {"privateIPAddress": "10.0.1." + str(4 + len(self.resources) % 200),
                                     "privateIPAllocationMethod": "Dynamic", "subnet": {"id": subnet_id}}
        if pip_id:
            ip_config["publicIPAddress"] = {"id": pip_id}
        nic_id = self.resource(group_id, "Microsoft.Network/networkInterfaces", f"nic-{name}", location,
                               {"ipConfigurations": [{"name": "ipconfig1", "properties": ip_config}]})
        disk_id = self.resource(group_id, "Microsoft.Compute/disks", f"{name}_OsDisk", location,
                                {"diskSizeGB": 64, "diskState": "Attached", "osType": "Linux"},
                                sku={"name": "Premium_LRS", "tier": "Premium"})
        return self.resource(
            group_id,
            "Microsoft.Compute/virtualMachines",
            name,
            location,
            {
                "vmId": stable_guid(sub, name),
                "hardwareProfile": {"vmSize": size},
                "storageProfile": {
                    "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server",
                                       "version": "latest"},
                    "osDisk": {"osType": "Linux", "name": f"{name}_OsDisk", "createOption": "FromImage",
                               "managedDisk": {"id": disk_id, "storageAccountType": "Premium_LRS"}},
                },
                "osProfile": {"computerName": name, "adminUsername": "azureuser",
                              "linuxConfiguration": {"disablePasswordAuthentication": True}},
                "networkProfile": {"networkInterfaces": [{"id": nic_id}]},
            },
        )

    def vnet(self, group_id: str, name: str, location: str, prefix: str) -> str:
        rid = self.resource(group_id, "Microsoft.Network/virtualNetworks", name, location,
                            {"addressSpace": {"addressPrefixes": [prefix]},
                             "subnets": [{"name": "default", "id": f"{group_id}/providers/Microsoft.Network/"
                                          f"virtualNetworks/{name}/subnets/default",
                                          "properties": {"addressPrefix": prefix.replace("/16", "/24")}}]})
        self.resource(group_id, "Microsoft.Network/virtualNetworks/subnets", f"{name}/default", location,
                      {"addressPrefix": prefix.replace("/16", "/24")}, child=True)
        return rid + "/subnets/default"


def build_world(origin: str, creds: SeedCredentials) -> World:
    b = _Builder(origin, creds)
    a, bsub = SUBSCRIPTION_A, SUBSCRIPTION_B
    sql_password = "Sql-" + hashlib.sha256(creds.key_salt.encode()).hexdigest()[:16]

    # Subscription A: Sandbox Production
    app = b.group(a, "rg-prod-app", "eastus", {"env": "prod", "owner": "orders-team"})
    net = b.group(a, "rg-prod-network", "eastus", {"env": "prod"})
    data = b.group(a, "rg-prod-data", "westeurope", {"env": "prod", "data": "confidential"})

    b.storage(app, "stprodapp01", "eastus", {"env": "prod"})
    # two accounts still accept old TLS, so "which storage accounts lack TLS 1.2" has a real answer
    b.storage(app, "stprodlogs01", "eastus", {"env": "prod", "purpose": "logs"}, min_tls="TLS1_0")
    b.vault(a, "rg-prod-app", app, "kv-sandbox-prod", "eastus", {
        "db-password": sql_password,
        "api-key": "ak-" + hashlib.sha256((creds.key_salt + "api").encode()).hexdigest()[:32],
        "storage-connection": "DefaultEndpointsProtocol=https;AccountName=stprodapp01;AccountKey="
        + _storage_key(creds.key_salt, "stprodapp01", "key1") + ";EndpointSuffix=core.windows.net",
        "signing-cert-password": "Cert-" + hashlib.sha256((creds.key_salt + "cert").encode()).hexdigest()[:20],
    })
    plan = b.resource(app, "Microsoft.Web/serverFarms", "plan-orders-prod", "eastus",
                      {"numberOfWorkers": 2, "reserved": True}, sku={"name": "P1v3", "tier": "PremiumV3"},
                      kind="linux")
    conn = (f"Server=tcp:sql-orders-prod.database.windows.net,1433;Database=orders;User ID=ordersadmin;"
            f"Password={sql_password};Encrypt=true;")
    b.web_app(app, "app-orders-prod", plan, "eastus",
              {"WEBSITE_RUN_FROM_PACKAGE": "1", "ORDERS_ENV": "production", "DB_CONNECTION_STRING": conn,
               "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=" + stable_guid("appi", "prod")},
              {"OrdersDb": {"value": conn, "type": "SQLAzure"}})
    b.resource(app, "Microsoft.Insights/components", "appi-orders-prod", "eastus",
               {"Application_Type": "web", "InstrumentationKey": stable_guid("appi", "prod")}, kind="web")
    b.resource(app, "Microsoft.OperationalInsights/workspaces", "log-sandbox-prod", "eastus",
               {"customerId": stable_guid("log", "prod"), "retentionInDays": 30, "sku": {"name": "PerGB2018"}})
    b.resource(app, "Microsoft.ManagedIdentity/userAssignedIdentities", "id-orders-prod", "eastus",
               {"principalId": stable_guid("mi", "orders-prod"), "clientId": stable_guid("mi-client", "orders-prod"),
                "tenantId": TENANT_ID})
    b.resource(app, "Microsoft.ContainerRegistry/registries", "crsandboxprod", "eastus",
               {"loginServer": "crsandboxprod.azurecr.io", "adminUserEnabled": False},
               sku={"name": "Standard", "tier": "Standard"})
    b.resource(app, "Microsoft.DocumentDB/databaseAccounts", "cosmos-orders-prod", "eastus",
               {"documentEndpoint": "https://cosmos-orders-prod.documents.azure.com:443/",
                "databaseAccountOfferType": "Standard"}, kind="GlobalDocumentDB")

    subnet = b.vnet(net, "vnet-prod", "eastus", "10.0.0.0/16")
    b.resource(net, "Microsoft.Network/networkSecurityGroups", "nsg-prod-web", "eastus",
               {"securityRules": [{"name": "allow-https", "properties": {
                   "protocol": "Tcp", "destinationPortRange": "443", "access": "Allow", "direction": "Inbound",
                   "priority": 100, "sourceAddressPrefix": "*", "destinationAddressPrefix": "*",
                   "sourcePortRange": "*"}}]})
    b.vm(net, a, "vm-jump-prod", "eastus", subnet, "Standard_B2s", public_ip=True)
    b.vm(net, a, "vm-worker-01", "eastus", subnet, "Standard_D4s_v5", public_ip=False)
    b.resource(net, "Microsoft.Network/loadBalancers", "lb-prod-web", "eastus",
               {"frontendIPConfigurations": []}, sku={"name": "Standard", "tier": "Regional"})
    b.resource(net, "Microsoft.Network/privateDnsZones", "privatelink.vaultcore.azure.net", "global",
               {"numberOfRecordSets": 2})

    sql = b.resource(data, "Microsoft.Sql/servers", "sql-orders-prod", "westeurope",
                     {"administratorLogin": "ordersadmin", "version": "12.0",
                      "fullyQualifiedDomainName": "sql-orders-prod.database.windows.net"}, kind="v12.0")
    del sql
    b.resource(data, "Microsoft.Sql/servers/databases", "sql-orders-prod/orders", "westeurope",
               {"collation": "SQL_Latin1_General_CP1_CI_AS", "status": "Online"},
               sku={"name": "S1", "tier": "Standard"}, kind="v12.0,user")
    b.storage(data, "stproddata01", "westeurope", {"data": "confidential"})
    b.storage(data, "stprodbackup01", "westeurope", {"purpose": "backup"})
    b.resource(data, "Microsoft.ContainerService/managedClusters", "aks-sandbox-prod", "westeurope",
               {"kubernetesVersion": "1.29.2", "dnsPrefix": "aks-sandbox-prod",
                "agentPoolProfiles": [{"name": "system", "count": 3, "vmSize": "Standard_D4s_v5"}]})
    b.resource(data, "Microsoft.Cache/redis", "redis-orders-prod", "westeurope",
               {"hostName": "redis-orders-prod.redis.cache.windows.net", "port": 6379, "sslPort": 6380,
                "sku": {"name": "Standard", "family": "C", "capacity": 1}})
    b.resource(data, "Microsoft.EventHub/namespaces", "evhns-orders-prod", "westeurope",
               {"serviceBusEndpoint": "https://evhns-orders-prod.servicebus.windows.net:443/"},
               sku={"name": "Standard", "tier": "Standard", "capacity": 1})
    b.resource(data, "Microsoft.ServiceBus/namespaces", "sb-orders-prod", "westeurope",
               {"serviceBusEndpoint": "https://sb-orders-prod.servicebus.windows.net:443/"},
               sku={"name": "Standard", "tier": "Standard"})

    # Subscription B: Sandbox Development
    dev = b.group(bsub, "rg-dev-sandbox", "westus2", {"env": "dev"})
    shared = b.group(bsub, "rg-dev-shared", "westus2", {"env": "dev", "shared": "true"})
    b.storage(dev, "stdevsandbox01", "westus2", {"env": "dev"})
    b.vault(bsub, "rg-dev-sandbox", dev, "kv-sandbox-dev", "westus2", {
        "db-password": "Dev-Sql-" + hashlib.sha256((creds.key_salt + "dev").encode()).hexdigest()[:12],
        "feature-flags-key": "ff-" + hashlib.sha256((creds.key_salt + "ff").encode()).hexdigest()[:24],
    })
    dev_plan = b.resource(dev, "Microsoft.Web/serverFarms", "plan-orders-dev", "westus2",
                          {"numberOfWorkers": 1, "reserved": True}, sku={"name": "B1", "tier": "Basic"},
                          kind="linux")
    dev_conn = "Server=tcp:localhost,1433;Database=orders_dev;User ID=dev;Password=dev-only-password;"
    b.web_app(dev, "app-orders-dev", dev_plan, "westus2",
              {"ORDERS_ENV": "development", "DB_CONNECTION_STRING": dev_conn},
              {"OrdersDb": {"value": dev_conn, "type": "SQLAzure"}})
    b.resource(dev, "Microsoft.Insights/components", "appi-orders-dev", "westus2",
               {"Application_Type": "web", "InstrumentationKey": stable_guid("appi", "dev")}, kind="web")
    dev_subnet = b.vnet(dev, "vnet-dev", "westus2", "10.1.0.0/16")
    b.vm(dev, bsub, "vm-dev-01", "westus2", dev_subnet, "Standard_B2s", public_ip=True)
    b.storage(shared, "stdevshared01", "westus2", {"shared": "true"}, min_tls="TLS1_1")
    b.resource(shared, "Microsoft.ContainerRegistry/registries", "crsandboxdev", "westus2",
               {"loginServer": "crsandboxdev.azurecr.io", "adminUserEnabled": True},
               sku={"name": "Basic", "tier": "Basic"})
    b.resource(shared, "Microsoft.OperationalInsights/workspaces", "log-sandbox-dev", "westus2",
               {"customerId": stable_guid("log", "dev"), "retentionInDays": 30, "sku": {"name": "PerGB2018"}})
    b.resource(shared, "Microsoft.ManagedIdentity/userAssignedIdentities", "id-ci-dev", "westus2",
               {"principalId": stable_guid("mi", "ci-dev"), "clientId": stable_guid("mi-client", "ci-dev"),
                "tenantId": TENANT_ID})
    b.resource(shared, "Microsoft.Network/networkSecurityGroups", "nsg-dev-default", "westus2",
               {"securityRules": []})

    users = [
        User("developer", f"developer@{TENANT_DOMAIN}", DEVELOPER_OID, creds.developer_password, "Sandbox Developer",
             "Owner on Sandbox Production, Reader on Sandbox Development, Key Vault Secrets Officer on "
             "kv-sandbox-prod"),
        User("reader", f"reader@{TENANT_DOMAIN}", READER_OID, creds.reader_password, "Sandbox Reader",
             "Reader on Sandbox Production"),
    ]
    sps = [ServicePrincipal("automation", SP_CLIENT_ID, SP_OBJECT_ID, creds.sp_secret, "sandbox-automation")]
    agent_sps, agent_users, agent_assignments = agent_principals(creds, a)
    sps.extend(agent_sps)
    mcp_sps, public_clients, mcp_users, mcp_assignments, consents = mcp_principals(creds, a)
    sps.extend(mcp_sps)
    users.extend(mcp_users)
    prod_vault_id = b.vaults["kv-sandbox-prod"].resource_id
    assignments = [
        RoleAssignment(stable_guid("ra", "developer", "A"), DEVELOPER_OID, "User", OWNER, f"/subscriptions/{a}"),
        RoleAssignment(stable_guid("ra", "developer", "B"), DEVELOPER_OID, "User", READER, f"/subscriptions/{bsub}"),
        RoleAssignment(stable_guid("ra", "developer", "kv"), DEVELOPER_OID, "User", KEY_VAULT_SECRETS_OFFICER,
                       prod_vault_id),
        RoleAssignment(stable_guid("ra", "reader", "A"), READER_OID, "User", READER, f"/subscriptions/{a}"),
        RoleAssignment(stable_guid("ra", "automation", "rg-prod-app"), SP_OBJECT_ID, "ServicePrincipal",
                       CONTRIBUTOR, app),
        *agent_assignments,
        *mcp_assignments,
    ]
    return World(
        origin=origin,
        tenant_id=TENANT_ID,
        subscriptions={a: "Sandbox Production", bsub: "Sandbox Development"},
        groups=b.groups,
        resources=b.resources,
        children=b.children,
        keys=b.keys,
        app_settings=b.app_settings,
        connection_strings=b.connection_strings,
        vaults=b.vaults,
        users=users,
        service_principals=sps,
        role_assignments=assignments,
        agent_users=agent_users,
        public_clients=public_clients,
        consents=set(consents),
        # deployment history (deployment_world): one deployment returned a storage key as a plain string
        # output, what a template author can do with listKeys(), and why outputs are withheld structurally
        deployments=seed_deployments(a, app, net, _storage_key(creds.key_salt, "stprodapp01", "key1"), sql_password),
    )
