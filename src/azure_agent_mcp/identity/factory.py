"""``build_credential``: the provider named by ``--credential``, wrapped in the session's AgentCredential.

``auto`` picks the first source that is ready, probing without network or process starts:

1. ``sandbox`` when the environment is a sandbox (``--sandbox``);
2. ``msal`` when ``azure-agent-mcp login`` left an account in the server's own token cache
   (an explicit choice for this server, tagged, no process per token);
3. ``azure-cli`` when ``az`` is on PATH and its profile lists an account (tagged by Azure CLI 2.91);
4. ``service-principal`` when AZURE_CLIENT_ID, AZURE_TENANT_ID and a secret or certificate are set;
5. ``managed-identity`` when a managed identity endpoint is advertised or IMDS answers.

User identities come first because only they carry the agent-session tag.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from azure_agent_mcp.identity.claims import DEFAULT_PROFILE, PROFILES
from azure_agent_mcp.identity.errors import CredentialUnavailableError, UnknownCredentialKindError
from azure_agent_mcp.identity.kinds import CREDENTIAL_KINDS
from azure_agent_mcp.identity.session import AgentSession

if TYPE_CHECKING:  # azure-core is imported with the first credential, not at start-up
    from azure_agent_mcp.identity.credential import AgentCredential

KINDS = CREDENTIAL_KINDS


def resolve_auto(env: Any, **options: Any) -> str:
    """The kind ``auto`` stands for here (see the module docstring for the order)."""
    from azure_agent_mcp.identity.azure_cli import az_signed_in, find_az

    if env.is_sandbox:
        return "sandbox"
    if _msal_signed_in(env, options.get("cache_path")):
        return "msal"
    if find_az() and az_signed_in():
        return "azure-cli"
    if os.environ.get("AZURE_CLIENT_ID") and (os.environ.get("AZURE_TENANT_ID") or env.tenant_id) and (
        os.environ.get("AZURE_CLIENT_SECRET") or os.environ.get("AZURE_CLIENT_CERTIFICATE_PATH")
    ):
        return "service-principal"
    from azure_agent_mcp.identity.workload import managed_identity_available

    if managed_identity_available():
        return "managed-identity"
    raise CredentialUnavailableError(
        "no credential is ready (tried: the server's own sign-in, Azure CLI, service principal environment "
        "variables, managed identity): run `azure-agent-mcp login` or `az login`, or pass --sandbox to use "
        "the embedded sandbox"
    )


def _msal_signed_in(env: Any, cache_path: Any = None) -> bool:
    from azure_agent_mcp.identity.msal_provider import CACHE_FILE_NAME
    from azure_agent_mcp.paths import state_dir

    location = cache_path or state_dir() / CACHE_FILE_NAME
    if not os.path.exists(location):
        return False
    from azure_agent_mcp.identity.msal_provider import persisted_apps

    cache = persisted_apps(env, cache_path=location).token_cache
    return any(True for _ in cache.search(cache.CredentialType.ACCOUNT))


def build_provider(kind: str, env: Any, session: AgentSession, *, claims_profile: str = DEFAULT_PROFILE, **options: Any) -> Any:
    if claims_profile not in PROFILES:
        raise UnknownCredentialKindError(
            f"unknown --session-claims {claims_profile!r}: choose one of {', '.join(PROFILES)}"
        )
    if kind == "auto":
        kind = resolve_auto(env, **options)
    if kind == "sandbox":
        from azure_agent_mcp.identity.msal_provider import (
            MsalUserProvider,
            device_code_sign_in,
            sandbox_apps,
            sandbox_user,
        )

        if not env.is_sandbox:
            raise CredentialUnavailableError(
                "--credential sandbox needs the sandbox: pass --sandbox (embedded) or --sandbox PATH/sandbox.json"
            )
        user = sandbox_user(env, options.get("user", "developer"))
        return MsalUserProvider(
            "sandbox",
            sandbox_apps(env),
            session,
            claims_profile=claims_profile,
            username=user["upn"],
            sign_in=device_code_sign_in(None if user.get("name") == "developer" else user["upn"]),
            not_signed_in_hint="is the sandbox still running?",
        )
    if kind == "msal":
        from azure_agent_mcp.identity.msal_provider import MsalUserProvider, persisted_apps

        return MsalUserProvider(
            "msal",
            persisted_apps(env, client_id=options.get("client_id"), cache_path=options.get("cache_path")),
            session,
            claims_profile=claims_profile,
            username=options.get("username") or os.environ.get("AZURE_AGENT_MCP_USERNAME"),
        )
    if kind == "azure-cli":
        from azure_agent_mcp.identity.azure_cli import DEFAULT_TIMEOUT_SECONDS, AzureCliProvider

        return AzureCliProvider(
            session,
            default_tenant=env.tenant_id,
            timeout=float(options.get("timeout") or DEFAULT_TIMEOUT_SECONDS),
            az_path=options.get("az_path"),
            ca_bundle=env.ca_bundle,
            environ=options.get("environ"),
        )
    if kind == "service-principal":
        from azure_agent_mcp.identity.workload import service_principal

        return service_principal(env, **options)
    if kind == "managed-identity":
        from azure_agent_mcp.identity.workload import managed_identity

        return managed_identity(env, **options)
    if kind == "agent-identity":
        ephemeral = options.pop("ephemeral_agents", None)
        if ephemeral is not None:  # --ephemeral-agent: the session's own identity, made on its first token
            return ephemeral.provider_for(session, options)
        from azure_agent_mcp.identity.agent_identity import agent_identity_provider

        return agent_identity_provider(env, **options)
    if kind == "sidecar":
        from azure_agent_mcp.identity.sidecar import sidecar_provider

        return sidecar_provider(env, **options)
    raise UnknownCredentialKindError(f"unknown credential {kind!r}: choose one of {', '.join(KINDS)}")


def build_credential(
    kind: str,
    env: Any,
    session: AgentSession,
    *,
    claims_profile: str = DEFAULT_PROFILE,
    **options: Any,
) -> AgentCredential:
    """The session's credential for every SDK client: a TokenCredential + SupportsTokenInfo.

    ``options``: ``user`` (sandbox user name), ``username`` / ``client_id`` / ``cache_path`` (msal),
    ``timeout`` / ``az_path`` / ``environ`` (azure-cli), ``client_id`` / ``client_secret`` /
    ``certificate_path`` / ``tenant_id`` (service-principal), ``client_id`` (managed-identity),
    ``blueprint_client_id`` / ``blueprint_client_secret`` / ``blueprint_certificate`` /
    ``blueprint_assertion`` / ``blueprint_assertion_file`` / ``agent_identity_id`` / ``agent_user``
    (agent-identity), ``sidecar_url`` / ``allow_remote_sidecar`` / ``agent_identity_id`` /
    ``agent_user`` (sidecar), ``clock`` (tests).

    ``expect_principal`` (and ``pin_source``, for messages) pins the credential: every token it
    hands out is checked against that app id / object id first (``identity.pinning``).
    """
    from azure_agent_mcp.identity.credential import AgentCredential

    clock = options.pop("clock", None)
    expected = options.pop("expect_principal", None)
    source = options.pop("pin_source", None)
    provider = build_provider(kind, env, session, claims_profile=claims_profile, **options)
    credential = AgentCredential(provider, session, clock=clock)
    if not expected:
        return credential
    from azure_agent_mcp.identity.pinning import FLAG_SOURCE, PinnedCredential

    return PinnedCredential(credential, expected, source or FLAG_SOURCE)  # type: ignore[return-value]


def check_ready(kind: str, env: Any, **options: Any) -> None:
    """Local checks (no network, no process) so start-up fails with a clear message, not the first tool call."""
    if kind == "agent-identity" and options.get("ephemeral_agents") is not None:
        return  # checked when the manager was built (blueprint id, one credential, tenant)
    if kind == "agent-identity":
        from azure_agent_mcp.identity.agent_identity import agent_identity_provider

        agent_identity_provider(env, **options).close()  # ids, one blueprint credential, tenant, agent user
    if kind == "sidecar":
        from azure_agent_mcp.identity.sidecar import sidecar_provider

        sidecar_provider(env, **options).close()  # the URL rules (loopback, no user info)
    if kind == "msal" and not _msal_signed_in(env, options.get("cache_path")):
        tenant = f" --tenant {env.tenant_id}" if env.tenant_id else ""
        raise CredentialUnavailableError(
            f"the server's own sign-in has no account yet: run `azure-agent-mcp login{tenant}` (device code) first"
        )
    if kind == "azure-cli":
        from azure_agent_mcp.identity.azure_cli import find_az

        if options.get("az_path") is None and find_az() is None:
            raise CredentialUnavailableError(
                "the Azure CLI ('az') is not on PATH: install it (https://aka.ms/azure-cli) and run `az login`, "
                "or choose another --credential"
            )
