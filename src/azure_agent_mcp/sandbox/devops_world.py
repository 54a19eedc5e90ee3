"""The seeded Azure DevOps organization ``contoso``: members, projects, repositories, work items, secrets.

Members are the sandbox's Entra users, with the access levels the scenario needs: the developer
(Basic, Contributor in both projects), the agent user (Basic, Contributor in Storefront only: no
access to Platform at all) and the reader (Stakeholder in Storefront: work items, no code).
Ids are fixed (``stable_guid``) so tests and documentation can cite them; secret-bearing values
(a service connection's key, a secret variable) are derived from the sandbox's per-start salt and
never leave the sandbox through the API, as the service masks them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from azure_agent_mcp.sandbox.agent_world import AGENT_USER_OBJECT_ID
from azure_agent_mcp.sandbox.devops_objects import ObjectStore, Signature, Staging
from azure_agent_mcp.sandbox.principals import DEVELOPER_OID, READER_OID, TENANT_DOMAIN, stable_guid

ORGANIZATION = "contoso"
SEED_EPOCH = 1705311000  # 2024-01-15T09:30:00Z, the sandbox's SEED_TIME
SEED_DATE = "2024-01-15T09:30:00Z"
BASIC = "basic"
STAKEHOLDER = "stakeholder"
CONTRIBUTOR = "Contributors"
WORK_ITEM_TYPES: dict[str, tuple[str, ...]] = {  # Agile process: type -> states (first is the initial one)
    "Bug": ("New", "Active", "Resolved", "Closed"),
    "Task": ("New", "Active", "Resolved", "Closed"),
    "User Story": ("New", "Active", "Resolved", "Closed"),
    "Epic": ("New", "Active", "Resolved", "Closed"),
    "Feature": ("New", "Active", "Resolved", "Closed"),
}


@dataclass
class Member:
    object_id: str
    upn: str
    display_name: str
    access_level: str  # basic | stakeholder
    roles: dict[str, str]  # lower project name -> project group (Contributors)

    @property
    def vsid(self) -> str:
        """Azure DevOps' own identity id (not the Entra object id), as IdentityRef.id carries it."""
        return stable_guid("devops-identity", self.object_id)


@dataclass
class Push:
    push_id: int
    date: str
    pushed_by: str  # object id
    ref_updates: list[dict[str, str]]
    commits: list[str]


@dataclass
class Comment:
    comment_id: int
    parent_id: int
    author: str  # object id
    content: str
    published: str
    updated: str
    comment_type: str = "text"


@dataclass
class Thread:
    thread_id: int
    status: str
    published: str
    updated: str
    comments: list[Comment]
    context: dict[str, Any] | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reviewer:
    object_id: str
    vote: int = 0
    is_required: bool = False


@dataclass
class PullRequest:
    pull_request_id: int
    title: str
    description: str
    source: str
    target: str
    created_by: str  # object id
    creation_date: str
    source_commit: str
    target_commit: str
    status: str = "active"
    is_draft: bool = False
    reviewers: list[Reviewer] = field(default_factory=list)
    work_items: list[int] = field(default_factory=list)
    threads: list[Thread] = field(default_factory=list)
    closed_date: str | None = None


@dataclass
class Repository:
    repo_id: str
    name: str
    project_id: str
    default_branch: str
    objects: ObjectStore = field(default_factory=ObjectStore)
    refs: dict[str, str] = field(default_factory=dict)  # refs/heads/x -> commit sha
    ref_creators: dict[str, str] = field(default_factory=dict)  # ref -> object id
    pushes: list[Push] = field(default_factory=list)
    pulls: dict[int, PullRequest] = field(default_factory=dict)


@dataclass
class WorkItemComment:
    comment_id: int
    text: str
    created_by: str
    created_date: str
    version: int = 1


@dataclass
class WorkItem:
    work_item_id: int
    project_id: str
    rev: int
    fields: dict[str, Any]
    relations: list[dict[str, Any]] = field(default_factory=list)
    comments: list[WorkItemComment] = field(default_factory=list)


@dataclass
class ServiceEndpoint:
    endpoint_id: str
    name: str
    kind: str
    url: str
    scheme: str
    parameters: dict[str, str]
    secret_parameters: frozenset[str]
    data: dict[str, str]
    created_by: str


@dataclass
class VariableGroup:
    group_id: int
    name: str
    description: str
    variables: dict[str, tuple[str, bool]]  # name -> (value, is secret)
    created_by: str


@dataclass
class Project:
    project_id: str
    name: str
    description: str
    repos: dict[str, Repository] = field(default_factory=dict)  # lower name -> repo
    endpoints: list[ServiceEndpoint] = field(default_factory=list)
    variable_groups: list[VariableGroup] = field(default_factory=list)


@dataclass
class PersonalAccessToken:
    authorization_id: str
    owner: str  # object id
    display_name: str
    scope: str
    valid_from: str
    valid_to: str
    target_accounts: list[str]
    token_hash: str  # the token itself is shown once, never kept


@dataclass
class Organization:
    name: str
    org_id: str
    members: dict[str, Member]  # object id (lower) -> member
    projects: dict[str, Project]  # lower name -> project
    work_items: dict[int, WorkItem] = field(default_factory=dict)
    pats: list[PersonalAccessToken] = field(default_factory=list)
    next_work_item: int = 1
    next_pull_request: int = 1
    next_push: int = 1
    next_variable_group: int = 1

    def member(self, object_id: str) -> Member | None:
        return self.members.get(object_id.lower())

    def member_by_vsid(self, vsid: str) -> Member | None:
        return next((m for m in self.members.values() if m.vsid == vsid.lower()), None)

    def project(self, name_or_id: str) -> Project | None:
        lowered = name_or_id.lower()
        found = self.projects.get(lowered)
        if found is not None:
            return found
        return next((p for p in self.projects.values() if p.project_id == lowered), None)

    def project_by_id(self, project_id: str) -> Project:
        return next(p for p in self.projects.values() if p.project_id == project_id)


def _files(tree: dict[str, str]) -> dict[str, bytes]:
    return {path: text.encode() for path, text in tree.items()}


STOREFRONT_TREE = {
    "/README.md": "# storefront-web\n\nThe Contoso storefront: catalogue, cart and sign-in.\n\n"
                  "Run the tests with `python -m pytest`.\n",
    "/src/auth/__init__.py": "",
    "/src/auth/session.py": (
        '"""Sign-in sessions for the storefront."""\n\n'
        "import time\n\n"
        "# How long the identity provider may take to answer a sign-in, in seconds.\n"
        "LOGIN_TIMEOUT_SECONDS = 5\n\n\n"
        "def login_deadline(started: float) -> float:\n"
        "    return started + LOGIN_TIMEOUT_SECONDS\n\n\n"
        "def timed_out(started: float, now: float | None = None) -> bool:\n"
        "    return (now if now is not None else time.time()) > login_deadline(started)\n"
    ),
    "/src/cart/cart.py": "def badge_count(items: list[dict]) -> int:\n    return sum(i['quantity'] for i in items)\n",
    "/tests/test_session.py": (
        "from src.auth.session import LOGIN_TIMEOUT_SECONDS, timed_out\n\n\n"
        "def test_a_slow_identity_provider_is_given_time():\n"
        "    assert LOGIN_TIMEOUT_SECONDS >= 5\n\n\n"
        "def test_timed_out_after_the_deadline():\n"
        "    assert timed_out(0, now=LOGIN_TIMEOUT_SECONDS + 1)\n"
    ),
}
PLATFORM_TREE = {
    "/README.md": "# platform-infra\n\nShared infrastructure: AKS, networking, certificates.\n",
    "/terraform/main.tf": 'resource "azurerm_resource_group" "platform" {\n  name     = "rg-platform"\n'
                          '  location = "eastus"\n}\n',
}


def _seed_repo(project_id: str, name: str, tree: dict[str, str], author: Member) -> Repository:
    repo = Repository(stable_guid("devops-repo", name), name, project_id, "refs/heads/main")
    staging = Staging(repo.objects)
    files = {path: staging.blob(content) for path, content in _files(tree).items()}
    who = Signature(author.display_name, author.upn, SEED_EPOCH)
    commit = staging.commit(files, (), who, who, "Initial commit")
    repo.objects.merge(staging.new)
    repo.refs["refs/heads/main"] = commit.sha
    repo.ref_creators["refs/heads/main"] = author.object_id
    repo.pushes.append(Push(0, SEED_DATE, author.object_id,
                            [{"name": "refs/heads/main", "oldObjectId": "0" * 40, "newObjectId": commit.sha}],
                            [commit.sha]))
    return repo


def _work_item(org: Organization, project: Project, kind: str, title: str, state: str, author: Member,
               extra: dict[str, Any] | None = None) -> WorkItem:
    wid = org.next_work_item
    org.next_work_item += 1
    fields: dict[str, Any] = {
        "System.AreaPath": project.name,
        "System.TeamProject": project.name,
        "System.IterationPath": project.name,
        "System.WorkItemType": kind,
        "System.State": state,
        "System.Reason": "New" if state == "New" else "Implementation started",
        "System.CreatedDate": SEED_DATE,
        "System.CreatedBy": author.object_id,
        "System.ChangedDate": SEED_DATE,
        "System.ChangedBy": author.object_id,
        "System.CommentCount": 0,
        "System.Title": title,
        "Microsoft.VSTS.Common.Priority": 2,
        **(extra or {}),
    }
    item = WorkItem(wid, project.project_id, 1, fields)
    org.work_items[wid] = item
    return item


def _derived_secret(salt: str, name: str) -> str:
    return hashlib.sha256(f"{salt}/devops/{name}".encode()).hexdigest()[:32]


def build_organization(salt: str) -> Organization:
    developer = Member(DEVELOPER_OID, f"developer@{TENANT_DOMAIN}", "Sandbox Developer", BASIC,
                       {"storefront": CONTRIBUTOR, "platform": CONTRIBUTOR})
    agent = Member(AGENT_USER_OBJECT_ID, f"agent-orders@{TENANT_DOMAIN}", "Orders Agent (agent user)", BASIC,
                   {"storefront": CONTRIBUTOR})
    reader = Member(READER_OID, f"reader@{TENANT_DOMAIN}", "Sandbox Reader", STAKEHOLDER,
                    {"storefront": CONTRIBUTOR})
    storefront = Project(stable_guid("devops-project", "Storefront"), "Storefront",
                         "The Contoso web storefront.")
    platform = Project(stable_guid("devops-project", "Platform"), "Platform", "Shared platform infrastructure.")
    storefront.repos["storefront-web"] = _seed_repo(storefront.project_id, "storefront-web", STOREFRONT_TREE,
                                                    developer)
    platform.repos["platform-infra"] = _seed_repo(platform.project_id, "platform-infra", PLATFORM_TREE, developer)
    org = Organization(ORGANIZATION, stable_guid("devops-org", ORGANIZATION),
                       {m.object_id.lower(): m for m in (developer, agent, reader)},
                       {"storefront": storefront, "platform": platform})
    _work_item(org, storefront, "User Story", "Checkout with saved cards", "Active", developer)
    _work_item(org, storefront, "Bug", "Cart badge count is off by one", "New", developer,
               {"Microsoft.VSTS.TCM.ReproSteps": "Add two items, remove one: the badge shows 2."})
    _work_item(org, storefront, "Task", "Upgrade the payment SDK", "Closed", developer)
    _work_item(org, platform, "Epic", "Move the platform to AKS", "Active", developer)
    _work_item(org, platform, "Task", "Rotate the ingress TLS certificates", "New", developer)
    storefront.endpoints.append(ServiceEndpoint(
        stable_guid("devops-endpoint", "azure-prod"), "azure-prod", "azurerm", "https://management.azure.com/",
        "ServicePrincipal",
        {"tenantid": stable_guid("tenant"), "serviceprincipalid": stable_guid("devops-spn", "azure-prod"),
         "authenticationType": "spnKey", "serviceprincipalkey": _derived_secret(salt, "azure-prod")},
        frozenset({"serviceprincipalkey"}),
        {"subscriptionId": "5a1db0c5-a000-4000-a000-00000000000a", "subscriptionName": "Sandbox Production",
         "environment": "AzureCloud", "scopeLevel": "Subscription"}, developer.object_id))
    platform.endpoints.append(ServiceEndpoint(
        stable_guid("devops-endpoint", "acr-push"), "acr-push", "dockerregistry", "https://crsandboxdev.azurecr.io",
        "UsernamePassword", {"username": "crsandboxdev", "password": _derived_secret(salt, "acr-push")},
        frozenset({"password"}), {"registrytype": "Others"}, developer.object_id))
    storefront.variable_groups.append(VariableGroup(
        org.next_variable_group, "storefront-release", "Release settings for the storefront.",
        {"API_BASE_URL": ("https://api.contoso.example", False),
         "PAYMENTS_API_KEY": (_derived_secret(salt, "payments"), True)}, developer.object_id))
    org.next_variable_group += 1
    return org
