"""The Azure DevOps plane: ``/devops/{org}/...`` (dev.azure.com) and ``/vssps/{org}/...`` (vssps.dev.azure.com).

Order of checks, as the service does them: the organization exists; the bearer token is valid
for Azure DevOps' audience (else 401 TF400813 with the ``WWW-Authenticate: Bearer
authorization_uri=...`` challenge); the caller is a member of the organization (else 401
TF400813 naming the user); the api-version is in range; the project exists and the caller is a
member of it (else 404 TF200016, the same answer as for a project that does not exist); then the
route's room answers. A claims challenge registered through the admin API answers 401 with
``error="insufficient_claims", claims="<base64>"`` in the Bearer challenge. Every answer is journaled as kind ``devops`` with the token's principal
and agent-session claims, the policy vocabulary's operation and the scope the route names.
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.sandbox.access import AuthFailure, agent_rule_message, authenticate
from azure_agent_mcp.sandbox.devops_core import ROUTES as CORE_ROUTES
from azure_agent_mcp.sandbox.devops_errors import DevOpsFailure, devops_error, parse_api_version
from azure_agent_mcp.sandbox.devops_git import ROUTES as GIT_ROUTES
from azure_agent_mcp.sandbox.devops_library import ROUTES as LIBRARY_ROUTES
from azure_agent_mcp.sandbox.devops_pulls import ROUTES as PULL_ROUTES
from azure_agent_mcp.sandbox.devops_routes import Call, Route
from azure_agent_mcp.sandbox.devops_vssps import ROUTES as VSSPS_ROUTES
from azure_agent_mcp.sandbox.devops_wit import ROUTES as WIT_ROUTES
from azure_agent_mcp.sandbox.protocol import Request, Response

DEVOPS_AUDIENCES = frozenset({"499b84ac-1321-427f-aa17-267ca6975798"})
ROUTES: tuple[Route, ...] = (*CORE_ROUTES, *GIT_ROUTES, *PULL_ROUTES, *WIT_ROUTES, *LIBRARY_ROUTES,
                             *VSSPS_ROUTES)
MAX_SEGMENTS = 16


class DevOpsPlane:
    def __init__(self, state: Any) -> None:
        self.state = state

    def handle(self, request: Request, parts: list[str]) -> Response:
        log: dict[str, Any] = {"token_session": None, "token_claims": None}
        try:
            response = self._handle(request, parts, log)
        except DevOpsFailure as failure:
            response = devops_error(failure)
        response.log.update(log)
        return response

    def _handle(self, request: Request, parts: list[str], log: dict[str, Any]) -> Response:
        host = parts[0].lower()  # devops | vssps
        org = self.state.devops
        if len(parts) < 2 or parts[1].lower() != org.name:
            named = parts[1] if len(parts) > 1 else ""
            raise DevOpsFailure(404, "AccountNotFoundException",
                                f"VS800075: The organization '{named[:100]}' does not exist in the sandbox. "
                                f"Use {self.state.origin}/{host}/{org.name}.")
        log["organization"] = org.name
        principal = authenticate(self.state.tokens, request, DEVOPS_AUDIENCES)
        if isinstance(principal, AuthFailure):
            log["auth_failure"] = principal.code
            raise DevOpsFailure(401, "UnauthorizedRequestException",
                                "TF400813: Resource not available for anonymous access. Client authentication "
                                "required.", self._challenge())
        log.update(principal.log_fields())
        challenge = self.state.claims_challenge_for(request.path, principal)
        if challenge is not None:  # Conditional Access / CAE: the client must come back with these claims
            log["claims_challenge"] = True
            raise DevOpsFailure(401, "UnauthorizedRequestException",
                                "TF400813: The token does not satisfy the organization's Conditional Access "
                                "policy: request a new token with the claims of the WWW-Authenticate challenge.",
                                [("www-authenticate", f'Bearer authorization_uri={self.state.authority}, '
                                                      f'error="insufficient_claims", claims="{challenge.encoded}"'),
                                 ("x-vss-resourcetenant", self.state.tenant_id)])
        member = org.member(principal.object_id)
        if member is None:
            raise DevOpsFailure(401, "UnauthorizedRequestException",
                                f"TF400813: The user '{self.state.tenant_id}\\{principal.display}' is not "
                                "authorized to access this resource.", self._challenge())
        rest = parts[2:]
        project_name: str | None = None
        if host == "devops" and rest and rest[0].lower() != "_apis":
            project_name, rest = rest[0], rest[1:]
        if not rest or rest[0].lower() != "_apis" or len(rest) > MAX_SEGMENTS:
            raise self._no_route(request)
        segments = rest[1:]
        level = "vssps" if host == "vssps" else ("project" if project_name is not None else "org")
        route, args = self._route(request.method, level, segments)
        if route is None:
            raise self._no_route(request)
        log["operation"] = route.operation
        version = parse_api_version(request.query_ci("api-version"), route.preview_only)
        project = None
        if project_name is not None:
            project = org.project(project_name)
            if project is None or project.name.lower() not in member.roles:
                raise DevOpsFailure(404, "ProjectDoesNotExistWithNameException",
                                    f"TF200016: The following project does not exist: {project_name[:200]}. Verify "
                                    "that the name of the project is correct and that the project exists on the "
                                    "specified Azure DevOps Server.")
            log["project"] = project.name
        if route.secret and self.state.agent_rule and principal.tagged:
            raise DevOpsFailure(403, "AgentSessionSecretAccessDenied", agent_rule_message(principal, route.operation))
        call = Call(request, principal, member, org, project, args, version, self.state.origin,
                    self.state.tenant_id, log)
        return route.handler(call)

    def _route(self, method: str, level: str, segments: list[str]) -> tuple[Route | None, dict[str, str]]:
        for route in ROUTES:
            if route.level != level:
                continue
            args = route.match(method, segments)
            if args is not None:
                return route, args
        return None, {}

    def _challenge(self) -> list[tuple[str, str]]:
        return [
            ("www-authenticate", f"Bearer authorization_uri={self.state.authority}"),
            ("www-authenticate", f'Basic realm="{self.state.origin}/devops"'),
            ("www-authenticate", "TFS-Federated"),
            ("x-vss-resourcetenant", self.state.tenant_id),
        ]

    @staticmethod
    def _no_route(request: Request) -> DevOpsFailure:
        return DevOpsFailure(404, "RouteNotFoundException",
                             f"The resource cannot be found: no Azure DevOps API answers {request.method} "
                             f"{request.path[:300]} in the sandbox.")
