"""Identity flags shared by every command that talks to Azure, and ``whoami``, ``login``, ``logout``.

Stdlib only at import time (the CLI's start-up path); the SDKs load inside the handlers.

Exit codes: an invalid session id or TTL is a usage error, exit 2, whether it came from
``--session-id`` / ``--session-ttl`` (argparse) or from ``COPILOT_AGENT_SESSION_ID`` (checked at
start-up, before anything is sent). Sign-in and token failures are runtime failures, exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from azure_agent_mcp.errors import CommandError
from azure_agent_mcp.identity.claims import DEFAULT_PROFILE, PROFILES
from azure_agent_mcp.identity.errors import IdentityError, InvalidDurationError, InvalidSessionIdError
from azure_agent_mcp.identity.kinds import CREDENTIAL_KINDS
from azure_agent_mcp.identity.session import DEFAULT_TTL, parse_duration, resolve_session, validate_session_id

EMBEDDED = "embedded"


class SessionUsageError(CommandError):
    """An unusable agent session id or TTL: refused at start-up as a usage error."""

    exit_code = 2


class CredentialUsageError(CommandError):
    """Identity flags that do not fit together (a pin that is not a GUID, agent flags for a user credential)."""

    exit_code = 2


@dataclass
class IdentityContext:
    env: Any
    session: Any
    credential: Any
    sandbox: Any = None
    credential_for: Callable[[Any], Any] | None = field(default=None, repr=False)
    """Builds the credential for another agent session with the same kind, options and pin (HTTP clients)."""
    expected_principal: str | None = None
    kind: str | None = None


def _session_id_arg(value: str) -> str:
    try:
        return validate_session_id(value, "--session-id")
    except InvalidSessionIdError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _ttl_arg(value: str) -> str:
    try:
        parse_duration(value)
    except InvalidDurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def _principal_arg(value: str) -> str:
    from azure_agent_mcp.identity.pinning import InvalidPrincipalError, normalize_principal

    try:
        return normalize_principal(value)
    except InvalidPrincipalError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


AGENT_FLAGS = ("blueprint_client_id", "blueprint_client_secret", "blueprint_certificate", "blueprint_assertion_file")
SIDECAR_FLAGS = ("sidecar_url", "allow_remote_sidecar")
SHARED_AGENT_FLAGS = ("agent_identity_id", "agent_user")


def add_identity_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("identity")
    group.add_argument(
        "--credential",
        choices=CREDENTIAL_KINDS,
        default=os.environ.get("AZURE_AGENT_MCP_CREDENTIAL") or "auto",
        help="where tokens come from (default auto: sandbox, then this server's login, then az, then "
        "service principal env vars, then managed identity); env AZURE_AGENT_MCP_CREDENTIAL",
    )
    group.add_argument("--tenant", help="tenant id or domain to sign in to (default: the environment's)")
    group.add_argument("--subscription", help="default subscription id for tools that take one")
    group.add_argument(
        "--session-id",
        type=_session_id_arg,
        default=None,
        help="agent session id (default: $COPILOT_AGENT_SESSION_ID, else a new UUID); 1-128 of [A-Za-z0-9._:-]",
    )
    group.add_argument(
        "--session-ttl",
        type=_ttl_arg,
        default=os.environ.get("AZURE_AGENT_MCP_SESSION_TTL") or DEFAULT_TTL,
        help="session lifetime such as 45m, 8h, 1d; 0 = no expiry (default 8h); env AZURE_AGENT_MCP_SESSION_TTL",
    )
    group.add_argument(
        "--session-claims",
        choices=PROFILES,
        default=DEFAULT_PROFILE,
        help="shape of the agent claims request (default xms_cli_sid, as Azure CLI; xms_agent_session: the earlier one)",
    )
    group.add_argument(
        "--sandbox",
        nargs="?",
        const=EMBEDDED,
        default=None,
        metavar="MANIFEST",
        help="use the sandbox: without a value start the embedded one, with the path of a running "
        "sandbox's sandbox.json attach to it (credential defaults to its developer user)",
    )
    agent = parser.add_argument_group(
        "agent identity (Microsoft Entra Agent ID)",
        "--credential agent-identity: the blueprint obtains tokens for the agent identity (and its agent user). "
        "--credential sidecar: the Entra SDK auth sidecar does, and this process holds no credential. With "
        "--sandbox, ids and the blueprint's secret default to the sandbox's seeded ones.",
    )
    agent.add_argument("--blueprint-client-id", metavar="APP_ID", help="the agent identity blueprint's app id")
    agent.add_argument(
        "--blueprint-client-secret",
        metavar="SECRET",
        help="the blueprint's client secret (development only; prefer env AZURE_AGENT_MCP_BLUEPRINT_SECRET, since "
        "a flag shows in the process list); never logged",
    )
    agent.add_argument(
        "--blueprint-certificate",
        metavar="PATH",
        help="the blueprint's certificate: PEM with private key and certificate, or PFX "
        "(password in env AZURE_AGENT_MCP_BLUEPRINT_CERTIFICATE_PASSWORD)",
    )
    agent.add_argument(
        "--blueprint-assertion-file",
        metavar="PATH",
        help="workload identity federation: a token file the blueprint trusts (e.g. AZURE_FEDERATED_TOKEN_FILE), "
        "re-read for every exchange",
    )
    agent.add_argument("--agent-identity-id", metavar="APP_ID", help="the agent identity to act as")
    agent.add_argument("--agent-user", metavar="UPN_OR_OID", help="act as this agent user (the user_fic grant)")
    agent.add_argument(
        "--expect-principal",
        metavar="APPID_OR_OID",
        type=_principal_arg,
        default=None,
        help="identity pinning: refuse every token not issued to this app id or object id (policy key "
        "ExpectedPrincipal does the same); works with every credential",
    )
    agent.add_argument(
        "--ephemeral-agent",
        action="store_true",
        help="serve only, with --credential agent-identity: each agent session gets a fresh agent identity made "
        "from the blueprint through Microsoft Graph, holding only time-bound roles (--ephemeral-role), deleted "
        "when the session ends; leftovers of a crashed server are removed at the next start",
    )
    agent.add_argument(
        "--ephemeral-role",
        action="append",
        default=None,
        metavar="ROLE@SCOPE",
        help="a time-bound (PIM AdminAssign) role for each ephemeral identity, ending with its session: a built-in "
        "name (Reader, Contributor, Website Contributor, ...) or a role definition GUID, '@', an ARM scope; repeatable",
    )
    agent.add_argument(
        "--ephemeral-sponsor",
        metavar="USER_OID",
        help="the sponsor of every ephemeral identity: the operator's user object id (with --sandbox: its developer "
        "user); env AZURE_AGENT_MCP_EPHEMERAL_SPONSOR",
    )
    agent.add_argument(
        "--ephemeral-grace",
        type=_ttl_arg,
        default=None,
        metavar="DURATION",
        help="a leftover ephemeral identity of another host is removed once its session ended this long ago "
        "(default 10m); one of a dead process on this host at once",
    )
    agent.add_argument("--sidecar-url", metavar="URL", help="base URL of the Entra SDK auth sidecar (loopback only)")
    agent.add_argument(
        "--allow-remote-sidecar",
        action="store_true",
        help="accept a sidecar on another host (HTTPS only): its answers are bearer tokens",
    )


def register(subparsers: Any) -> None:
    whoami = subparsers.add_parser(
        "whoami",
        help="show the agent session, the principal and the agent markers in its token (never the token)",
        description="Acquire (or reuse) the session's ARM token and describe it: session, credential, "
        "principal (tid, oid, upn/appid, idtyp), agent markers, expiry. The token itself is never printed.",
    )
    add_identity_arguments(whoami)
    whoami.add_argument("--json", action="store_true", help="print one JSON object")
    whoami.add_argument("--devops", action="store_true",
                        help="also show who the Azure DevOps token is for (one more token request)")
    whoami.set_defaults(handler=_whoami)

    login = subparsers.add_parser(
        "login",
        help="sign in this server's own MSAL client (device code)",
        description="Device code sign-in into this server's persisted token cache (<state dir>/msal_cache.bin, "
        "mode 0600, encrypted where the platform offers it). Used by --credential msal.",
    )
    add_identity_arguments(login)
    login.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    login.set_defaults(handler=_login)

    logout = subparsers.add_parser(
        "logout",
        help="remove accounts from this server's token cache",
        description="Remove signed-in accounts and their tokens from this server's persisted MSAL cache.",
    )
    add_identity_arguments(logout)
    logout.add_argument("--username", help="remove only this account (default: all)")
    logout.set_defaults(handler=_logout)


# -- opening an identity ------------------------------------------------------------------------


def _resolve(args: argparse.Namespace) -> Any:
    try:
        return resolve_session(session_id=getattr(args, "session_id", None), ttl=getattr(args, "session_ttl", DEFAULT_TTL))
    except (InvalidSessionIdError, InvalidDurationError) as exc:
        raise SessionUsageError(f"refusing to start: {exc}") from exc


def _environment(args: argparse.Namespace, stack: ExitStack) -> tuple[Any, Any]:
    from azure_agent_mcp.environment import from_manifest, public_cloud

    spec = getattr(args, "sandbox", None)
    sandbox = None
    if spec == EMBEDDED:
        from azure_agent_mcp.sandbox import Sandbox

        sandbox = stack.enter_context(Sandbox())
        env = from_manifest(sandbox.manifest, subscription=args.subscription)
    elif spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise CommandError(f"no sandbox manifest at {path}: pass the sandbox.json a running sandbox wrote")
        try:
            env = from_manifest(path, subscription=args.subscription)
        except (ValueError, KeyError) as exc:
            raise CommandError(f"{path} is not a sandbox manifest ({type(exc).__name__}: {exc})") from exc
    else:
        env = public_cloud(args.tenant, args.subscription)
    if args.tenant and env.tenant_id != args.tenant:
        env = replace(env, tenant_id=args.tenant)
    return env, sandbox


def _kind(args: argparse.Namespace, env: Any) -> str:
    kind = args.credential
    if kind == "auto" and getattr(args, "sidecar_url", None):
        return "sidecar"
    if kind == "auto" and any(getattr(args, name, None) for name in AGENT_FLAGS):
        return "agent-identity"
    if kind == "auto" and env.is_sandbox:
        return "sandbox"
    return kind


def credential_options(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """build_credential's options for ``kind`` from the flags; flags meant for another kind are refused."""
    given = {name for name in (*AGENT_FLAGS, *SIDECAR_FLAGS, *SHARED_AGENT_FLAGS) if getattr(args, name, None)}
    allowed = {"agent-identity": {*AGENT_FLAGS, *SHARED_AGENT_FLAGS},
               "sidecar": {*SIDECAR_FLAGS, *SHARED_AGENT_FLAGS}}.get(kind, set())
    stray = sorted(given - allowed)
    if stray:
        flags = ", ".join("--" + name.replace("_", "-") for name in stray)
        raise CredentialUsageError(
            f"{flags} do not apply to --credential {kind}: use --credential agent-identity (blueprint flags) or "
            "--credential sidecar (--sidecar-url)"
        )
    options = {name: getattr(args, name) for name in allowed if getattr(args, name, None)}
    if kind == "agent-identity" and getattr(args, "tenant", None):
        options["tenant_id"] = args.tenant
    return options


EPHEMERAL_FLAGS = ("ephemeral_role", "ephemeral_sponsor", "ephemeral_grace")


def _ephemeral_agents(args: argparse.Namespace, kind: str, env: Any, options: dict[str, Any], audit: Any,
                      own_credential: bool) -> Any:
    """The ephemeral identities' manager for ``--ephemeral-agent`` (None without it); its flags checked first."""
    if not getattr(args, "ephemeral_agent", False):
        stray = [name for name in EPHEMERAL_FLAGS if getattr(args, name, None)]
        if stray:
            raise CredentialUsageError(", ".join("--" + n.replace("_", "-") for n in stray) + " only apply with "
                                       "--ephemeral-agent")
        return None
    if kind != "agent-identity":
        raise CredentialUsageError(f"--ephemeral-agent makes agent identities from a blueprint: use it with "
                                   f"--credential agent-identity, not {kind}")
    for name in ("agent_identity_id", "agent_user"):
        if getattr(args, name, None):
            raise CredentialUsageError(f"--{name.replace('_', '-')} names a fixed identity; --ephemeral-agent makes a "
                                       "new one per session: give one or the other")
    if audit is None:
        raise CredentialUsageError("--ephemeral-agent works with `serve` only: the Graph and PIM requests it makes are "
                                   "recorded in the server's audit log")
    if not own_credential:
        raise CredentialUsageError("--ephemeral-agent needs the server's own blueprint credential; a server acting "
                                   "on behalf of authenticated callers has none")
    if parse_duration(args.session_ttl) <= 0:
        raise CredentialUsageError("--ephemeral-agent needs a session that ends (--session-ttl other than 0): the "
                                   "identity's role assignments end with the session")
    from azure_agent_mcp.access.ephemeral import DEFAULT_GRACE, EphemeralAgents, EphemeralRole, EphemeralSettings
    from azure_agent_mcp.identity.pinning import InvalidPrincipalError, normalize_principal

    sponsor = getattr(args, "ephemeral_sponsor", None) or os.environ.get("AZURE_AGENT_MCP_EPHEMERAL_SPONSOR")
    if not sponsor and env.is_sandbox:
        sponsor = next((u["object_id"] for u in (env.manifest or {}).get("users", []) if u.get("name") == "developer"),
                       None)
    if not sponsor:
        raise CredentialUsageError("--ephemeral-agent needs --ephemeral-sponsor USER_OID (or "
                                   "AZURE_AGENT_MCP_EPHEMERAL_SPONSOR): the operator who sponsors each identity")
    try:
        sponsor = normalize_principal(sponsor)
    except InvalidPrincipalError as exc:
        raise CredentialUsageError(f"--ephemeral-sponsor: {exc}") from exc
    try:
        roles = tuple(EphemeralRole.parse(text) for text in (getattr(args, "ephemeral_role", None) or []))
        manager = EphemeralAgents(env, EphemeralSettings(
            sponsor, roles, float(parse_duration(getattr(args, "ephemeral_grace", None) or DEFAULT_GRACE))),
            options, audit)
    except IdentityError as exc:
        raise CredentialUsageError(f"refusing to start: {exc}") from exc
    return manager


@contextmanager
def open_identity(args: argparse.Namespace, *, lazy_credential: bool = False,
                  expected_principal: str | None = None, own_credential: bool = True,
                  audit: Any = None) -> Iterator[IdentityContext]:
    """Session, environment (starting or attaching to a sandbox) and the session's credential.

    An embedded sandbox (``--sandbox`` without a value) is stopped when the context exits.
    ``lazy_credential`` resolves and checks the kind but leaves building the credential (and
    importing MSAL / azure-core) to the caller's first token request: ``serve`` answers
    ``initialize`` before anyone needs Azure. ``IdentityContext.credential_for(session)`` builds a
    credential with the same kind, agent flags and pin for any session.

    ``expected_principal`` is the policy's ``ExpectedPrincipal``: with ``--expect-principal`` it
    pins every credential (both given and different: refused at start, exit 2).

    ``own_credential=False``: the process acts only on behalf of its callers (HTTP with
    authentication), so no credential of its own is looked for; ``credential_for`` refuses.
    """
    session = _resolve(args)
    from azure_agent_mcp.identity.pinning import ConflictingPinsError, InvalidPrincipalError, resolve_pin

    try:
        pin, source = resolve_pin(getattr(args, "expect_principal", None), expected_principal)
    except (ConflictingPinsError, InvalidPrincipalError) as exc:
        raise CredentialUsageError(f"refusing to start: {exc}") from exc
    with ExitStack() as stack:
        env, sandbox = _environment(args, stack)
        from azure_agent_mcp.identity.factory import build_credential, check_ready, resolve_auto

        claims_profile = args.session_claims
        if not own_credential and getattr(args, "ephemeral_agent", False):
            _ephemeral_agents(args, "agent-identity", env, {}, audit, own_credential)  # refuses, naming why
        if not own_credential:
            def no_credential(other: Any) -> Any:
                from azure_agent_mcp.identity.errors import CredentialUnavailableError

                raise CredentialUnavailableError(
                    "this server acts only on behalf of authenticated callers; it has no credential of its own")

            yield IdentityContext(env=env, session=session, credential=None, sandbox=sandbox,
                                  credential_for=no_credential, expected_principal=pin, kind=None)
            return
        try:
            kind = _kind(args, env)
            options = credential_options(args, kind)
            if kind == "auto":
                kind = resolve_auto(env)
            if not getattr(args, "ephemeral_agent", False):  # the ephemeral manager checks its own (below)
                check_ready(kind, env, **options)
        except IdentityError as exc:
            raise CommandError(str(exc)) from exc
        ephemeral = _ephemeral_agents(args, kind, env, options, audit, own_credential)
        if ephemeral is not None:
            options["ephemeral_agents"] = ephemeral
            stack.callback(ephemeral.close)  # after the runtime closed its sessions: whatever is still live goes
            ephemeral.start()  # the sweep of a crashed predecessor's leftovers, in the background

        def credential_for(other: Any) -> Any:
            return build_credential(kind, env, other, claims_profile=claims_profile, expect_principal=pin,
                                    pin_source=source, **options)

        credential = None
        if not lazy_credential:
            try:
                credential = credential_for(session)
            except IdentityError as exc:
                raise CommandError(str(exc)) from exc
            stack.callback(credential.close)
        yield IdentityContext(env=env, session=session, credential=credential, sandbox=sandbox,
                              credential_for=credential_for, expected_principal=pin, kind=kind)


# -- commands -----------------------------------------------------------------------------------


def _whoami(args: argparse.Namespace) -> int:
    from azure.core.exceptions import ClientAuthenticationError

    from azure_agent_mcp.identity.whoami_report import whoami, whoami_lines

    with open_identity(args) as identity:
        try:
            info = whoami(identity.credential, identity.env, identity.session, devops=bool(args.devops))
        except (IdentityError, ClientAuthenticationError) as exc:
            raise CommandError(_one_line(exc)) from exc
    if args.json:
        print(json.dumps(info, sort_keys=True))
    else:
        print("\n".join(whoami_lines(info)))
    pinning = info.get("pinning")
    if pinning and not pinning.get("match"):
        print(f"azure-agent-mcp: {pinning.get('message')}", file=sys.stderr)
        return 1
    devops = info.get("devops")
    if devops is not None and "error" in devops:
        print(f"azure-agent-mcp: Azure DevOps: {devops['error']}", file=sys.stderr)
        return 1
    return 0


def _login(args: argparse.Namespace) -> int:
    if args.credential not in ("auto", "msal"):
        raise CommandError(_login_hint(args.credential))
    from azure_agent_mcp.identity.msal_provider import device_code_login, persisted_apps

    session = _resolve(args)
    with ExitStack() as stack:
        env, _ = _environment(args, stack)
        try:
            apps = persisted_apps(env)
            account = device_code_login(
                apps,
                session,
                (env.arm_scope,),
                tenant=args.tenant or env.tenant_id,
                claims_profile=args.session_claims,
                show=lambda message: print(message, file=sys.stderr, flush=True),
                timeout=args.timeout,
            )
        except IdentityError as exc:
            raise CommandError(_one_line(exc)) from exc
    where = account.get("token_cache") or "memory"
    protection = "encrypted" if account.get("token_cache_encrypted") else "not encrypted (no keyring here), mode 0600"
    print(f"Signed in as {account.get('username') or account.get('object_id')} (tenant {account.get('tenant_id')}).")
    print(f"Token cache: {where} ({protection}). Use --credential msal (or auto).")
    return 0


def _login_hint(kind: str) -> str:
    return {
        "azure-cli": "--credential azure-cli uses the Azure CLI's own sign-in: run `az login`",
        "sandbox": "--credential sandbox signs the sandbox's developer user in by itself; no login needed",
        "service-principal": "--credential service-principal reads AZURE_CLIENT_ID, AZURE_TENANT_ID and "
        "AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH); no login needed",
        "managed-identity": "--credential managed-identity needs no login",
        "agent-identity": "--credential agent-identity signs in with the blueprint's credential; no login needed",
        "sidecar": "--credential sidecar gets its tokens from the auth sidecar; no login needed",
    }.get(kind, f"login signs in --credential msal, not {kind}")


def _logout(args: argparse.Namespace) -> int:
    if args.credential not in ("auto", "msal"):
        raise CommandError(_login_hint(args.credential).replace("login", "logout", 1))
    from azure_agent_mcp.identity.msal_provider import CACHE_FILE_NAME, logout, persisted_apps
    from azure_agent_mcp.paths import state_dir

    if not (state_dir() / CACHE_FILE_NAME).exists():
        print("Not signed in: there is no token cache.")
        return 0
    with ExitStack() as stack:
        env, _ = _environment(args, stack)
        try:
            removed = logout(persisted_apps(env), args.username)
        except IdentityError as exc:
            raise CommandError(_one_line(exc)) from exc
    if not removed:
        print("No signed-in account" + (f" named {args.username}" if args.username else "") + " was found.")
    else:
        print("Signed out: " + ", ".join(removed) + ".")
    return 0


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
