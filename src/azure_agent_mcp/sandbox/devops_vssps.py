"""vssps.dev.azure.com: identity search (how reviewers are found) and personal access tokens.

PATs are listed without their secret and created returning the token exactly once, as the
service does; the sandbox keeps only a hash. Both PAT operations are secret-bearing: an
agent-session token is refused them (the RP agent rule, switchable through the admin API).
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
import uuid

from azure_agent_mcp.sandbox.devops_errors import bad_request
from azure_agent_mcp.sandbox.devops_fields import member_named
from azure_agent_mcp.sandbox.devops_identity import identity
from azure_agent_mcp.sandbox.devops_routes import Call, Route, listing, now_iso
from azure_agent_mcp.sandbox.devops_world import PersonalAccessToken
from azure_agent_mcp.sandbox.protocol import Response, json_response

_FILTERS = ("general", "accountname", "displayname", "mailaddress", "directoryalias")
MAX_PAT_DAYS = 366


def _identities(call: Call) -> Response:
    ids = call.query("identityIds")
    if ids:
        found = [call.org.member_by_vsid(i.strip()) for i in ids.split(",")[:100]]
        return listing([identity(m, call.tenant_id) if m else None for m in found])
    search = (call.query("searchFilter") or "").lower()
    value = call.query("filterValue")
    if search not in _FILTERS or value is None:
        raise bad_request("Identities are looked up with searchFilter=General&filterValue=<sign-in name or display "
                          "name>, or with identityIds=<id,id>.")
    wanted = value.strip().lower()
    matches = []
    for member in call.org.members.values():
        names = {"general": (member.upn, member.display_name), "accountname": (member.upn,),
                 "displayname": (member.display_name,), "mailaddress": (member.upn,),
                 "directoryalias": (member.upn.split("@")[0],)}[search]
        if wanted and any(n.lower() == wanted for n in names):
            matches.append(member)
    if not matches and search == "general":
        exact = member_named(call.org, value)
        matches = [exact] if exact else []
    return listing([identity(m, call.tenant_id) for m in matches])


def _pat_json(pat: PersonalAccessToken, token: str | None = None) -> dict[str, object]:
    return {"displayName": pat.display_name, "validTo": pat.valid_to, "scope": pat.scope,
            "targetAccounts": pat.target_accounts, "validFrom": pat.valid_from,
            "authorizationId": pat.authorization_id, "token": token}


def _pats(call: Call) -> Response:
    mine = [p for p in call.org.pats if p.owner == call.member.object_id]
    return json_response(200, {"continuationToken": "", "patTokens": [_pat_json(p) for p in mine]})


def _pat_create(call: Call) -> Response:
    body = call.json_object("token")
    name, scope = body.get("displayName"), body.get("scope")
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise bad_request("displayName is required (at most 256 characters).")
    if not isinstance(scope, str) or not scope.strip():
        raise bad_request("scope is required: space-separated scopes such as \"vso.code vso.work\".")
    now = datetime.datetime.now(datetime.timezone.utc)
    valid_to = now + datetime.timedelta(days=30)
    raw_to = body.get("validTo")
    if raw_to is not None:
        try:
            valid_to = datetime.datetime.fromisoformat(str(raw_to).replace("Z", "+00:00"))
        except ValueError as exc:
            raise bad_request("validTo must be an ISO 8601 date-time such as 2027-01-01T00:00:00Z.") from exc
        if valid_to.tzinfo is None:
            valid_to = valid_to.replace(tzinfo=datetime.timezone.utc)
        if not now < valid_to <= now + datetime.timedelta(days=MAX_PAT_DAYS):
            return json_response(200, {"patToken": None, "patTokenError": "invalidExpiration"})
    token = secrets.token_urlsafe(39)[:52]
    pat = PersonalAccessToken(str(uuid.uuid4()), call.member.object_id, name, scope, now_iso(),
                              valid_to.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                              [] if body.get("allOrgs") else [call.org.org_id],
                              hashlib.sha256(token.encode()).hexdigest())
    call.org.pats.append(pat)
    return json_response(200, {"patToken": _pat_json(pat, token), "patTokenError": "none"})


ROUTES = (
    Route("GET", ("identities",), "AzureDevOps/identities/read", _identities, level="vssps"),
    Route("GET", ("tokens", "pats"), "AzureDevOps/tokens/pats/read", _pats, level="vssps", preview_only=True,
          secret=True),
    Route("POST", ("tokens", "pats"), "AzureDevOps/tokens/pats/write", _pat_create, level="vssps",
          preview_only=True, secret=True),
)
