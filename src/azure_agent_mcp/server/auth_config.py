"""What the HTTP server needs to be an OAuth resource server for its own Entra app, from flags or the manifest.

Over HTTP, authentication is on unless ``--dangerously-allow-anonymous`` (loopback only) turns it
off; a server that is asked to authenticate but does not know its app refuses to start rather
than serve unauthenticated (fail closed). With ``--sandbox`` the app comes from the manifest's
``mcp_server_app``, so tests and demos need no flags.

Stdlib only: ``serve --help`` and start-up must not import jwt or msal.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure_agent_mcp.errors import CommandError
from azure_agent_mcp.netaddr import is_loopback

DEFAULT_SCOPE_NAME = "user_impersonation"
DEFAULT_LEEWAY_SECONDS = 60
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class AuthConfigError(CommandError):
    """The auth flags do not describe a usable resource server: refused at start-up."""

    exit_code = 2


@dataclass(frozen=True)
class ServerAppCredential:
    """How the server app proves itself to Entra for the on-behalf-of grant (one of three)."""

    secret: str | None = field(default=None, repr=False)
    certificate_path: Path | None = None
    assertion_file: Path | None = None

    def describe(self) -> str:
        if self.secret is not None:
            return "client secret"
        if self.certificate_path is not None:
            return f"certificate {self.certificate_path}"
        return f"federated assertion file {self.assertion_file}"


@dataclass(frozen=True)
class AuthConfig:
    """The server app (``client_id``, ``app_id_uri``), the tenant it trusts, and where its keys are."""

    authority_host: str
    tenant_id: str
    client_id: str
    app_id_uri: str
    scope_name: str
    issuer: str
    jwks_uri: str
    credential: ServerAppCredential
    ca_bundle: str | None = None
    resource_url: str | None = None
    leeway: int = DEFAULT_LEEWAY_SECONDS

    @property
    def audiences(self) -> tuple[str, ...]:
        """Entra sets ``aud`` to the client id (v2 tokens) or the app id URI (v1): both name this app."""
        return tuple(dict.fromkeys(a for a in (self.client_id, self.app_id_uri) if a))

    @property
    def scope(self) -> str:
        """The full scope a client asks Entra for, e.g. ``api://<id>/user_impersonation``."""
        return f"{self.app_id_uri.rstrip('/')}/{self.scope_name}"

    @property
    def consent_url(self) -> str:
        return (f"{self.authority_host}/{self.tenant_id}/oauth2/v2.0/authorize?client_id={self.client_id}"
                "&response_type=code&scope=https://management.azure.com/user_impersonation")

    @property
    def admin_consent_url(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}/v2.0/adminconsent?client_id={self.client_id}"


def auth_config(args: Any, env: Any) -> AuthConfig | None:
    """The resource server's settings for ``serve --transport http``, or None when anonymous (loopback only)."""
    if getattr(args, "transport", "stdio") != "http":
        return None
    if getattr(args, "dangerously_allow_anonymous", False):
        if not is_loopback(args.host):
            raise AuthConfigError(
                f"--dangerously-allow-anonymous is for loopback binds only, not {args.host}: remote callers must "
                "authenticate (drop the flag and configure --auth-client-id)"
            )
        return None
    manifest = (env.manifest or {}) if getattr(env, "is_sandbox", False) else {}
    app = manifest.get("mcp_server_app") or {}
    client_id = args.auth_client_id or app.get("client_id")
    if not client_id:
        raise AuthConfigError(
            "HTTP requires authentication: pass --auth-client-id (the MCP server's Entra app), --auth-app-id-uri "
            "and its credential (--auth-secret-env, --auth-certificate or --auth-assertion-file); with --sandbox "
            "they come from the manifest's mcp_server_app. For a loopback test server without sign-in, pass "
            "--dangerously-allow-anonymous"
        )
    tenant = getattr(args, "tenant", None) or env.tenant_id
    if not tenant or not _GUID.fullmatch(tenant):
        raise AuthConfigError(
            f"the resource server trusts one tenant: pass --tenant with its tenant id (a GUID, as in the tokens' "
            f"tid), not {tenant or 'nothing'}"
        )
    authority = env.authority_host.rstrip("/")
    app_id_uri = args.auth_app_id_uri or app.get("app_id_uri") or f"api://{client_id}"
    scope_name = args.auth_scope or _scope_name(app.get("scope")) or DEFAULT_SCOPE_NAME
    issuer = manifest.get("issuer") or f"{authority}/{tenant}/v2.0"
    jwks_uri = manifest.get("jwks_uri") or f"{authority}/{tenant}/discovery/v2.0/keys"
    return AuthConfig(
        authority_host=authority,
        tenant_id=tenant,
        client_id=client_id,
        app_id_uri=app_id_uri,
        scope_name=scope_name,
        issuer=issuer,
        jwks_uri=jwks_uri,
        credential=_credential(args, app),
        ca_bundle=getattr(env, "ca_bundle", None),
        resource_url=getattr(args, "auth_resource_url", None),
    )


def _scope_name(scope: str | None) -> str | None:
    """``api://x/user_impersonation`` or ``user_impersonation`` -> ``user_impersonation``."""
    if not scope:
        return None
    return scope.rstrip("/").rsplit("/", 1)[-1]


def _credential(args: Any, app: dict[str, Any]) -> ServerAppCredential:
    given = [name for name in ("auth_secret_env", "auth_certificate", "auth_assertion_file") if getattr(args, name, None)]
    if len(given) > 1:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise AuthConfigError(f"{flags}: give the server app one credential for on-behalf-of, not several")
    if args.auth_secret_env:
        secret = os.environ.get(args.auth_secret_env)
        if not secret:
            raise AuthConfigError(
                f"--auth-secret-env {args.auth_secret_env}: that environment variable is not set or empty"
            )
        return ServerAppCredential(secret=secret)
    if args.auth_certificate:
        path = Path(args.auth_certificate).expanduser()
        if not path.is_file():
            raise AuthConfigError(f"--auth-certificate {path}: no such file (PEM with private key and certificate)")
        return ServerAppCredential(certificate_path=path)
    if args.auth_assertion_file:
        path = Path(args.auth_assertion_file).expanduser()
        if not path.is_file():
            raise AuthConfigError(f"--auth-assertion-file {path}: no such file (a federated token file)")
        return ServerAppCredential(assertion_file=path)
    if app.get("client_secret") and (args.auth_client_id in (None, app.get("client_id"))):
        return ServerAppCredential(secret=app["client_secret"])
    raise AuthConfigError(
        "the server app needs a credential to call Azure on behalf of its callers: pass --auth-secret-env NAME "
        "(the secret in that environment variable), --auth-certificate PEM or --auth-assertion-file PATH"
    )
