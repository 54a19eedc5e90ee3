"""``--credential agent-identity``: Microsoft Entra Agent ID, the agent acting under its own identity.

The agent identity is a service principal with no credential; only its **blueprint** can obtain
tokens for it. Two MSAL confidential clients per tenant, as MSAL's agent guidance recommends:

- the blueprint client holds the real credential and asks ``client_credentials`` for
  ``api://AzureADTokenExchange/.default`` with ``fmi_path`` = the agent identity (leg 1, the
  exchange token; MSAL caches it per ``fmi_path``);
- the agent client (client id = the agent identity) authenticates with a ``client_assertion``
  callable that returns that exchange token, and asks for the resource (leg 2, autonomous), or,
  with an agent user, for its own exchange token and then ``user_fic``
  (``acquire_token_by_user_federated_identity_credential``) for the agent user (leg 3).

Blueprint credentials: a client secret (``BlueprintSecret``; development only), a certificate
(``BlueprintCertificate``: PEM with key and certificate, or PFX), or an assertion callable
(``BlueprintAssertion``) for managed identity / workload identity federation. The callable must
return a fresh JWT whose audience is ``api://AzureADTokenExchange`` and which the blueprint trusts
through a federated identity credential; MSAL calls it for every token request it sends, never for
cache hits. ``assertion_from_file`` (AKS workload identity's projected token file, re-read each
time) and ``managed_identity_assertion`` build such callables.

The session's ``AgentCredential`` wraps this provider (per-session cache, single flight, refresh,
never past the session's end); ``forget_session`` drops the MSAL clients and their caches, so an
expired session keeps no exchange token either. Secrets never appear in ``describe()``, reprs or
messages.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure_agent_mcp.identity.credential import ProviderToken, TokenRequestError, token_request_error
from azure_agent_mcp.identity.errors import CredentialUnavailableError

EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"
SECRET_ENV = "AZURE_AGENT_MCP_BLUEPRINT_SECRET"
CERTIFICATE_PASSWORD_ENV = "AZURE_AGENT_MCP_BLUEPRINT_CERTIFICATE_PASSWORD"
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# -- blueprint credentials ----------------------------------------------------------------------


@dataclass(frozen=True)
class BlueprintSecret:
    """A client secret of the blueprint (development only: Entra advises against secrets for blueprints)."""

    secret: str = field(repr=False)
    method = "client secret"

    def msal_credential(self) -> Any:
        return self.secret


@dataclass(frozen=True)
class BlueprintCertificate:
    """A certificate of the blueprint: a PEM file holding the private key and the certificate, or a PFX."""

    path: Path
    password: str | None = field(default=None, repr=False)
    method = "certificate"

    def msal_credential(self) -> Any:
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise CredentialUnavailableError(f"the blueprint certificate {path} does not exist or is not a file")
        if path.suffix.lower() in (".pfx", ".p12"):
            return {"private_key_pfx_path": str(path), "passphrase": self.password} if self.password else \
                {"private_key_pfx_path": str(path)}
        text = path.read_text(encoding="utf-8")
        certificate = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S)
        key = re.search(r"-----BEGIN (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----.+?-----END (?:ENCRYPTED |RSA |EC )?"
                        r"PRIVATE KEY-----", text, re.S)
        if certificate is None or key is None:
            raise CredentialUnavailableError(
                f"the blueprint certificate {path} must be a PEM file with both the private key and the certificate "
                "(or a .pfx file)"
            )
        credential = {"private_key": key.group(0), "public_certificate": certificate.group(0)}
        if self.password:
            credential["passphrase"] = self.password
        return credential


@dataclass(frozen=True)
class BlueprintAssertion:
    """Managed identity / workload identity federation: a callable returning the blueprint's assertion."""

    get_assertion: Callable[[], str] = field(repr=False)
    description: str = "federated credential"

    @property
    def method(self) -> str:
        return self.description

    def msal_credential(self) -> Any:
        return {"client_assertion": self.get_assertion}


BlueprintCredential = BlueprintSecret | BlueprintCertificate | BlueprintAssertion


def assertion_from_file(path: str | Path) -> BlueprintAssertion:
    """AKS workload identity: the projected service account token, re-read on each use (it rotates)."""
    location = Path(path).expanduser()

    def read() -> str:
        try:
            return location.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TokenRequestError(f"cannot read the blueprint's federated token file {location}: "
                                    f"{exc.strerror or exc}") from exc

    return BlueprintAssertion(read, f"federated token file {location}")


def managed_identity_assertion(client_id: str | None = None, **kwargs: Any) -> BlueprintAssertion:
    """A managed identity's token for ``api://AzureADTokenExchange`` as the blueprint's assertion."""
    from azure.identity import ManagedIdentityCredential

    credential = ManagedIdentityCredential(client_id=client_id, **kwargs) if client_id else \
        ManagedIdentityCredential(**kwargs)

    def get() -> str:
        return credential.get_token(EXCHANGE_SCOPE).token

    return BlueprintAssertion(get, f"managed identity {client_id or 'system-assigned'}")


# -- the provider -------------------------------------------------------------------------------


def _guid(value: str | None, name: str) -> str:
    if not value or not _GUID.fullmatch(value.strip()):
        raise CredentialUnavailableError(f"{name} must be a GUID (an app/client id), got {value!r}")
    return value.strip().lower()


@dataclass(frozen=True)
class AgentUser:
    """The agent user to act as: a UPN or an object id."""

    upn: str | None = None
    object_id: str | None = None

    @classmethod
    def parse(cls, value: str) -> AgentUser:
        text = value.strip()
        if _GUID.fullmatch(text):
            return cls(object_id=text.lower())
        if "@" in text and not text.startswith("@") and not text.endswith("@"):
            return cls(upn=text)
        raise CredentialUnavailableError(
            f"--agent-user {value!r} is neither a user principal name (name@domain) nor an object id (GUID)"
        )

    def msal_kwargs(self) -> dict[str, str]:
        return {"username": self.upn} if self.upn else {"user_object_id": self.object_id or ""}

    def __str__(self) -> str:
        return self.upn or self.object_id or ""


class _Clients:
    """The blueprint's and the agent identity's MSAL confidential clients for one tenant."""

    def __init__(self, provider: AgentIdentityProvider, tenant: str) -> None:
        import msal

        from azure_agent_mcp.identity.msal_provider import http_session, is_known_authority

        authority = f"{provider.authority_host}/{tenant}"
        discovery = None if is_known_authority(provider.authority_host) else False
        self.http = http_session(provider.ca_bundle, throttle_seconds=5)  # MSAL's hold for confidential clients
        self.blueprint = msal.ConfidentialClientApplication(
            provider.blueprint_client_id, client_credential=provider.blueprint_credential.msal_credential(),
            authority=authority, http_client=self.http, instance_discovery=discovery, token_cache=msal.TokenCache())
        self.agent = msal.ConfidentialClientApplication(
            provider.agent_identity_id, client_credential={"client_assertion": self.exchange_token},
            authority=authority, http_client=self.http, instance_discovery=discovery, token_cache=msal.TokenCache())
        self._agent_identity_id = provider.agent_identity_id

    def exchange_token(self) -> str:
        """Leg 1: the blueprint's exchange token for this agent identity (MSAL's cache first)."""
        result = self.blueprint.acquire_token_for_client([EXCHANGE_SCOPE], fmi_path=self._agent_identity_id)
        if "access_token" not in result:
            raise token_request_error(
                "the blueprint's token exchange for the agent identity (fmi_path)", result.get("error"),
                result.get("error_description"),
                "Check --blueprint-client-id, the blueprint's credential and that --agent-identity-id is one of its "
                "agent identities.",
            )
        return str(result["access_token"])

    def close(self) -> None:
        self.http.close()


class AgentIdentityProvider:
    """Tokens for an agent identity (autonomous) or its agent user, through the blueprint."""

    kind = "agent-identity"
    tagged = False

    def __init__(self, *, authority_host: str, tenant_id: str, blueprint_client_id: str,
                 blueprint_credential: BlueprintCredential, agent_identity_id: str, agent_user: AgentUser | None = None,
                 ca_bundle: str | None = None) -> None:
        self.authority_host = authority_host.rstrip("/")
        self.default_tenant = tenant_id
        self.blueprint_client_id = _guid(blueprint_client_id, "--blueprint-client-id")
        self.agent_identity_id = _guid(agent_identity_id, "--agent-identity-id")
        self.blueprint_credential = blueprint_credential
        self.agent_user = agent_user
        self.ca_bundle = ca_bundle
        self._clients: dict[str, _Clients] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"AgentIdentityProvider(blueprint={self.blueprint_client_id}, agent_identity={self.agent_identity_id}, "
                f"agent_user={self.agent_user}, credential={self.blueprint_credential.method})")

    def _clients_for(self, tenant: str | None) -> _Clients:
        tenant = tenant or self.default_tenant
        with self._lock:
            clients = self._clients.get(tenant)
            if clients is None:
                try:
                    clients = self._clients[tenant] = _Clients(self, tenant)
                except (ValueError, OSError) as exc:  # MSAL rejects an unusable certificate or authority
                    raise CredentialUnavailableError(
                        f"cannot set up the blueprint's client ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
                    ) from exc
            return clients

    def acquire(self, scopes: tuple[str, ...], *, tenant_id: str | None, claims: str | None) -> ProviderToken:
        import requests

        clients = self._clients_for(tenant_id)
        started = time.time()
        try:
            if self.agent_user is None:
                result = clients.agent.acquire_token_for_client(list(scopes), claims_challenge=claims)
                what = "the agent identity's token request"
            else:
                own = clients.agent.acquire_token_for_client([EXCHANGE_SCOPE])
                if "access_token" not in own:
                    raise token_request_error("the agent identity's token exchange", own.get("error"),
                                              own.get("error_description"), "Check --agent-identity-id.")
                result = clients.agent.acquire_token_by_user_federated_identity_credential(
                    list(scopes), own["access_token"], claims_challenge=claims, **self.agent_user.msal_kwargs())
                what = f"the agent user's token request (user_fic for {self.agent_user})"
        except requests.RequestException as exc:
            raise TokenRequestError(
                f"could not reach the sign-in authority {self.authority_host} ({type(exc).__name__}); check the "
                "network and the CA bundle") from exc
        except Exception as exc:
            from azure_agent_mcp.identity.msal_provider import token_service_unavailable

            unavailable = token_service_unavailable(exc, clients.http, self.authority_host, scopes=scopes)
            if unavailable is not None:
                raise unavailable from None
            raise
        if "access_token" not in result:
            from azure_agent_mcp.identity.msal_provider import token_service_unavailable

            unavailable = token_service_unavailable(None, clients.http, self.authority_host, result, scopes)
            if unavailable is not None:
                raise unavailable
            raise token_request_error(what, result.get("error"), result.get("error_description"),
                                      "Check --agent-identity-id" + (" and --agent-user." if self.agent_user else "."))
        expires_in = int(result.get("expires_in", 0))
        refresh_in = result.get("refresh_in")
        return ProviderToken(str(result["access_token"]), int(started + expires_in),
                             int(started + int(refresh_in)) if refresh_in else None)

    def blueprint_token(self, scopes: tuple[str, ...]) -> ProviderToken:
        """The blueprint's own app token (``client_credentials``, no ``fmi_path``), e.g. for Microsoft Graph
        to create and delete its agent identities (``access.ephemeral``). Never an agent's token."""
        clients = self._clients_for(None)
        started = time.time()
        result = clients.blueprint.acquire_token_for_client(list(scopes))
        if "access_token" not in result:
            raise token_request_error(
                "the blueprint's own token request", result.get("error"), result.get("error_description"),
                "Check --blueprint-client-id and the blueprint's credential, and that an admin granted it the "
                "permission (for Microsoft Graph: AgentIdentity.CreateAsManager).")
        expires_in = int(result.get("expires_in", 0))
        return ProviderToken(str(result["access_token"]), int(started + expires_in))

    def forget_session(self) -> None:
        """The session is over: drop both MSAL clients with their caches (exchange tokens included)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for each in clients:
            each.close()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "blueprint_client_id": self.blueprint_client_id,
            "blueprint_credential": self.blueprint_credential.method,
            "agent_identity_id": self.agent_identity_id,
            "flow": "agent user (user_fic)" if self.agent_user else "autonomous",
        }
        if self.agent_user is not None:
            info["agent_user"] = str(self.agent_user)
        return info

    def close(self) -> None:
        self.forget_session()


def agent_identity_provider(env: Any, **options: Any) -> AgentIdentityProvider:
    """The provider from build_credential's options, defaulting ids and secret from a sandbox manifest.

    Options: ``blueprint_client_id``, one of ``blueprint_client_secret`` / ``blueprint_certificate``
    (+ ``blueprint_certificate_password``) / ``blueprint_assertion`` (a callable or a
    ``BlueprintAssertion``) / ``blueprint_assertion_file``, ``agent_identity_id``, ``agent_user``,
    ``tenant_id``. The secret may also come from AZURE_AGENT_MCP_BLUEPRINT_SECRET.
    """
    import os

    seeded = (env.manifest or {}).get("agent_identity") or {}
    blueprint_id = options.get("blueprint_client_id") or seeded.get("blueprint_client_id")
    agent_id = options.get("agent_identity_id") or seeded.get("agent_identity_id")
    credentials: list[BlueprintCredential] = []
    if options.get("blueprint_certificate"):
        password = options.get("blueprint_certificate_password") or os.environ.get(CERTIFICATE_PASSWORD_ENV)
        credentials.append(BlueprintCertificate(Path(options["blueprint_certificate"]), password))
    assertion = options.get("blueprint_assertion")
    if assertion is not None:
        credentials.append(assertion if isinstance(assertion, BlueprintAssertion) else BlueprintAssertion(assertion))
    if options.get("blueprint_assertion_file"):
        credentials.append(assertion_from_file(options["blueprint_assertion_file"]))
    if options.get("blueprint_client_secret"):
        credentials.append(BlueprintSecret(options["blueprint_client_secret"]))
    if not credentials and os.environ.get(SECRET_ENV):  # the environment only when no flag chose a credential
        credentials.append(BlueprintSecret(os.environ[SECRET_ENV]))
    if not credentials and seeded.get("blueprint_client_secret"):
        credentials.append(BlueprintSecret(seeded["blueprint_client_secret"]))
    missing = [flag for flag, value in (("--blueprint-client-id", blueprint_id), ("--agent-identity-id", agent_id))
               if not value]
    if not credentials:
        missing.append(f"a blueprint credential (--blueprint-certificate, --blueprint-client-secret or {SECRET_ENV}, "
                       "--blueprint-assertion-file)")
    if missing:
        raise CredentialUnavailableError("--credential agent-identity needs " + ", ".join(missing))
    if len(credentials) > 1:
        raise CredentialUnavailableError(
            "give the blueprint one credential, not several: "
            + ", ".join(c.method for c in credentials) + " were all configured"
        )
    tenant = options.get("tenant_id") or env.tenant_id
    if not tenant or tenant.lower() in ("common", "organizations", "consumers"):
        raise CredentialUnavailableError("--credential agent-identity needs the agent identity's tenant: pass --tenant "
                                         "(agent identities are single-tenant)")
    user = options.get("agent_user")
    return AgentIdentityProvider(
        authority_host=env.authority_host,
        tenant_id=tenant,
        blueprint_client_id=blueprint_id,
        blueprint_credential=credentials[0],
        agent_identity_id=agent_id,
        agent_user=(user if isinstance(user, AgentUser) else AgentUser.parse(user)) if user else None,
        ca_bundle=env.ca_bundle,
    )
