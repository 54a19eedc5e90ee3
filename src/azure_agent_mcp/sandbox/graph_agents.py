"""Microsoft Graph's agent identity endpoints: a blueprint creates, reads, lists, tags and deletes its agent identities.

Routes (``v1.0`` and ``beta``, names case-insensitive as Graph treats them):

- ``POST   /{v}/servicePrincipals/microsoft.graph.agentIdentity``: body ``displayName``,
  ``agentIdentityBlueprintId`` (the blueprint's app id), ``sponsors@odata.bind`` (user or group
  URLs, at least one), optional ``tags``; 201 and the agent identity;
- ``GET    /{v}/servicePrincipals/microsoft.graph.agentIdentity`` with ``$filter`` on
  ``tags/any(t:t eq '...')``, ``agentIdentityBlueprintId eq '...'``, ``displayName eq '...'``
  (joined by ``and``), ``$top``; ``{"value": [...]}``;
- ``GET    /{v}/servicePrincipals/{id}[/microsoft.graph.agentIdentity]`` (``$expand=sponsors``);
- ``PATCH  /{v}/servicePrincipals/{id}/microsoft.graph.agentIdentity``: ``displayName``, ``tags``; 204;
- ``DELETE /{v}/servicePrincipals/{id}[/microsoft.graph.agentIdentity]``: 204.

Authorization as Entra documents it for applications: an app token for Microsoft Graph carrying
``AgentIdentity.CreateAsManager`` lets a blueprint create agent identities of its own blueprint and
manage (read, update, delete) those, and nothing else; ``AgentIdentity.ReadWrite.All`` reaches
every agent identity. Agent identities may not create agent identities. Error codes are Graph's
(``InvalidAuthenticationToken``, ``Authorization_RequestDenied``, ``Request_BadRequest``,
``Request_ResourceNotFound``, ``Request_UnsupportedQuery``) and the agent identity platform's
(``Error_AgentIdentitySelfCreateRequired``, ``AgentIdentity_IncompatibleParentType``, ...).

A created identity is a service principal of kind ``agent_identity`` in the sandbox's world, so the
token service issues its agent tokens through its blueprint (``agent_grants``) and RBAC sees its role
assignments. Deleting it deletes its role assignments too: a deleted principal's assignments no
longer grant anything (Azure shows them as "Identity not found"; here they simply go).
"""

from __future__ import annotations

import datetime
import re
import time
import uuid
from typing import Any

from azure_agent_mcp.sandbox.principals import ServicePrincipal
from azure_agent_mcp.sandbox.protocol import BadRequestBodyError, Request, Response, json_response
from azure_agent_mcp.sandbox.tokens import TokenExpiredError, TokenInvalidError

GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_VERSIONS = ("v1.0", "beta")
AGENT_IDENTITY_SEGMENT = "microsoft.graph.agentidentity"
CREATE_AS_MANAGER = "AgentIdentity.CreateAsManager"
READ_WRITE_ALL = "AgentIdentity.ReadWrite.All"
MAX_TAGS = 50
MAX_PAGE = 100
_FILTER_CLAUSE = re.compile(
    r"""\s*(?:tags/any\(\s*(?P<var>\w+)\s*:\s*(?P=var)\s+eq\s+'(?P<tag>(?:[^']|'')*)'\s*\)"""
    r"""|(?P<prop>agentIdentityBlueprintId|displayName)\s+eq\s+'(?P<value>(?:[^']|'')*)')\s*""",
    re.IGNORECASE,
)
_SPONSOR = re.compile(r"^https://[^/]+/(?:v1\.0|beta)/(?P<kind>users|groups)/(?P<id>[0-9a-fA-F-]{36})$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def handles(segments: list[str]) -> bool:
    """Graph's agent identity paths: ``/{v1.0|beta}/servicePrincipals/...`` (segments lower-cased)."""
    return len(segments) >= 2 and segments[0] in GRAPH_VERSIONS and segments[1] == "serviceprincipals"


class GraphAgentsPlane:
    def __init__(self, state: Any) -> None:
        self.state = state

    def handle(self, request: Request, segments: list[str]) -> Response:
        log: dict[str, Any] = {"graph_operation": None, "caller_appid": None}
        try:
            response = self._route(request, segments, log)
        except GraphError as exc:
            return self._error(request, exc, log)
        for key, value in log.items():  # what the request log names: operation, caller, identity (never a token)
            response.log.setdefault(key, value)
        return response

    # -- routing ---------------------------------------------------------------------------------

    def _route(self, request: Request, segments: list[str], log: dict[str, Any]) -> Response:
        version, rest = segments[0], segments[2:]
        caller = self._authenticate(request)
        log["caller_appid"] = caller.get("appid")
        method = request.method
        if rest == [AGENT_IDENTITY_SEGMENT]:
            if method == "POST":
                log["graph_operation"] = "create"
                return self._create(request, version, caller, log)
            if method == "GET":
                log["graph_operation"] = "list"
                return self._list(request, version, caller)
            raise GraphError(405, "Request_BadRequest", f"The method {method} is not allowed on this collection.")
        if len(rest) in (1, 2) and (len(rest) == 1 or rest[1] == AGENT_IDENTITY_SEGMENT):
            object_id = rest[0]
            log["agent_identity"] = object_id
            if method == "GET":
                log["graph_operation"] = "get"
                return self._get(request, version, caller, object_id)
            if method == "DELETE":
                log["graph_operation"] = "delete"
                return self._delete(caller, object_id)
            if method == "PATCH" and len(rest) == 2:
                log["graph_operation"] = "update"
                return self._update(request, caller, object_id)
            raise GraphError(405, "Request_BadRequest", f"The method {method} is not allowed on this resource.")
        raise GraphError(400, "Request_BadRequest", "Invalid request: the sandbox's Microsoft Graph serves agent "
                                                    "identities only (/servicePrincipals/microsoft.graph.agentIdentity).")

    # -- authentication and authorization ---------------------------------------------------------

    def _authenticate(self, request: Request) -> dict[str, Any]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = self.state.tokens.verify(token.strip())
        except TokenExpiredError as exc:
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.") \
                from exc
        except TokenInvalidError as exc:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.") from exc
        if claims.get("aud") not in (GRAPH_AUDIENCE, GRAPH_AUDIENCE + "/", "00000003-0000-0000-c000-000000000000"):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        return claims

    def _caller_sp(self, claims: dict[str, Any]) -> ServicePrincipal:
        if claims.get("idtyp") != "app":
            raise GraphError(403, "Authorization_RequestDenied",
                             "Insufficient privileges to complete the operation. The sandbox's agent identity "
                             "endpoints take application tokens (a blueprint's) only.")
        caller = self.state.world.sp_by_client_id(str(claims.get("appid", "")))
        if caller is None:
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        return caller

    def _may_manage(self, claims: dict[str, Any], agent: ServicePrincipal) -> bool:
        roles = set(claims.get("roles") or [])
        if READ_WRITE_ALL in roles:
            return True
        return CREATE_AS_MANAGER in roles and (agent.parent_app_id or "").lower() == str(claims.get("appid", "")).lower()

    def _require_role(self, claims: dict[str, Any]) -> None:
        if not {CREATE_AS_MANAGER, READ_WRITE_ALL} & set(claims.get("roles") or []):
            raise GraphError(403, "Authorization_RequestDenied",
                             f"Insufficient privileges to complete the operation: the application needs "
                             f"{CREATE_AS_MANAGER} (its own agent identities) or {READ_WRITE_ALL}.")

    # -- operations ---------------------------------------------------------------------------------

    def _create(self, request: Request, version: str, claims: dict[str, Any], log: dict[str, Any]) -> Response:
        caller = self._caller_sp(claims)
        if caller.kind == "agent_identity":
            raise GraphError(403, "Error_AgentIdentitiesCreatingAgentIdentitiesNotAllowed",
                             "Agent identities can't create other agent identities: use the agent identity blueprint.")
        self._require_role(claims)
        body = self._body(request)
        display_name = body.get("displayName")
        if not isinstance(display_name, str) or not display_name.strip():
            raise GraphError(400, "Request_BadRequest", "The request body must contain displayName.")
        if len(display_name) > 256:
            raise GraphError(400, "Request_BadRequest", "displayName is longer than 256 characters.")
        blueprint_id = body.get("agentIdentityBlueprintId")
        if not isinstance(blueprint_id, str) or not _GUID.match(blueprint_id):
            raise GraphError(400, "Request_BadRequest",
                             "The request body must contain agentIdentityBlueprintId: the app id of the blueprint.")
        blueprint = self.state.world.sp_by_client_id(blueprint_id)
        if blueprint is None:
            raise GraphError(400, "AgentIdentity_AgentBlueprintPrincipalDoesNotExist",
                             f"The required agent identity blueprint principal doesn't exist for blueprint "
                             f"'{blueprint_id}'.")
        if blueprint.kind != "agent_blueprint":
            raise GraphError(400, "AgentIdentity_IncompatibleParentType",
                             f"The application '{blueprint_id}' isn't an agent identity blueprint.")
        if READ_WRITE_ALL not in set(claims.get("roles") or []) and blueprint.client_id.lower() != caller.client_id.lower():
            code = ("Error_AgentBlueprintCannotCreateAssociatedIdentity" if caller.kind == "agent_blueprint"
                    else "Error_AgentIdentitySelfCreateRequired")
            raise GraphError(403, code, f"Applications can only create agent identities under themselves: "
                                        f"agentIdentityBlueprintId '{blueprint_id}' is not the caller "
                                        f"'{caller.client_id}'.")
        sponsors = self._sponsors(body.get("sponsors@odata.bind"))
        tags = self._tags(body.get("tags", []))
        unknown = sorted(set(body) - {"displayName", "agentIdentityBlueprintId", "sponsors@odata.bind", "tags",
                                      "@odata.type"})
        if unknown:
            raise GraphError(400, "AgentBlueprintPrincipal_AgentIdentity_IncompatibleProperty",
                             f"The property '{unknown[0]}' is incompatible with agent identities and can't be set.")
        object_id = str(uuid.uuid4())
        agent = ServicePrincipal(
            name=f"agent-{object_id[:8]}", client_id=object_id, object_id=object_id, client_secret="",
            display_name=display_name, kind="agent_identity", parent_app_id=blueprint.client_id,
            directory={"tags": tags, "sponsors": sponsors, "createdDateTime": _iso_at(self._now()),
                       "createdByAppId": caller.client_id},
        )
        self.state.world.service_principals.append(agent)
        log["agent_identity"] = object_id
        return json_response(201, {
            "@odata.context": f"{GRAPH_AUDIENCE}/{version}/$metadata#servicePrincipals/$entity",
            **self._entity(agent),
        }, [("location", f"{self.state.origin}/{version}/servicePrincipals/{object_id}")], **log)

    def _list(self, request: Request, version: str, claims: dict[str, Any]) -> Response:
        self._caller_sp(claims)
        self._require_role(claims)
        clauses = self._filter(request.query_ci("$filter"))
        top = request.query_ci("$top")
        limit = MAX_PAGE
        if top is not None:
            if not top.isdigit() or not 1 <= int(top) <= 999:
                raise GraphError(400, "Request_BadRequest", f"Invalid page size specified: '{top}'. Must be between "
                                                            "1 and 999 inclusive.")
            limit = min(int(top), MAX_PAGE)
        found = [sp for sp in self._agents() if self._may_manage(claims, sp) and _matches(sp, clauses)]
        return json_response(200, {
            "@odata.context": f"{GRAPH_AUDIENCE}/{version}/$metadata#servicePrincipals/microsoft.graph.agentIdentity",
            "value": [self._entity(sp) for sp in found[:limit]],
        })

    def _get(self, request: Request, version: str, claims: dict[str, Any], object_id: str) -> Response:
        self._caller_sp(claims)
        self._require_role(claims)
        agent = self._managed(claims, object_id)
        entity = self._entity(agent)
        expand = (request.query_ci("$expand") or "").lower()
        if "sponsors" in [part.strip() for part in expand.split(",")]:
            entity["sponsors"] = [{"@odata.type": f"#microsoft.graph.{kind[:-1]}", "id": oid}
                                  for kind, oid in agent.directory.get("sponsors", [])]
        return json_response(200, {
            "@odata.context": f"{GRAPH_AUDIENCE}/{version}/$metadata#servicePrincipals/$entity", **entity,
        })

    def _update(self, request: Request, claims: dict[str, Any], object_id: str) -> Response:
        self._caller_sp(claims)
        self._require_role(claims)
        agent = self._managed(claims, object_id)
        body = self._body(request)
        unknown = sorted(set(body) - {"displayName", "tags"})
        if unknown:
            raise GraphError(400, "AgentBlueprintPrincipal_AgentIdentity_IncompatibleProperty",
                             f"The property '{unknown[0]}' is incompatible with agent identities and can't be set.")
        if "displayName" in body:
            if not isinstance(body["displayName"], str) or not body["displayName"].strip():
                raise GraphError(400, "Request_BadRequest", "displayName must be a non-empty string.")
            agent.display_name = body["displayName"]
        if "tags" in body:
            agent.directory["tags"] = self._tags(body["tags"])
        return Response(204, b"")

    def _delete(self, claims: dict[str, Any], object_id: str) -> Response:
        self._caller_sp(claims)
        self._require_role(claims)
        agent = self._managed(claims, object_id)
        world = self.state.world
        world.service_principals.remove(agent)
        # in place: the authorizer holds this very list
        world.role_assignments[:] = [a for a in world.role_assignments if a.principal_id != agent.object_id]
        self.state.authorizer.invalidate()
        return Response(204, b"", [], {"deleted_agent_identity": agent.object_id})

    # -- helpers ------------------------------------------------------------------------------------

    def _now(self) -> float:
        """The sandbox clock (``state.clock``) where there is one, else real time."""
        clock = getattr(self.state, "clock", None)
        return float(clock.now()) if clock is not None else time.time()

    def _agents(self) -> list[ServicePrincipal]:
        return [sp for sp in self.state.world.service_principals if sp.kind == "agent_identity"]

    def _managed(self, claims: dict[str, Any], object_id: str) -> ServicePrincipal:
        for sp in self._agents():
            if sp.object_id.lower() == object_id.lower():
                if not self._may_manage(claims, sp):
                    raise GraphError(403, "Authorization_RequestDenied",
                                     "Insufficient privileges to complete the operation: a blueprint manages only "
                                     "its own agent identities.")
                return sp
        raise GraphError(404, "Request_ResourceNotFound",
                         f"Resource '{object_id}' does not exist or one of its queried reference-property objects "
                         "are not present.")

    def _entity(self, agent: ServicePrincipal) -> dict[str, Any]:
        directory = agent.directory
        return {
            "@odata.type": "#microsoft.graph.agentIdentity",
            "id": agent.object_id,
            "displayName": agent.display_name,
            "agentIdentityBlueprintId": agent.parent_app_id,
            "createdByAppId": directory.get("createdByAppId"),
            "createdDateTime": directory.get("createdDateTime"),
            "accountEnabled": True,
            "disabledByMicrosoftStatus": None,
            "servicePrincipalType": "ServiceIdentity",
            "tags": list(directory.get("tags", [])),
        }

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = request.json()
        except BadRequestBodyError as exc:
            raise GraphError(400, "BadRequest", f"Unable to read JSON request payload: {exc}.") from exc
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload: expected a JSON object.")
        return body

    def _sponsors(self, value: Any) -> list[tuple[str, str]]:
        if not isinstance(value, list) or not value:
            raise GraphError(400, "Request_BadRequest",
                             "The request body must contain a valid sponsor reference: sponsors@odata.bind with at "
                             "least one user or group URL (https://graph.microsoft.com/v1.0/users/{id}).")
        sponsors = []
        for ref in value:
            match = _SPONSOR.match(ref) if isinstance(ref, str) else None
            if match is None:
                raise GraphError(400, "Request_BadRequest", f"Invalid sponsor reference {ref!r}: expected "
                                                            "https://graph.microsoft.com/v1.0/users/{id} or .../groups/{id}.")
            kind, oid = match.group("kind"), match.group("id").lower()
            if kind == "users" and self.state.world.user_by_oid(oid) is None:
                raise GraphError(404, "Request_ResourceNotFound",
                                 f"Resource '{oid}' does not exist or one of its queried reference-property objects "
                                 "are not present.")
            sponsors.append((kind, oid))
        return sponsors

    def _tags(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t) <= 256 for t in value):
            raise GraphError(400, "Request_BadRequest", "tags must be a list of strings of 1 to 256 characters.")
        if len(value) > MAX_TAGS:
            raise GraphError(400, "Request_BadRequest", f"At most {MAX_TAGS} tags can be set.")
        return list(value)

    def _filter(self, text: str | None) -> list[tuple[str, str]]:
        if text is None or not text.strip():
            return []
        clauses = []
        for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
            match = _FILTER_CLAUSE.fullmatch(part)
            if match is None:
                raise GraphError(400, "Request_UnsupportedQuery",
                                 f"Unsupported or invalid query filter clause specified: '{part.strip()}'. The "
                                 "sandbox filters on tags/any(t:t eq '...'), agentIdentityBlueprintId eq '...', "
                                 "displayName eq '...'.")
            if match.group("tag") is not None:
                clauses.append(("tag", match.group("tag").replace("''", "'")))
            else:
                clauses.append((match.group("prop").lower(), match.group("value").replace("''", "'")))
        return clauses

    def _error(self, request: Request, exc: GraphError, log: dict[str, Any]) -> Response:
        return json_response(exc.status, {"error": {
            "code": exc.code,
            "message": exc.message,
            "innerError": {"date": _iso_at(self._now()), "request-id": str(uuid.uuid4()),
                           "client-request-id": request.headers.get("client-request-id") or str(uuid.uuid4())},
        }}, error_code=exc.code, **log)


def _matches(agent: ServicePrincipal, clauses: list[tuple[str, str]]) -> bool:
    for name, value in clauses:
        if name == "tag" and value not in agent.directory.get("tags", []):
            return False
        if name == "agentidentityblueprintid" and (agent.parent_app_id or "").lower() != value.lower():
            return False
        if name == "displayname" and agent.display_name != value:
            return False
    return True


def _iso_at(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
