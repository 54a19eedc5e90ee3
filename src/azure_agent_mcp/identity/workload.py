"""Workload identities (service principal, managed identity) through azure-identity.

These are not user identities: Entra does not put an agent-session marker into app tokens, so
they are not tagged (whoami says so). The session still bounds them (no token after it ends), and
policy and audit apply as for users.
"""

from __future__ import annotations

import os
from typing import Any

from azure_agent_mcp.identity.credential import ProviderToken, TokenRequestError
from azure_agent_mcp.identity.errors import CredentialUnavailableError
from azure_agent_mcp.identity.msal_provider import is_known_authority

WORKLOAD_NOTE = "workload identity: tokens carry no agent-session tag"


def _identity_kwargs(env: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"connection_verify": env.connection_verify, "authority": env.authority_host}
    if not is_known_authority(env.authority_host):
        kwargs["disable_instance_discovery"] = True
    return kwargs


class AzureIdentityProvider:
    """Adapts an azure-identity credential (which caches on its own) to the provider interface."""

    tagged = False

    def __init__(self, kind: str, credential: Any, *, default_tenant: str | None, details: dict[str, Any]) -> None:
        self.kind = kind
        self.default_tenant = default_tenant
        self._credential = credential
        self._details = details

    def acquire(self, scopes: tuple[str, ...], *, tenant_id: str | None, claims: str | None) -> ProviderToken:
        from azure.core.exceptions import ClientAuthenticationError

        options: dict[str, Any] = {}
        if claims:
            options["claims"] = claims
        if tenant_id and tenant_id != self.default_tenant:
            options["tenant_id"] = tenant_id
        try:
            info = self._credential.get_token_info(*scopes, options=options or None)
        except ClientAuthenticationError as exc:
            message = str(exc.message if getattr(exc, "message", None) else exc).strip().splitlines()
            raise TokenRequestError(
                f"{self.kind} token request failed ({message[0][:300] if message else type(exc).__name__}); "
                "check the identity's configuration (client id, secret or certificate, tenant)"
            ) from exc
        return ProviderToken(info.token, int(info.expires_on), int(info.refresh_on) if info.refresh_on else None)

    def forget_session(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"note": WORKLOAD_NOTE, **self._details}

    def close(self) -> None:
        self._credential.close()


def service_principal(env: Any, **options: Any) -> AzureIdentityProvider:
    """Client secret or certificate, from options or AZURE_CLIENT_ID / AZURE_CLIENT_SECRET /
    AZURE_CLIENT_CERTIFICATE_PATH / AZURE_TENANT_ID."""
    client_id = options.get("client_id") or os.environ.get("AZURE_CLIENT_ID")
    tenant = options.get("tenant_id") or env.tenant_id or os.environ.get("AZURE_TENANT_ID")
    secret = options.get("client_secret") or os.environ.get("AZURE_CLIENT_SECRET")
    certificate = options.get("certificate_path") or os.environ.get("AZURE_CLIENT_CERTIFICATE_PATH")
    missing = [name for name, value in (("AZURE_CLIENT_ID", client_id), ("AZURE_TENANT_ID or --tenant", tenant)) if not value]
    if not (secret or certificate):
        missing.append("AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH")
    if missing:
        raise CredentialUnavailableError(
            "the service-principal credential needs " + ", ".join(missing) + " (environment variables)"
        )
    kwargs = _identity_kwargs(env)
    kwargs["additionally_allowed_tenants"] = ["*"]
    if secret:
        from azure.identity import ClientSecretCredential

        credential: Any = ClientSecretCredential(tenant, client_id, secret, **kwargs)
        method = "secret"
    else:
        from azure.identity import CertificateCredential

        password = options.get("certificate_password") or os.environ.get("AZURE_CLIENT_CERTIFICATE_PASSWORD")
        credential = CertificateCredential(tenant, client_id, certificate, password=password, **kwargs)
        method = "certificate"
    return AzureIdentityProvider(
        "service-principal", credential, default_tenant=tenant, details={"client_id": client_id, "method": method}
    )


def managed_identity(env: Any, **options: Any) -> AzureIdentityProvider:
    from azure.identity import ManagedIdentityCredential

    client_id = options.get("client_id") or os.environ.get("AZURE_CLIENT_ID")
    kwargs: dict[str, Any] = {"connection_verify": env.connection_verify}
    if client_id:
        kwargs["client_id"] = client_id
    credential = ManagedIdentityCredential(**kwargs)
    return AzureIdentityProvider(
        "managed-identity",
        credential,
        default_tenant=env.tenant_id,
        details={"client_id": client_id or "system-assigned"},
    )


def managed_identity_available(environ: dict[str, str] | None = None) -> bool:
    """Cheap probe: a managed identity endpoint is advertised, or IMDS answers a TCP connect quickly."""
    environ = environ if environ is not None else dict(os.environ)
    if any(environ.get(name) for name in ("IDENTITY_ENDPOINT", "MSI_ENDPOINT", "AZURE_FEDERATED_TOKEN_FILE")):
        return True
    import socket

    try:
        with socket.create_connection(("169.254.169.254", 80), timeout=0.3):
            return True
    except OSError:
        return False
