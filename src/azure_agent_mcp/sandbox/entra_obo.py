"""The on-behalf-of grant: a middle-tier API trades the user token it received for one to call ARM or Key Vault.

``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with ``requested_token_use=on_behalf_of``,
the incoming token as ``assertion``, the downstream ``scope``, and the middle tier's own client
credential (secret, certificate assertion or federated assertion). The assertion must be a user
token this tenant issued, unexpired, for this very client (its client id or app id URI), carrying
one of the scopes the client exposes. The issued token belongs to the user (``oid``, ``upn``) and
names the middle tier as its client (``appid``/``azp``); the agent markers come from this request's
``client_session``/``claims``, exactly as on every other grant. The user must have consented to the
client calling that resource (AADSTS65001 otherwise). A refresh token comes back, as Entra sends one;
redeeming it needs the client's credential again and the consent still in place.
"""

from __future__ import annotations

from typing import Any

from azure_agent_mcp.sandbox.entra_errors import AadError
from azure_agent_mcp.sandbox.mcp_world import consent_resource
from azure_agent_mcp.sandbox.principals import Consent, ServicePrincipal, User
from azure_agent_mcp.sandbox.protocol import Request
from azure_agent_mcp.sandbox.tokens import TokenExpiredError, TokenInvalidError

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ON_BEHALF_OF = "on_behalf_of"


class OnBehalfOf:
    """The grant, sharing the token service's client authentication, claims builder and refresh tokens."""

    def __init__(self, plane: Any) -> None:
        self.plane = plane
        self.state = plane.state

    def exchange(self, request: Request, tenant: str, form: dict[str, str], markers: dict[str, Any],
                 log: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
        if form.get("requested_token_use") != ON_BEHALF_OF:
            raise AadError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'requested_token_use' "
                           f"(the sandbox supports the jwt-bearer grant for '{ON_BEHALF_OF}' only).")
        assertion = form.get("assertion", "")
        if not assertion:
            raise AadError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'assertion'.")
        client, appidacr = self.plane.authenticate_client(request, tenant, form)
        user, amr = self._verify_user_assertion(client, assertion)
        log["on_behalf_of"] = user.object_id
        scope = form.get("scope", "")
        self._require_consent(user, client, scope)
        answered = self._misdirected(user)
        if answered is not user:
            log["answered_for"] = answered.object_id
        return self.plane._user_tokens(answered, client.client_id, scope, markers, amr, appidacr=appidacr,
                                       on_behalf_of=True)

    def _misdirected(self, user: User) -> User:
        """The user the token is issued for: the assertion's, unless the admin switch makes the grant
        answer for someone else (a faulty or hostile token service the server must not trust)."""
        if not self.state.obo_answers_for_another_user:
            return user
        return next((u for u in self.state.world.users if u.object_id != user.object_id), user)

    def refresh(self, request: Request, tenant: str, form: dict[str, str], held: Any, token: str,
                markers: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
        """An OBO refresh token: the client authenticates again; the consent must still hold."""
        try:
            client, appidacr = self.plane.authenticate_client(request, tenant, form)
            user = self.plane._user_by_oid(held.subject_oid)
            scope = form.get("scope", "")
            self._require_consent(user, client, scope)
        except AadError:
            self.plane.refresh_tokens[token] = held  # a refused request does not spend the refresh token
            raise
        return self.plane._user_tokens(user, client.client_id, scope, markers, "pwd", appidacr=appidacr,
                                       on_behalf_of=True)

    # -- the assertion --------------------------------------------------------------------------

    def _verify_user_assertion(self, client: ServicePrincipal, assertion: str) -> tuple[User, str]:
        try:
            claims = self.state.tokens.verify(assertion)
        except TokenExpiredError as exc:
            raise AadError(400, "invalid_grant", 500133,
                           "Assertion is not within its valid time range. Ensure that the access token is not "
                           "expired before using it for user assertion, or request a new token. Current time: "
                           f"{exc.now}, expiry time of assertion {exc.exp}.") from exc
        except TokenInvalidError as exc:
            reason = str(exc)
            if "malformed" in reason:
                raise AadError(400, "invalid_grant", 50027,
                               f"Invalid JWT token. The assertion is not a well-formed JWT ({reason}).") from exc
            raise AadError(400, "invalid_grant", 50013,
                           f"Assertion failed signature validation. [Reason - {reason}.]") from exc
        audiences = {client.client_id.lower(), *(u.lower() for u in client.app_id_uris)}
        audience = str(claims.get("aud", ""))
        if audience.lower() not in audiences or not client.api_scopes:
            expected = " or ".join([client.client_id, *client.app_id_uris])
            raise AadError(400, "invalid_grant", 500131,
                           f"Assertion audience does not match the Client app presenting the assertion. The "
                           f"audience in the assertion was '{audience}' and the expected audience is '{expected}' "
                           f"or one of the Application Uris of this application with App ID '{client.client_id}'"
                           f"({client.display_name}). The downstream client must request a token for the expected "
                           "audience (the application that made the OBO request) and this application should use "
                           "that token as the assertion.")
        if str(claims.get("tid", "")).lower() != self.state.tenant_id.lower():
            raise AadError(400, "invalid_grant", 50013,
                           "Assertion is invalid: it was issued for another tenant.")
        if claims.get("idtyp") != "user" or not claims.get("scp"):
            raise AadError(400, "invalid_grant", 50013,
                           "Assertion is invalid: it is an app-only token. On-behalf-of needs the token a user "
                           "signed in for (a delegated token with 'scp'), not one obtained with client credentials.")
        scopes = str(claims.get("scp", "")).split()
        if not any(s in client.api_scopes for s in scopes):
            raise AadError(400, "invalid_grant", 50013,
                           f"Assertion is invalid: its scopes ({' '.join(scopes)}) include none that application "
                           f"'{client.client_id}' exposes (" + ", ".join(client.api_scopes) + ").")
        user = self.state.world.user_by_oid(str(claims.get("oid", "")))
        if user is None:
            raise AadError(400, "invalid_grant", 50034,
                           "The user account of the assertion does not exist in the directory.")
        amr = claims.get("amr")
        return user, str(amr[0]) if isinstance(amr, list) and amr else "pwd"

    # -- consent --------------------------------------------------------------------------------

    def _require_consent(self, user: User, client: ServicePrincipal, scope: str) -> None:
        audience, _, resource_scopes = self.plane._resource_of(scope, app=False)
        resource = consent_resource(resource_scopes[0].rstrip("/").rpartition("/")[0])
        if Consent(user.object_id, client.client_id, resource) in self.state.world.consents:
            return
        consent_url = (f"{self.state.authority}/oauth2/v2.0/authorize?client_id={client.client_id}"
                       f"&response_type=code&scope={resource}/user_impersonation&prompt=consent"
                       f"&login_hint={user.upn}")
        raise AadError(400, "invalid_grant", 65001,
                       f"The user or administrator has not consented to use the application with ID "
                       f"'{client.client_id}' named '{client.display_name}'. Send an interactive authorization "
                       f"request for this user and resource. (User {user.upn} has not consented to "
                       f"'{client.display_name}' calling {resource} on their behalf; consent at {consent_url}, "
                       "or in the sandbox with Sandbox.grant_consent().)",
                       {"suberror": "consent_required"})
