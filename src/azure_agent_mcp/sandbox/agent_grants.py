"""Microsoft Entra Agent ID's token exchanges, as the sandbox's token service performs them.

Three legs, each a request to ``/oauth2/v2.0/token``:

1. the **blueprint** authenticates with its own credential (secret, certificate, or a federated
   credential) and asks ``client_credentials`` for ``api://AzureADTokenExchange/.default`` with
   ``fmi_path`` = one of its agent identities -> exchange token T1 (``azp`` = blueprint,
   ``sub`` = ``/eid1/c/pub/t/<tenant>/a/<blueprint>/<agent identity>``);
2. the **agent identity** (no credential of its own) asks ``client_credentials`` with T1 as its
   ``client_assertion``: for a resource it gets the token of an agent acting autonomously
   (``idtyp`` app, ``appid`` = agent identity, ``xms_act_fct`` and ``xms_sub_fct`` with 11,
   ``xms_par_app_azp`` = blueprint); for ``api://AzureADTokenExchange/.default`` it gets T2, the
   agent identity's own exchange token;
3. ``grant_type=user_fic``: the agent identity (T1 as client assertion) presents T2 as
   ``user_federated_identity_credential`` with ``username`` or ``user_id`` of its agent user and
   gets a user token (``idtyp`` user, ``upn`` of the agent user, ``xms_sub_fct`` with 13).

Claim values follow Entra's agent token claims reference (facet 11 = agent identity, 13 = agent's
user account). With the wrong-identity switch on, legs 2 and 3 answer resource requests with a
token of the shared project identity instead: the mistake identity pinning must catch.
Error codes in the 82xxx range are the sandbox's own; the others are Entra's.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from azure_agent_mcp.sandbox.agent_world import PROJECT_CLIENT_ID, TOKEN_EXCHANGE_AUDIENCE
from azure_agent_mcp.sandbox.entra_errors import JWT_BEARER_ASSERTION, AadError
from azure_agent_mcp.sandbox.tokens import TokenExpiredError, TokenInvalidError, b64url
from azure_agent_mcp.sandbox.world import TENANT_DOMAIN, ServicePrincipal, User

AGENT_IDENTITY_FACET = "11"
AGENT_USER_FACET = "13"
# Entra's documented example of an autonomous agent token carries these facet lists.
AUTONOMOUS_ACTOR_FACETS = "3 9 11"
AUTONOMOUS_SUBJECT_FACETS = "9 3 11"
AGENT_USER_SUBJECT_FACETS = "3 13"
USER_FIC_GRANT = "user_fic"

LOGGED_CLAIMS = ("aud", "sub", "oid", "appid", "azp", "idtyp", "upn", "xms_act_fct", "xms_sub_fct",
                 "xms_par_app_azp", "xms_idrel", "xms_cli_ses", "xms_cli_sid", "xms_agent_session")


def claims_summary(claims: dict[str, Any]) -> dict[str, Any]:
    """The identifying claims of an issued token, for the request log (never the token itself)."""
    return {name: claims[name] for name in LOGGED_CLAIMS if name in claims}


def fmi_subject(tenant_id: str, blueprint_app_id: str, fmi_path: str) -> str:
    """The ``sub`` Entra puts into a blueprint's exchange token for ``fmi_path``."""
    def packed(guid: str) -> str:
        return b64url(uuid.UUID(guid).bytes_le)

    return f"/eid1/c/pub/t/{packed(tenant_id)}/a/{packed(blueprint_app_id)}/{fmi_path}"


class AgentIdGrants:
    """The three legs, sharing the token service's key, clock, claims builder and error shape."""

    def __init__(self, plane: Any) -> None:
        self.plane = plane
        self.state = plane.state

    # -- leg 1: the blueprint's exchange token ------------------------------------------------

    def blueprint_exchange(self, blueprint: ServicePrincipal, fmi_path: str, scope: str, markers: dict[str, Any],
                           appidacr: str, log: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
        if blueprint.kind != "agent_blueprint":
            raise AadError(400, "unauthorized_client", 82002,
                           f"Application '{blueprint.client_id}' is not an agent identity blueprint, so it cannot "
                           "request tokens with fmi_path.")
        audience, _, _ = self.plane._resource_of(scope, app=True)
        if audience != TOKEN_EXCHANGE_AUDIENCE:
            raise AadError(400, "invalid_scope", 82007,
                           f"A request with fmi_path must ask for {TOKEN_EXCHANGE_AUDIENCE}/.default, not '{scope}'.")
        agent = self.state.world.sp_by_client_id(fmi_path)
        if agent is None or agent.kind != "agent_identity" or (agent.parent_app_id or "").lower() != \
                blueprint.client_id.lower():
            raise AadError(400, "unauthorized_client", 82001,
                           f"The fmi_path '{fmi_path}' is not an agent identity of blueprint '{blueprint.client_id}': "
                           "a blueprint may only impersonate its own agent identities.")
        log["agent_identity"] = agent.client_id
        claims = self.plane._base_claims(TOKEN_EXCHANGE_AUDIENCE, blueprint.object_id, blueprint.client_id, markers)
        claims.update({"idtyp": "app", "roles": [], "appidacr": appidacr, "xms_idrel": "7",
                       "sub": fmi_subject(self.state.tenant_id, blueprint.client_id, agent.client_id)})
        return self._app_payload(claims), claims["uti"], blueprint.object_id

    def verify_federated_assertion(self, app: ServicePrincipal, assertion: str) -> None:
        """A sandbox-issued exchange token as an app's client assertion (a federated identity credential)."""
        claims = self._verify_token(assertion, client_error=True)
        if claims.get("aud") != TOKEN_EXCHANGE_AUDIENCE:
            raise AadError(401, "invalid_client", 700212,
                           f"The federated credential's audience must be {TOKEN_EXCHANGE_AUDIENCE}.")
        if str(claims.get("sub")) not in app.federated_subjects:
            raise AadError(401, "invalid_client", 700213,
                           f"No matching federated identity record found for presented assertion subject "
                           f"'{claims.get('sub')}' on application '{app.client_id}'.")

    # -- leg 2: the agent identity, with the blueprint's exchange token as its credential ----------

    def agent_identity_credentials(self, agent: ServicePrincipal, form: dict[str, str], markers: dict[str, Any],
                                   log: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
        self._authenticate_agent(agent, form)
        log["agent_identity"] = agent.client_id
        audience, _, _ = self.plane._resource_of(form.get("scope", ""), app=True)
        if audience == TOKEN_EXCHANGE_AUDIENCE:
            claims = self._agent_claims(agent, TOKEN_EXCHANGE_AUDIENCE, markers)
        elif self.state.wrong_identity:
            claims = self._project_claims(audience, markers, log)
        else:
            claims = self._agent_claims(agent, audience, markers)
        return self._app_payload(claims), claims["uti"], claims["oid"]

    def _authenticate_agent(self, agent: ServicePrincipal, form: dict[str, str]) -> dict[str, Any]:
        """The agent identity has no credential: only its blueprint's exchange token for it will do."""
        assertion = form.get("client_assertion")
        if not assertion:
            raise AadError(401, "invalid_client", 82003,
                           f"'{agent.client_id}' is an agent identity and has no credentials of its own: authenticate "
                           "with client_assertion = an exchange token its blueprint obtained with fmi_path.")
        if form.get("client_assertion_type") != JWT_BEARER_ASSERTION:
            raise AadError(400, "invalid_request", 700026,
                           f"The client_assertion_type must be '{JWT_BEARER_ASSERTION}'.")
        claims = self._verify_token(assertion, client_error=True)
        if claims.get("aud") != TOKEN_EXCHANGE_AUDIENCE:
            raise AadError(401, "invalid_client", 700212,
                           f"The client assertion's audience must be {TOKEN_EXCHANGE_AUDIENCE}: present the exchange "
                           "token of the agent identity's blueprint.")
        parent = agent.parent_app_id or ""
        if str(claims.get("azp", "")).lower() != parent.lower() or claims.get("sub") != fmi_subject(
                self.state.tenant_id, parent, agent.client_id):
            raise AadError(401, "invalid_client", 700021,
                           f"Client assertion application identifier doesn't match 'client_id' parameter: the exchange "
                           f"token was not issued by blueprint '{parent}' for agent identity '{agent.client_id}'.")
        return claims

    def _agent_claims(self, agent: ServicePrincipal, audience: str, markers: dict[str, Any]) -> dict[str, Any]:
        claims = self.plane._base_claims(audience, agent.object_id, agent.client_id, markers)
        claims.update({"idtyp": "app", "roles": [], "appidacr": "2", "xms_idrel": "7",
                       "xms_act_fct": AUTONOMOUS_ACTOR_FACETS, "xms_sub_fct": AUTONOMOUS_SUBJECT_FACETS,
                       "xms_par_app_azp": agent.parent_app_id})
        return claims

    def _project_claims(self, audience: str, markers: dict[str, Any], log: dict[str, Any]) -> dict[str, Any]:
        """The wrong-identity switch: a plain app token of the shared project identity."""
        project = self.state.world.sp_by_client_id(PROJECT_CLIENT_ID)
        assert project is not None, "the seed world always has the project identity"
        log["wrong_identity"] = True
        claims = self.plane._base_claims(audience, project.object_id, project.client_id, markers)
        claims.update({"idtyp": "app", "roles": [], "appidacr": "1", "xms_idrel": "7"})
        return claims

    def _app_payload(self, claims: dict[str, Any]) -> dict[str, Any]:
        return {
            "token_type": "Bearer",
            "expires_in": self.state.token_lifetime,
            "ext_expires_in": self.state.token_lifetime,
            "access_token": self.state.tokens.sign(claims),
        }

    def _user_payload(self, claims: dict[str, Any], user: User, agent: ServicePrincipal,
                      resource_scopes: list[str]) -> dict[str, Any]:
        """A user token answer MSAL can file under the agent user's account. No refresh token: the agent
        user is reached again through a fresh exchange, never through a long-lived credential."""
        now = claims["iat"]
        id_token = self.state.tokens.sign({
            "aud": agent.client_id, "iss": self.state.issuer, "iat": now, "nbf": now - 5,
            "exp": now + self.state.token_lifetime, "oid": user.object_id, "sub": user.object_id,
            "tid": self.state.tenant_id, "preferred_username": user.upn, "name": user.display_name, "ver": "2.0",
        })
        client_info = b64url(json.dumps({"uid": user.object_id, "utid": self.state.tenant_id}).encode())
        return {
            "token_type": "Bearer",
            "scope": " ".join(resource_scopes + ["openid", "profile"]),
            "expires_in": self.state.token_lifetime,
            "ext_expires_in": self.state.token_lifetime,
            "access_token": self.state.tokens.sign(claims),
            "id_token": id_token,
            "client_info": client_info,
        }

    # -- leg 3: user_fic, the agent identity acting as its agent user -------------------------------

    def user_fic(self, form: dict[str, str], markers: dict[str, Any],
                 log: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
        client_id = form.get("client_id", "")
        agent = self.state.world.sp_by_client_id(client_id)
        if agent is None:
            raise AadError(400, "unauthorized_client", 700016,
                           f"Application with identifier '{client_id}' was not found in the directory "
                           f"'{TENANT_DOMAIN}'.")
        if agent.kind != "agent_identity":
            raise AadError(400, "unauthorized_client", 82006,
                           f"Application '{client_id}' is not an agent identity: the user_fic grant is only for agent "
                           "identities acting as their agent user.")
        self._authenticate_agent(agent, form)
        log["agent_identity"] = agent.client_id
        credential = form.get("user_federated_identity_credential")
        if not credential:
            raise AadError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: "
                           "'user_federated_identity_credential'.")
        fic = self._verify_token(credential, client_error=False)
        if fic.get("aud") != TOKEN_EXCHANGE_AUDIENCE or str(fic.get("oid", "")).lower() != agent.object_id.lower() \
                or str(fic.get("azp", "")).lower() != agent.client_id.lower():
            raise AadError(400, "invalid_grant", 82004,
                           f"The user_federated_identity_credential is not an exchange token of agent identity "
                           f"'{agent.client_id}' (audience {TOKEN_EXCHANGE_AUDIENCE}).")
        user = self._agent_user(agent, form.get("username"), form.get("user_id"), log)
        audience, scp, resource_scopes = self.plane._resource_of(form.get("scope", ""), app=False)
        if self.state.wrong_identity:
            claims = self._project_claims(audience, markers, log)
            return self._app_payload(claims), claims["uti"], claims["oid"]
        claims = self.plane._base_claims(audience, user.object_id, agent.client_id, markers)
        claims.update({"upn": user.upn, "unique_name": user.upn, "name": user.display_name, "idtyp": "user",
                       "scp": scp, "appidacr": "2", "xms_idrel": "1", "xms_act_fct": AUTONOMOUS_ACTOR_FACETS,
                       "xms_sub_fct": AGENT_USER_SUBJECT_FACETS, "xms_par_app_azp": agent.parent_app_id})
        return self._user_payload(claims, user, agent, resource_scopes), claims["uti"], user.object_id

    def _agent_user(self, agent: ServicePrincipal, username: str | None, user_id: str | None,
                    log: dict[str, Any]) -> User:
        if not username and not user_id:
            raise AadError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'username' or 'user_id'.")
        log["agent_user"] = username or user_id
        world = self.state.world
        user = world.agent_user(upn=username) if username else world.agent_user(object_id=user_id)
        if user is None:
            human = world.user_by_upn(username) if username else None
            if human is not None or (user_id and any(u.object_id == user_id for u in world.users)):
                raise AadError(400, "invalid_grant", 82005,
                               f"The user '{username or user_id}' is not an agent user: user_fic only acts as an agent "
                               "user linked to the requesting agent identity.")
            raise AadError(400, "invalid_grant", 50034,
                           f"The user account {username or user_id} does not exist in the {TENANT_DOMAIN} directory.")
        if (user.agent_identity_id or "").lower() != agent.client_id.lower():
            raise AadError(400, "invalid_grant", 82005,
                           f"Agent user '{user.upn}' belongs to another agent identity: an agent user can be "
                           "impersonated only by its own agent identity.")
        return user

    # -- shared ------------------------------------------------------------------------------------

    def _verify_token(self, token: str, *, client_error: bool) -> dict[str, Any]:
        """A token this sandbox issued, still valid (client assertion or grant assertion)."""
        status, error = (401, "invalid_client") if client_error else (400, "invalid_grant")
        try:
            return self.state.tokens.verify(token)
        except TokenExpiredError as exc:
            raise AadError(status, error, 700024 if client_error else 500133,
                           "The assertion is not within its valid time range: the exchange token has expired; "
                           "request a new one.") from exc
        except TokenInvalidError as exc:
            raise AadError(status, error, 700027 if client_error else 50013,
                           f"The assertion failed signature validation ({exc}).") from exc
