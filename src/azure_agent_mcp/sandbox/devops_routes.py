"""What every Azure DevOps room shares: the per-request ``Call`` and the ``Route`` table entries.

A route names its method, its path after ``_apis`` (``{name}`` captures a segment, ``{$type}``
one that starts with ``$``, as ``workitems/$Bug``), the policy vocabulary's operation, and what
the caller must have beyond organization membership: ``code`` (Basic access; Stakeholders get
the service's not-found) or ``secret`` (refused to agent-session tokens, as the RP agent rule).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure_agent_mcp.sandbox.access import Principal
from azure_agent_mcp.sandbox.devops_errors import ApiVersion, DevOpsFailure, bad_request
from azure_agent_mcp.sandbox.devops_identity import identity_ref
from azure_agent_mcp.sandbox.devops_world import STAKEHOLDER, Member, Organization, Project, Repository
from azure_agent_mcp.sandbox.protocol import BadRequestBodyError, Request, Response, json_response


def now_iso() -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


@dataclass
class Call:
    request: Request
    principal: Principal
    member: Member
    org: Organization
    project: Project | None
    args: dict[str, str]
    version: ApiVersion
    origin: str
    tenant_id: str
    log: dict[str, Any] = field(default_factory=dict)

    @property
    def org_url(self) -> str:
        return f"{self.origin}/devops/{self.org.name}"

    @property
    def vssps_url(self) -> str:
        return f"{self.origin}/vssps/{self.org.name}"

    @property
    def project_url(self) -> str:
        assert self.project is not None
        return f"{self.org_url}/{self.project.project_id}"

    def query(self, name: str) -> str | None:
        return self.request.query_ci(name)

    def ref(self, object_id: str) -> dict[str, Any]:
        member = self.org.member(object_id)
        if member is None:  # a former member: the service keeps the name it knew
            return {"displayName": object_id, "id": object_id, "uniqueName": object_id}
        return identity_ref(member, self.org_url, self.vssps_url)

    def body(self) -> Any:
        try:
            return self.request.json()
        except BadRequestBodyError as exc:
            raise bad_request(f"The request body is not valid JSON: {exc}. Send a JSON document as the API "
                              "describes it.", "VssPropertyValidationException") from exc

    def json_object(self, what: str) -> dict[str, Any]:
        body = self.body()
        if not isinstance(body, dict):
            raise bad_request(f"Value cannot be null.\r\nParameter name: {what}. The body must be a JSON object.",
                              "VssPropertyValidationException")
        return body

    def project_ref(self, project: Project | None = None) -> dict[str, Any]:
        project = project or self.project
        assert project is not None
        return {"id": project.project_id, "name": project.name, "description": project.description,
                "url": f"{self.org_url}/_apis/projects/{project.project_id}", "state": "wellFormed",
                "revision": 11, "visibility": "private", "lastUpdateTime": "2024-01-15T09:30:00.000Z"}

    def repository(self, name_or_id: str) -> Repository:
        """A repository of the route's project; Stakeholders (no code access) get the same not-found."""
        assert self.project is not None
        lowered = name_or_id.lower()
        repo = self.project.repos.get(lowered) or next(
            (r for r in self.project.repos.values() if r.repo_id == lowered), None)
        if repo is None or self.member.access_level == STAKEHOLDER:
            raise DevOpsFailure(404, "GitRepositoryNotFoundException",
                                f"TF401019: The Git repository with name or identifier {name_or_id} does not exist "
                                "or you do not have permissions for the operation you are attempting.")
        self.log["repository"] = repo.name
        return repo


Handler = Callable[[Call], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: tuple[str, ...]
    operation: str
    handler: Handler
    level: str = "project"  # project | org | vssps
    preview_only: bool = False
    secret: bool = False

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None:
        if method != self.method or len(segments) != len(self.pattern):
            return None
        args: dict[str, str] = {}
        for want, got in zip(self.pattern, segments):
            if want == "{$type}":
                if not got.startswith("$") or len(got) < 2:
                    return None
                args["type"] = got[1:]
            elif want.startswith("{"):
                args[want[1:-1]] = got
            elif want != got.lower():
                return None
        return args


def listing(items: list[Any]) -> Response:
    return json_response(200, {"count": len(items), "value": items})


def is_digits(value: str, limit: int = 9) -> bool:
    """ASCII digits only, and few enough of them (``str.isdigit`` also accepts '²', which ``int`` refuses)."""
    return 0 < len(value) <= limit and all("0" <= c <= "9" for c in value)


def integer(value: str, what: str) -> int:
    if not is_digits(value):
        raise bad_request(f"The value '{value[:40]}' is not valid for {what}: use a positive integer id.")
    return int(value)
