"""Azure DevOps REST paths to ``AzureDevOps/<area>/<resource path>/<verb>`` at an organization scope.

Azure DevOps has no RBAC operation names of its own that this server could check against, so the
vocabulary is derived from the route (issue 13): the literal segments after
``_apis`` in their documented camelCase, ids dropped, and a verb from the method (GET/HEAD read,
PUT/PATCH/POST write, DELETE delete, other POSTs action; POSTs that only read, such as a WIQL
query, say so in the table). The scope is ``/organizations/{org}``, then ``/projects/{name}`` and
``/repositories/{name}`` as far as the route names them.

Only the routes in ``data/devops_operations.json`` map: Azure DevOps routes are not regular
enough to guess where an id ends and a collection begins, and a wrong guess is a wrong decision.
Everything else is refused, so the decision is always about a route whose meaning is written down.

Scope safety, because an AssignableScopes fence on a project or repository is only as good as the
names it sees:

- a project or repository given as a GUID (hyphenated, bare or in parentheses, as .NET's
  ``Guid.TryParse`` reads them; its braced forms are no names at all) is refused:
  a fence on ``Storefront`` cannot be walked around by Storefront's id, or Platform's;
- names must be names Azure DevOps can give (its naming rules: no ``_`` start, no ``.`` at either
  end, none of ``/:\\~&%;@'"?<>|#$*{},+=[]``, at most 64 characters, no reserved name), so no
  route segment (``_apis``) or trick is ever read as a project;
- a query parameter that names a project is refused on a route scoped to a project (the path
  decides where the request acts, never the query);
- organization-level routes that reach project data (``{org}/_apis/wit/workitems``) are scoped to
  the organization, so a project fence denies them; so are the project-level routes that address
  a work item (or a pull request without its repository) by id: ids are organization-wide and the
  service answers an id of another project through any project's path (the table says so per
  route, ``reaches_organization``).

Path canonicality (dot segments, ``//``, encoded ``/``, ``%2e``, lower-case escapes, trailing
``/``) is ``urlpath``'s job and happens before this module sees the segments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote_plus

from azure_agent_mcp.policy.urlpath import quote_segment

NAMESPACE = "AzureDevOps"
HOSTS = ("devops", "vssps")
ROUTES_FILE = Path(__file__).with_name("data") / "devops_operations.json"
VERBS = frozenset({"read", "write", "delete", "action"})
PLACEHOLDERS = frozenset({"{project}", "{repository}", "{id}", "{guid}", "{type}", "{name}"})
ORGANIZATION_FLAG = "--devops-organization"

_ORGANIZATION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?")
_FORBIDDEN_IN_NAMES = frozenset("/:\\~&%;@'\"?<>|#$*{},+=[]")
_RESERVED_NAMES = frozenset(
    n.lower()
    for n in (
        "PRN", "NUL", "CON", "AUX", "SERVER", "SignalR", "DefaultCollection", "Web", "bin", "web.config",
        "App_Browsers", "App_code", "App_Data", "App_GlobalResources", "App_LocalResources", "App_Themes",
        "App_WebResources", *(f"COM{i}" for i in range(1, 11)), *(f"LPT{i}" for i in range(1, 10)),
    )
)
_GUID_D = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_GUID_N = re.compile(r"[0-9a-fA-F]{32}")
_NUMBER = re.compile(r"[0-9]{1,10}")
# Query parameters that name a project: on a project-scoped route they could only disagree with the path.
_PROJECT_PARAMETERS = frozenset({"project", "projectid", "projectids", "projectname", "teamproject", "projects"})


class DevOpsShapeError(ValueError):
    """The path is not an Azure DevOps route the table maps, or names something it cannot decide on."""


@dataclass(frozen=True)
class DevOpsRoute:
    host: str  # "devops" | "vssps"
    template: tuple[str, ...]  # segments below the organization; literals in their documented case
    verbs: Mapping[str, str]  # METHOD -> read | write | delete | action
    doc: str
    area: str = ""  # when the route does not name its area (``_apis/projects`` is ``core``)
    post_read: str = ""  # why a POST on this route is a read
    reaches_organization: str = ""  # why a route naming a project is still decided at the organization

    @property
    def resource(self) -> str:
        """``<area>/<literal segments after _apis>``: what the operation names, without its verb."""
        start = self.template.index("_apis") + 1
        literals = [s for s in self.template[start:] if s not in PLACEHOLDERS]
        return "/".join(([self.area] if self.area else []) + literals)

    def operation(self, method: str) -> str:
        return f"{NAMESPACE}/{self.resource}/{self.verb(method)}"

    def verb(self, method: str) -> str:
        verb = self.verbs.get("GET" if method == "HEAD" else method)
        if verb is None:
            allowed = ", ".join(sorted(self.verbs))
            raise DevOpsShapeError(f"{method} is not a method route {self.shown} accepts ({allowed})")
        return verb

    @property
    def shown(self) -> str:
        return "{organization}/" + "/".join(self.template)

    @property
    def project_scoped(self) -> bool:
        return "{project}" in self.template


@dataclass(frozen=True)
class DevOpsOperation:
    operation: str
    scope: str
    route: DevOpsRoute


def _route(raw: Mapping[str, object]) -> DevOpsRoute:
    host, route = str(raw["host"]), str(raw["route"])
    template = tuple(route.split("/"))
    methods = raw["methods"]
    if host not in HOSTS or "_apis" not in template or not isinstance(methods, dict) or not methods:
        raise ValueError(f"{ROUTES_FILE.name}: route '{route}' has no host, no _apis or no methods")
    if any(v not in VERBS for v in methods.values()):
        raise ValueError(f"{ROUTES_FILE.name}: route '{route}': a verb is not one of {sorted(VERBS)}")
    if "{repository}" in template and "{project}" not in template:
        raise ValueError(f"{ROUTES_FILE.name}: route '{route}' names a repository without its project")
    for segment in template:
        if segment.startswith("{") and segment not in PLACEHOLDERS:
            raise ValueError(f"{ROUTES_FILE.name}: route '{route}': unknown placeholder {segment}")
    return DevOpsRoute(host, template, dict(methods), str(raw["doc"]), str(raw.get("area", "")),
                       str(raw.get("post_read", "")), str(raw.get("reaches_organization", "")))


@lru_cache(maxsize=1)
def devops_routes() -> tuple[DevOpsRoute, ...]:
    data = json.loads(ROUTES_FILE.read_text(encoding="utf-8"))
    return tuple(_route(raw) for raw in data["routes"])


@lru_cache(maxsize=1)
def _index() -> dict[tuple[str, int], tuple[DevOpsRoute, ...]]:
    index: dict[tuple[str, int], list[DevOpsRoute]] = {}
    for route in devops_routes():
        index.setdefault((route.host, len(route.template)), []).append(route)
    return {key: tuple(routes) for key, routes in index.items()}


def organization_problem(name: object) -> str | None:
    """Why ``name`` cannot be an Azure DevOps organization, or None when it can."""
    if not isinstance(name, str) or not _ORGANIZATION.fullmatch(name):
        return (f"'{name}' is not an Azure DevOps organization name (letters, digits and hyphens, at most 50, "
                "starting and ending with a letter or digit)")
    return None


def looks_like_guid(value: str) -> bool:
    """What .NET's Guid.TryParse would read as a GUID, in the forms a name could carry (D, N, P)."""
    text = value.strip()
    if len(text) > 2 and text[0] == "(" and text[-1] == ")":
        text = text[1:-1].strip()
    return bool(_GUID_D.fullmatch(text) or _GUID_N.fullmatch(text))


def name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` (decoded) cannot be a project or repository name in a path, or None."""
    if looks_like_guid(name):
        return (f"the {kind} '{name}' is given as a GUID; Azure DevOps tools address {kind}s by name, so that a "
                f"fence on a {kind}'s name cannot be walked around by its id: use the {kind}'s name")
    if len(name) > 64:
        return f"'{name[:64]}...' is longer than the 64 characters an Azure DevOps {kind} name may have"
    if name != name.strip():
        return f"the {kind} name '{name}' starts or ends with white space"
    bad = sorted(set(name) & _FORBIDDEN_IN_NAMES)
    if bad:
        return f"'{name}' is not an Azure DevOps {kind} name (it contains {''.join(bad)!r})"
    if name.startswith("_") or name.startswith(".") or name.endswith("."):
        return f"'{name}' is not an Azure DevOps {kind} name (names never start with '_' or start or end with '.')"
    if name.lower() in _RESERVED_NAMES:
        return f"'{name}' is a name Azure DevOps reserves; no {kind} has it"
    return None


def _placeholder_problem(placeholder: str, value: str) -> str | None:
    if placeholder == "{project}":
        return name_problem("project", value)
    if placeholder == "{repository}":
        return name_problem("repository", value)
    if placeholder == "{id}":
        return None if _NUMBER.fullmatch(value) else f"'{value}' is not a numeric id"
    if placeholder == "{guid}":
        return None if _GUID_D.fullmatch(value) else f"'{value}' is not a GUID (8-4-4-4-12 hex digits)"
    if placeholder == "{type}":
        return None if len(value) > 1 and value[0] == "$" and "$" not in value[1:] else (
            f"'{value}' is not a work item type written as '$Type'")
    return None if value.strip() else "an empty name"


def _matches(route: DevOpsRoute, segments: list[str]) -> tuple[bool, str | None]:
    """(literals match, the first placeholder problem): a literal mismatch means another route."""
    problem: str | None = None
    for template, value in zip(route.template, segments):
        if template in PLACEHOLDERS:
            if problem is None:
                problem = _placeholder_problem(template, value)
        elif template.lower() != value.lower():
            return False, None
    return True, problem


def project_parameters(query: str) -> list[str]:
    """The query parameters (decoded names) that name a project."""
    found = []
    for pair in query.split("&"):
        name = unquote_plus(pair.split("=", 1)[0]).strip().lower()
        if name in _PROJECT_PARAMETERS:
            found.append(name)
    return found


def map_devops(host: str, method: str, organization: str, segments: list[str], query: str = "") -> DevOpsOperation:
    """``segments``: decoded path segments below the organization; ``organization``: as configured."""
    candidates = _index().get((host, len(segments)), ())
    problem: str | None = None
    for route in candidates:
        literal_match, placeholder_problem = _matches(route, segments)
        if not literal_match:
            continue
        if placeholder_problem is not None:
            problem = problem or placeholder_problem
            continue
        operation = route.operation(method)
        if route.project_scoped:
            named = project_parameters(query)
            if named:
                raise DevOpsShapeError(
                    f"the query names a project ({', '.join(named)}=) on a route scoped to the project in its path; "
                    "the path alone says where the request acts: drop the parameter"
                )
        return DevOpsOperation(operation, _scope(organization, route, segments), route)
    if problem is not None:
        raise DevOpsShapeError(problem)
    shown = "/".join(segments)
    where = "https://vssps.dev.azure.com" if host == "vssps" else "https://dev.azure.com"
    raise DevOpsShapeError(
        f"'{organization}/{shown}' is not an Azure DevOps route this server maps on {where} (the table of known "
        "routes is in the README; azure-agent-mcp policy explain --url shows what a URL maps to)"
    )


def _scope(organization: str, route: DevOpsRoute, segments: list[str]) -> str:
    scope = f"/organizations/{organization}"
    if route.reaches_organization:
        return scope
    for template, value in zip(route.template, segments):
        if template == "{project}":
            scope += "/projects/" + quote_segment(value)
        elif template == "{repository}":
            scope += "/repositories/" + quote_segment(value)
    return scope


def routes_table() -> str:
    """The README's table of Azure DevOps operations, from the data (a test keeps the README current)."""
    from azure_agent_mcp.policy.catalog import secret_bearing

    lines = ["| host | route (below the organization) | method | operation | scope | secret-bearing |",
             "|---|---|---|---|---|---|"]
    for route in devops_routes():
        depth = ("organization (ids are organization-wide)" if route.reaches_organization else "repository"
                 if "{repository}" in route.template else "project" if route.project_scoped else "organization")
        for method, _ in route.verbs.items():
            operation = route.operation(method)
            secret = "**yes**" if secret_bearing(operation) else "no"
            lines.append(f"| {route.host} | `{'/'.join(route.template)}` | {method} | `{operation}` | {depth} | {secret} |")
    return "\n".join(lines)
