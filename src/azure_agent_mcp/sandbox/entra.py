"""The Entra ID (v2.0) token service: discovery, JWKS, device code, and the token endpoint.

Grants: device_code (auto-approved for the developer, or the seeded user named by
``login_hint``), refresh_token (rotating: the old one stops working), password (seeded users),
client_credentials (client secret, a client assertion signed with a certificate registered
for the service principal, or a federated credential), authorization_code with PKCE (see
``entra_authorize``), the on-behalf-of grant (see ``entra_obo``), and Entra Agent ID's exchanges
(``fmi_path``, agent identity client assertions, ``user_fic``: see ``agent_grants``).
Tokens for an app that exposes an API (the MCP server app, ``mcp_world``) are v2 tokens whose
audience is its client id.
Agent markers: ``client_session`` (query or form body) becomes ``xms_cli_ses``; a ``claims``
request for ``xms_cli_sid`` / ``xms_agent_session`` / ``acrs`` is honoured. Errors are AAD-shaped (``error``, ``error_description`` "AADSTS...", ``error_codes``).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from azure_agent_mcp.sandbox.agent_grants import AgentIdGrants, claims_summary
from azure_agent_mcp.sandbox.entra_authorize import AUTHORIZATION_CODE_GRANT, AuthorizationCodes
from azure_agent_mcp.sandbox.entra_errors import (  # noqa: F401  (AadError, JWT_BEARER_ASSERTION: re-exported)
    JWT_BEARER_ASSERTION,
    AadError,
    error_response,
    unverified_header,
)
from azure_agent_mcp.sandbox.entra_obo import JWT_BEARER_GRANT, OnBehalfOf
from azure_agent_mcp.sandbox.protocol import BadRequestBodyError, Request, Response, json_response
from azure_agent_mcp.sandbox.tokens import b64url, new_uti
from azure_agent_mcp.sandbox.world import TENANT_DOMAIN, ServicePrincipal, User

OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
# resource (as requested, without trailing slash, lower) -> token audience
KNOWN_RESOURCES = {
    "https://management.azure.com": "https://management.azure.com/",
    "https://management.core.windows.net": "https://management.core.windows.net/",
    "https://vault.azure.net": "https://vault.azure.net",
    "https://api.loganalytics.io": "https://api.loganalytics.io",
    "https://graph.microsoft.com": "https://graph.microsoft.com",
    "api://azureadtokenexchange": "api://AzureADTokenExchange",
    # Azure DevOps is named by its application id; its tokens carry that id as audience
    "499b84ac-1321-427f-aa17-267ca6975798": "499b84ac-1321-427f-aa17-267ca6975798",
}
_GUID_RESOURCE = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}/[^/]+")
"""A resource named by its application id, as Azure DevOps is: ``499b84ac-.../.default``."""
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MAX_SESSION_ID = 256
DEVICE_CODE_LIFETIME = 900
REFRESH_TOKEN_LIFETIME = 90 * 24 * 3600


@dataclass
class DeviceCode:
    client_id: str
    scope: str
    login_hint: str | None
    expires_at: float


@dataclass
class RefreshGrant:
    subject_oid: str
    client_id: str
    expires_at: float
    # Issued by the on-behalf-of grant: redeeming it needs the client's credential and its consent.
    on_behalf_of: bool = False


class EntraPlane:
    def __init__(self, state: Any) -> None:
        self.state = state
        self.device_codes: dict[str, DeviceCode] = {}
        self.refresh_tokens: dict[str, RefreshGrant] = {}
        self.agents = AgentIdGrants(self)
        self.authorize = AuthorizationCodes(self)
        self.obo = OnBehalfOf(self)

    # -- routing --------------------------------------------------------------------------------

    def handles(self, segments: list[str]) -> bool:
        if not segments:
            return False
        if segments[0] == "common" and segments[1:2] in (["discovery"], ["userrealm"]):
            return True
        return self._tenant_ok(segments[0]) and len(segments) >= 2 and segments[1] in (
            "v2.0", "discovery", "oauth2", ".well-known")

    def _tenant_ok(self, tenant: str) -> bool:
        return tenant in (self.state.tenant_id.lower(), "common", "organizations", TENANT_DOMAIN)

    def handle(self, request: Request, segments: list[str]) -> Response:
        try:
            return self._route(request, segments)
        except AadError as exc:
            return self._error(request, exc)

    def _route(self, request: Request, segments: list[str]) -> Response:
        tail = "/".join(segments[1:])
        tenant = segments[0]
        if tenant == "common" and tail.startswith("discovery/instance"):
            return self._instance_discovery(request)
        if tenant == "common" and segments[1] == "userrealm":
            return self._user_realm(segments)
        if tail in ("v2.0/.well-known/openid-configuration", ".well-known/openid-configuration"):
            return self._openid_configuration(tenant)
        if tail in ("discovery/v2.0/keys", "discovery/keys"):
            return json_response(200, self.state.tokens.jwks())
        if tail == "discovery/instance":
            return self._instance_discovery(request)
        if request.method != "POST" and tail in ("oauth2/v2.0/token", "oauth2/v2.0/devicecode"):
            raise AadError(405, "invalid_request", 900561,
                           "The endpoint only accepts POST requests. Received a " + request.method + " request.")
        if tail == "oauth2/v2.0/devicecode":
            return self._device_code(request)
        if tail == "oauth2/v2.0/token":
            return self._token(request, tenant)
        if tail == "oauth2/v2.0/authorize":
            return self.authorize.authorize(request, tenant)
        raise AadError(404, "invalid_request", 90010, f"The endpoint '/{'/'.join(segments)}' does not exist.")

    # -- metadata -------------------------------------------------------------------------------

    def _openid_configuration(self, tenant: str) -> Response:
        base = f"{self.state.origin}/{tenant}"
        return json_response(200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": self.state.issuer,
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.state.origin}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce",
                                 "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "tenant_region_scope": "NA",
            "cloud_instance_name": "sandbox",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        })

    def _instance_discovery(self, request: Request) -> Response:
        host = self.state.origin.split("://", 1)[1]
        return json_response(200, {
            "tenant_discovery_endpoint": f"{self.state.origin}/{self.state.tenant_id}/v2.0/.well-known/"
                                         "openid-configuration",
            "api-version": request.query.get("api-version", "1.1"),
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        })

    def _user_realm(self, segments: list[str]) -> Response:
        username = segments[2] if len(segments) > 2 else ""
        domain = username.rpartition("@")[2]
        return json_response(200, {
            "ver": "1.0",
            "account_type": "Managed" if domain == TENANT_DOMAIN else "Unknown",
            "domain_name": domain,
            "cloud_instance_name": "sandbox",
            "cloud_audience_urn": "urn:federation:MicrosoftOnline",
        })

    # -- device code ----------------------------------------------------------------------------

    def _device_code(self, request: Request) -> Response:
        form = self._form(request)
        client_id = form.get("client_id") or ""
        if not client_id:
            raise AadError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'client_id'.")
        self._resource_of(form.get("scope", ""), app=False)  # validate now, as Entra does
        code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        self._expire_device_codes()
        self.device_codes[code] = DeviceCode(client_id, form.get("scope", ""), form.get("login_hint"),
                                             time.time() + DEVICE_CODE_LIFETIME)
        verification = f"{self.state.origin}/devicelogin"
        return json_response(200, {
            "user_code": user_code,
            "device_code": code,
            "verification_uri": verification,
            "expires_in": DEVICE_CODE_LIFETIME,
            "interval": 1,
            "message": f"To sign in, use a web browser to open the page {verification} and enter the code "
                       f"{user_code} to authenticate. (The sandbox approves it at once for the developer user, "
                       "or the seeded user named by login_hint.)",
        }, client_id=client_id, scope=form.get("scope"))

    def _expire_device_codes(self) -> None:
        now = time.time()
        for code in [c for c, d in self.device_codes.items() if d.expires_at < now]:
            del self.device_codes[code]

    # -- token endpoint -------------------------------------------------------------------------

    def _form(self, request: Request) -> dict[str, str]:
        try:
            return request.form
        except BadRequestBodyError as exc:
            raise AadError(400, "invalid_request", 900144, f"The request body could not be read: {exc}.") from exc

    def _token(self, request: Request, tenant: str) -> Response:
        entry = self.token_log_fields(request)
        try:
            form = self._form(request)
            session = request.query.get("client_session") or form.get("client_session")
            payload, uti, subject = self._grant(request, tenant, form, form.get("grant_type", ""), session, entry)
        except AadError as exc:
            response = self._error(request, exc)
            response.log.update(entry)
            return response
        entry["issued_uti"] = uti
        entry["subject_oid"] = subject
        entry["issued_claims"] = self.issued_claims(payload["access_token"])
        return json_response(200, payload, [("cache-control", "no-store"), ("pragma", "no-cache")], **entry)

    def issued_claims(self, access_token: str) -> dict[str, Any]:
        return claims_summary(self.state.tokens.verify(access_token))

    def token_log_fields(self, request: Request) -> dict[str, Any]:
        """The token request's log fields (never a secret: no client_secret, password or token)."""
        try:
            form = request.form
        except BadRequestBodyError:
            form = {}
        client_id = form.get("client_id")
        basic = request.headers.get("authorization", "")
        if not client_id and basic.lower().startswith("basic "):
            try:
                client_id = base64.b64decode(basic[6:].strip()).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                client_id = None
        return {
            "grant_type": form.get("grant_type") or None,
            "client_id": client_id,
            "scope": form.get("scope"),
            "client_session_query": request.query.get("client_session"),
            "client_session_body": form.get("client_session"),
            "claims": form.get("claims") if "claims" in form else request.query.get("claims"),
            "fmi_path": form.get("fmi_path") or request.query.get("fmi_path"),
            "requested_token_use": form.get("requested_token_use"),
            "issued_uti": None,
            "subject_oid": None,
        }

    def _grant(self, request: Request, tenant: str, form: dict[str, str], grant: str,
               session: str | None, log: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
        if session is not None:
            self._check_session_id(session)
        markers = self._claims_markers(form.get("claims") if "claims" in form else request.query.get("claims"))
        if session:
            markers["xms_cli_ses"] = session
        if not grant:
            raise AadError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'grant_type'.")
        client_id = form.get("client_id", "")
        if grant == "client_credentials":
            return self._client_credentials(request, tenant, form, markers, log)
        if grant == JWT_BEARER_GRANT:
            return self.obo.exchange(request, tenant, form, markers, log)
        if not client_id:
            raise AadError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'client_id'.")
        if grant == DEVICE_CODE_GRANT:
            code = form.get("device_code", "")
            pending = self.device_codes.pop(code, None)
            if pending is None or pending.expires_at < time.time():
                raise AadError(400, "expired_token", 70020,
                               "The provided value for the input parameter 'device_code' is not valid or has "
                               "expired (each device code can be redeemed once).")
            if pending.client_id != client_id:
                raise AadError(400, "invalid_grant", 70000,
                               "The device code was issued to a different client.")
            hint = form.get("login_hint") or pending.login_hint
            user = self._user_for_hint(hint)
            return self._user_tokens(user, client_id, form.get("scope") or pending.scope, markers, amr="mfa")
        if grant == "refresh_token":
            token = form.get("refresh_token", "")
            held = self.refresh_tokens.pop(token, None)
            if held is None or held.expires_at < time.time():
                raise AadError(400, "invalid_grant", 70008,
                               "The provided refresh token has expired, was already used (refresh tokens rotate: "
                               "use the newest one), or was never issued. Sign in again.")
            if held.client_id.lower() != client_id.lower():
                self.refresh_tokens[token] = held
                raise AadError(400, "invalid_grant", 70000,
                               "The refresh token was issued to a different client.")
            if held.on_behalf_of:
                return self.obo.refresh(request, tenant, form, held, token, markers)
            user = self._user_by_oid(held.subject_oid)
            return self._user_tokens(user, client_id, form.get("scope", ""), markers, amr="pwd")
        if grant == "password":
            user = self.state.world.user_by_upn(form.get("username", ""))
            if user is None or not secrets.compare_digest(user.password.encode(), form.get("password", "").encode()):
                raise AadError(400, "invalid_grant", 50126,
                               "Error validating credentials due to invalid username or password.")
            return self._user_tokens(user, client_id, form.get("scope", ""), markers, amr="pwd")
        if grant == "user_fic":
            return self.agents.user_fic(form, markers, log)
        if grant == AUTHORIZATION_CODE_GRANT:
            return self.authorize.redeem(form, markers)
        raise AadError(400, "unsupported_grant_type", 70003,
                       f"The app requested an unsupported grant type '{grant}'. The sandbox supports "
                       "authorization_code, device_code, refresh_token, password, client_credentials, the "
                       "on-behalf-of jwt-bearer grant and user_fic.")

    def _check_session_id(self, session: str) -> None:
        if not session or len(session) > MAX_SESSION_ID or not session.isprintable():
            raise AadError(400, "invalid_request", 90014,
                           f"The 'client_session' parameter must be 1-{MAX_SESSION_ID} printable characters.")

    def _claims_markers(self, raw: str | None) -> dict[str, Any]:
        if raw is None or raw == "":
            return {}
        try:
            claims = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise AadError(400, "invalid_request", 90100,
                           f"The 'claims' parameter is not valid JSON ({exc.msg}).") from exc
        if not isinstance(claims, dict):
            raise AadError(400, "invalid_request", 90100, "The 'claims' parameter must be a JSON object.")
        access = claims.get("access_token") or {}
        if not isinstance(access, dict):
            raise AadError(400, "invalid_request", 90100, "'claims.access_token' must be a JSON object.")
        markers: dict[str, Any] = {}
        for name in ("xms_cli_sid", "xms_agent_session"):
            values = _requested_values(access.get(name))
            if values:
                value = str(values[0])
                self._check_session_id(value)
                markers[name] = value
        acrs = _requested_values(access.get("acrs"))
        if acrs:
            markers["acrs"] = [str(v) for v in acrs]
        cc = _requested_values(access.get("xms_cc"))
        if cc:
            markers["xms_cc"] = [str(v) for v in cc]
        return markers

    def _user_for_hint(self, hint: str | None) -> User:
        if hint:
            user = self.state.world.user_by_upn(hint)
            if user is None:
                raise AadError(400, "invalid_grant", 50034,
                               f"The user account {hint} does not exist in the {TENANT_DOMAIN} directory. "
                               "Seeded users: " + ", ".join(u.upn for u in self.state.world.users) + ".")
            return user
        return self.state.world.users[0]

    def _user_by_oid(self, oid: str) -> User:
        user = self.state.world.user_by_oid(oid)
        if user is None:
            raise AadError(400, "invalid_grant", 50034, "The user of this refresh token no longer exists.")
        return user

    def _resource_of(self, scope: str, app: bool) -> tuple[str, str, list[str]]:
        """(audience, scp, requested resource scopes) for a scope string; validates as Entra does."""
        requested = [s for s in scope.split() if s]
        resource_scopes = [s for s in requested if s.lower() not in OIDC_SCOPES]
        if not resource_scopes:
            if app:
                raise AadError(400, "invalid_scope", 1002012,
                               "The provided value for scope is not valid. Client credential flows must have a "
                               "scope value with /.default suffixed to the resource identifier.")
            resource_scopes = ["https://graph.microsoft.com/.default"]
        resources = set()
        permissions = []
        for s in resource_scopes:
            if ("://" not in s or s.rstrip("/").count("/") < 3) and not _GUID_RESOURCE.fullmatch(s.rstrip("/")):
                raise AadError(400, "invalid_scope", 70011,
                               f"The provided value for the input parameter 'scope' is not valid: '{s}'. "
                               "Use '<resource>/.default', e.g. 'https://management.azure.com/.default'.")
            resource, _, permission = s.rstrip("/").rpartition("/")
            resources.add(resource.lower().rstrip("/"))
            permissions.append(permission)
        if len(resources) > 1:
            raise AadError(400, "invalid_request", 28000,
                           "Provided value for the input parameter scope is not valid because it contains more "
                           "than one resource. Request tokens for one resource at a time.")
        resource = resources.pop()
        audience = KNOWN_RESOURCES.get(resource)
        api = self.state.world.api_app(resource) if audience is None else None
        if api is not None:
            audience = api.client_id  # v2 tokens for a registered API carry its client id as audience
            unknown = [p for p in permissions if p != ".default" and p not in api.api_scopes]
            if unknown:
                raise AadError(400, "invalid_scope", 650053,
                               f"The application asked for scope '{unknown[0]}' that doesn't exist on the resource "
                               f"'{api.client_id}'. It exposes: " + ", ".join(api.api_scopes) + ".")
        if audience is None:
            apis = [u for sp in self.state.world.service_principals for u in sp.app_id_uris]
            raise AadError(400, "invalid_resource", 500011,
                           f"The resource principal named {resource} was not found in the tenant named "
                           f"{TENANT_DOMAIN}. The sandbox knows: " + ", ".join(sorted(KNOWN_RESOURCES) + apis) + ".")
        if app and permissions != [".default"]:
            raise AadError(400, "invalid_scope", 1002012,
                           f"The provided value for scope {scope} is not valid. Client credential flows must have "
                           "a scope value with /.default suffixed to the resource identifier.")
        scp = " ".join("user_impersonation" if p == ".default" else p for p in permissions)
        return audience, scp, resource_scopes

    def _base_claims(self, audience: str, oid: str, client_id: str, markers: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.state.issuer,
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.state.token_lifetime,
            "tid": self.state.tenant_id,
            "oid": oid,
            "sub": oid,
            "appid": client_id,
            "azp": client_id,
            "uti": new_uti(),
            "ver": "1.0",
        }
        claims.update(markers)
        return claims

    def _user_tokens(self, user: User, client_id: str, scope: str, markers: dict[str, Any], amr: str, *,
                     appidacr: str = "0", nonce: str | None = None,
                     on_behalf_of: bool = False) -> tuple[dict[str, Any], str, str]:
        audience, scp, resource_scopes = self._resource_of(scope, app=False)
        claims = self._base_claims(audience, user.object_id, client_id, markers)
        claims.update({"upn": user.upn, "unique_name": user.upn, "name": user.display_name, "idtyp": "user",
                       "scp": scp, "appidacr": appidacr, "amr": [amr]})
        if self.state.world.api_app(audience) is not None:
            # A v2 token, as Entra issues for an API whose app registration asks for them: azp/azpacr
            # name the client, preferred_username the user; no appid/appidacr/unique_name.
            for v1_only in ("appid", "appidacr", "unique_name"):
                claims.pop(v1_only)
            claims.update({"ver": "2.0", "azpacr": appidacr, "preferred_username": user.upn})
        access_token = self.state.tokens.sign(claims)
        now = claims["iat"]
        id_claims = {
            "aud": client_id, "iss": self.state.issuer, "iat": now, "nbf": now - 5,
            "exp": now + self.state.token_lifetime, "oid": user.object_id, "sub": user.object_id,
            "tid": self.state.tenant_id, "preferred_username": user.upn, "name": user.display_name, "ver": "2.0",
        }
        if nonce:
            id_claims["nonce"] = nonce
        id_token = self.state.tokens.sign(id_claims)
        refresh = "rt." + secrets.token_urlsafe(48)
        self.refresh_tokens[refresh] = RefreshGrant(user.object_id, client_id, time.time() + REFRESH_TOKEN_LIFETIME,
                                                    on_behalf_of)
        if len(self.refresh_tokens) > 100_000:  # drop the oldest half; a sandbox is not a long-lived directory
            for key in list(self.refresh_tokens)[:50_000]:
                del self.refresh_tokens[key]
        client_info = b64url(json.dumps({"uid": user.object_id, "utid": self.state.tenant_id}).encode())
        payload = {
            "token_type": "Bearer",
            "scope": " ".join(resource_scopes + ["openid", "profile", "offline_access"]),
            "expires_in": self.state.token_lifetime,
            "ext_expires_in": self.state.token_lifetime,
            "access_token": access_token,
            "refresh_token": refresh,
            "id_token": id_token,
            "client_info": client_info,
        }
        return payload, claims["uti"], user.object_id

    def _client_of(self, request: Request, form: dict[str, str]) -> tuple[ServicePrincipal, str | None]:
        """The confidential client a request names (form or Basic header) and the secret it sent, if any."""
        client_id = form.get("client_id", "")
        basic = request.headers.get("authorization", "")
        secret = form.get("client_secret")
        if basic.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(basic[6:].strip()).decode()
                client_id, _, secret = decoded.partition(":")
            except (ValueError, UnicodeDecodeError) as exc:
                raise AadError(401, "invalid_client", 7000215, "The Basic client authentication header is "
                                                               "malformed.") from exc
        if not client_id:
            raise AadError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'client_id'.")
        sp = self.state.world.sp_by_client_id(client_id)
        if sp is None:
            if self.state.world.public_client(client_id) is not None:
                raise AadError(401, "invalid_client", 700025,
                               f"Client '{client_id}' is public, so it cannot use a grant that needs a client "
                               "credential.")
            raise AadError(400, "unauthorized_client", 700016,
                           f"Application with identifier '{client_id}' was not found in the directory "
                           f"'{TENANT_DOMAIN}'. This can happen if the application has not been installed by the "
                           "administrator of the tenant.")
        return sp, secret

    def authenticate_client(self, request: Request, tenant: str,
                            form: dict[str, str]) -> tuple[ServicePrincipal, str]:
        """The confidential client, authenticated: (its principal, appidacr "1" secret or "2" assertion)."""
        sp, secret = self._client_of(request, form)
        return sp, self._verify_client_credential(sp, form, secret, tenant)

    def _client_credentials(self, request: Request, tenant: str, form: dict[str, str], markers: dict[str, Any],
                            log: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
        sp, secret = self._client_of(request, form)
        if sp.kind == "agent_identity":
            return self.agents.agent_identity_credentials(sp, form, markers, log)
        appidacr = self._verify_client_credential(sp, form, secret, tenant)
        fmi_path = form.get("fmi_path")
        if fmi_path:
            return self.agents.blueprint_exchange(sp, fmi_path, form.get("scope", ""), markers, appidacr, log)
        audience, _, resource_scopes = self._resource_of(form.get("scope", ""), app=True)
        claims = self._base_claims(audience, sp.object_id, sp.client_id, markers)
        # application permissions an admin granted this app on the resource (e.g. Graph's AgentIdentity.CreateAsManager)
        granted = list(sp.directory.get("app_roles", {}).get(audience, []))
        claims.update({"idtyp": "app", "roles": granted, "appidacr": appidacr})
        payload = {
            "token_type": "Bearer",
            "expires_in": self.state.token_lifetime,
            "ext_expires_in": self.state.token_lifetime,
            "access_token": self.state.tokens.sign(claims),
        }
        del resource_scopes
        return payload, claims["uti"], sp.object_id

    def _verify_client_credential(self, sp: ServicePrincipal, form: dict[str, str], secret: str | None,
                                  tenant: str) -> str:
        client_id = sp.client_id
        assertion = form.get("client_assertion")
        if assertion is not None:
            if form.get("client_assertion_type") != JWT_BEARER_ASSERTION:
                raise AadError(400, "invalid_request", 700026,
                               f"The client_assertion_type must be '{JWT_BEARER_ASSERTION}'.")
            if unverified_header(assertion).get("kid") == self.state.tokens.kid:
                self.agents.verify_federated_assertion(sp, assertion)  # a federated identity credential
            else:
                self._verify_assertion(sp, assertion, tenant)
            appidacr = "2"
        elif secret is not None:
            if not sp.client_secret or not secrets.compare_digest(sp.client_secret.encode(), secret.encode()):
                raise AadError(401, "invalid_client", 7000215,
                               f"Invalid client secret provided. Ensure the secret being sent in the request is "
                               f"the client secret value, not the client secret ID, for a secret added to app "
                               f"'{client_id}'.")
            appidacr = "1"
        else:
            raise AadError(401, "invalid_client", 7000218,
                           "The request body must contain the following parameter: 'client_assertion' or "
                           "'client_secret'.")
        return appidacr

    def _verify_assertion(self, sp: Any, assertion: str, tenant: str) -> None:
        import jwt
        from cryptography.hazmat.primitives import serialization

        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise AadError(401, "invalid_client", 50027, "The client assertion is not a valid JWT.") from exc
        alg = header.get("alg")
        if alg not in ("RS256", "PS256"):
            raise AadError(401, "invalid_client", 5002730, f"The client assertion algorithm {alg!r} is not "
                                                           "supported (RS256 or PS256).")
        candidates = sp.certificates
        # Thumbprint headers are base64url; some clients keep the '=' padding.
        x5t = str(header.get("x5t") or "").rstrip("=")
        x5t256 = str(header.get("x5t#S256") or "").rstrip("=")
        if x5t or x5t256:
            candidates = [c for c in sp.certificates
                          if (x5t and c["x5t"] == x5t) or (x5t256 and c["x5t#S256"] == x5t256)]
        if not candidates:
            raise AadError(401, "invalid_client", 700027,
                           f"The certificate with identifier used to sign the client assertion is not registered "
                           f"on application '{sp.client_id}'. Register it with Sandbox.add_client_certificate().")
        audiences = [f"{self.state.origin}/{t}/oauth2/v2.0/token" for t in
                     {tenant, self.state.tenant_id, "common", "organizations"}] + [self.state.issuer]
        last_error: Exception | None = None
        for cert in candidates:
            key = serialization.load_pem_public_key(cert["public_key_pem"].encode())
            try:
                claims = jwt.decode(assertion, key, algorithms=[alg], audience=audiences,
                                    options={"require": ["exp", "aud", "iss", "sub"]}, leeway=300)
            except jwt.ExpiredSignatureError as exc:
                raise AadError(401, "invalid_client", 700024,
                               "Client assertion is not within its valid time range.") from exc
            except jwt.InvalidAudienceError as exc:
                raise AadError(401, "invalid_client", 700212,
                               "The client assertion's audience must be the token endpoint URL.") from exc
            except jwt.PyJWTError as exc:
                last_error = exc
                continue
            if claims.get("iss") != sp.client_id or claims.get("sub") != sp.client_id:
                raise AadError(401, "invalid_client", 700021,
                               "Client assertion application identifier doesn't match 'client_id' parameter.")
            return
        raise AadError(401, "invalid_client", 700027,
                       "Client assertion failed signature validation.") from last_error

    # -- errors ---------------------------------------------------------------------------------

    def _error(self, request: Request, exc: AadError) -> Response:
        return error_response(self.state.origin, request, exc)


def _requested_values(spec: Any) -> list[Any]:
    if not isinstance(spec, dict):
        return []
    if "values" in spec and isinstance(spec["values"], list):
        return [v for v in spec["values"] if v is not None]
    if spec.get("value") is not None:
        return [spec["value"]]
    return []


def certificate_entry(pem: str | bytes) -> dict[str, str]:
    """What the token service keeps of a registered certificate (thumbprints + public key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    data = pem.encode() if isinstance(pem, str) else pem
    cert = x509.load_pem_x509_certificate(data)
    public_pem = cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return {
        "x5t": b64url(cert.fingerprint(hashes.SHA1())),  # noqa: S303 - the x5t header is SHA-1 by definition
        "x5t#S256": b64url(cert.fingerprint(hashes.SHA256())),
        "sha1_hex": cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
        "public_key_pem": public_pem,
    }


