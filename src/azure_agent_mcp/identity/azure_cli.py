"""The user's ``az login``, through ``az account get-access-token`` run as a child process.

The child gets ``COPILOT_AGENT_SESSION_ID`` in its environment; Azure CLI 2.91 then sends it as
``client_session`` (query string and form body) and keeps the token in its own per-session cache
partition. The server only reads through ``az``: it never writes into the Azure CLI's token cache.
Each call costs a process start (about a second), so ``AgentCredential`` keeps the result in
process until its refresh time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from azure_agent_mcp.identity.credential import ProviderToken, TokenRequestError
from azure_agent_mcp.identity.errors import CredentialUnavailableError
from azure_agent_mcp.identity.session import SESSION_ENV, AgentSession

DEFAULT_TIMEOUT_SECONDS = 60.0


def find_az() -> str | None:
    return shutil.which("az")


def azure_config_dir(environ: dict[str, str] | None = None) -> Path:
    environ = environ if environ is not None else dict(os.environ)
    return Path(environ.get("AZURE_CONFIG_DIR") or Path.home() / ".azure")


def az_signed_in(environ: dict[str, str] | None = None) -> bool:
    """Cheap probe (no process start): does the Azure CLI profile list any account?"""
    profile = azure_config_dir(environ) / "azureProfile.json"
    try:
        data = json.loads(profile.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(data, dict) and data.get("subscriptions"))


def parse_expiry(payload: dict[str, Any]) -> int:
    """``expires_on`` (POSIX, Azure CLI >= 2.54) or ``expiresOn`` (local time, older CLIs)."""
    if payload.get("expires_on") not in (None, ""):
        return int(payload["expires_on"])
    raw = payload.get("expiresOn")
    if not raw:
        raise ValueError("no expires_on / expiresOn in the output")
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return int(datetime.strptime(str(raw), fmt).timestamp())  # naive = local time, as az prints it
        except ValueError:
            continue
    raise ValueError(f"unrecognised expiresOn {raw!r}")


class AzureCliProvider:
    """Tokens from ``az account get-access-token`` in the agent session (tagged by Azure CLI itself)."""

    kind = "azure-cli"
    tagged = True

    def __init__(
        self,
        session: AgentSession,
        *,
        default_tenant: str | None = None,
        subscription: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        az_path: str | None = None,
        ca_bundle: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.session = session
        self.default_tenant = default_tenant
        self.subscription = subscription
        self.timeout = timeout
        self._az = az_path
        self._ca_bundle = ca_bundle
        self._environ = environ

    def _command(self, scopes: tuple[str, ...], tenant_id: str | None) -> list[str]:
        az = self._az or find_az()
        if az is None:
            raise CredentialUnavailableError(
                "the Azure CLI ('az') is not on PATH: install it (https://aka.ms/azure-cli) and run `az login`, "
                "or choose another --credential (msal, service-principal, managed-identity)"
            )
        command = [az, "account", "get-access-token", "--output", "json", "--only-show-errors"]
        command += ["--scope", *scopes]
        if tenant_id:
            command += ["--tenant", tenant_id]
        elif self.subscription:
            command += ["--subscription", self.subscription]
        return command

    def _child_env(self) -> dict[str, str]:
        env = dict(self._environ if self._environ is not None else os.environ)
        env[SESSION_ENV] = self.session.id
        env.setdefault("AZURE_CORE_COLLECT_TELEMETRY", "false")
        env.setdefault("AZURE_CORE_NO_COLOR", "true")
        if self._ca_bundle:  # the environment's own CA (sandbox, private cloud) must win over the system's
            env["REQUESTS_CA_BUNDLE"] = self._ca_bundle
        return env

    def acquire(self, scopes: tuple[str, ...], *, tenant_id: str | None, claims: str | None) -> ProviderToken:
        if claims:
            raise TokenRequestError(
                "the resource asked for additional claims (a claims challenge), which `az account "
                "get-access-token` cannot request; run `az login` again (it satisfies Conditional Access), "
                "or use --credential msal"
            )
        command = self._command(scopes, tenant_id or self.default_tenant)
        started = time.time()
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=self._child_env(),
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TokenRequestError(
                f"`az account get-access-token` did not answer within {self.timeout:.0f} s; check that "
                "`az account get-access-token` works in a terminal (network, proxy, a pending prompt)"
            ) from exc
        except OSError as exc:
            raise CredentialUnavailableError(f"could not run the Azure CLI ({exc.strerror or exc})") from exc
        if done.returncode != 0:
            raise self._failure(done.stderr)
        try:
            payload = json.loads(done.stdout)
            token = str(payload["accessToken"])
            expires_on = parse_expiry(payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenRequestError(
                f"`az account get-access-token` printed output this server cannot read ({type(exc).__name__}); "
                "update the Azure CLI (2.91 or later tags tokens with the agent session)"
            ) from exc
        if expires_on <= started:
            raise TokenRequestError("`az account get-access-token` returned an expired token; run `az login` again")
        return ProviderToken(token, expires_on)

    def _failure(self, stderr: str) -> Exception:
        text = " ".join((stderr or "").split())
        lowered = text.lower()
        if "az login" in lowered or "please run 'az login'" in lowered or "not logged in" in lowered:
            return CredentialUnavailableError(
                "the Azure CLI is not signed in (or its sign-in expired): run `az login`"
                + (f" --tenant {self.default_tenant}" if self.default_tenant else "")
                + ", then try again"
            )
        first = text[:300] if text else "no error output"
        return TokenRequestError(f"`az account get-access-token` failed: {first}")

    def forget_session(self) -> None:
        return None  # Azure CLI owns its cache; nothing of ours is there

    def describe(self) -> dict[str, Any]:
        return {"az": self._az or find_az(), "config_dir": str(azure_config_dir(self._environ))}

    def close(self) -> None:
        return None


def sandbox_cli_environment(
    manifest: dict[str, Any],
    config_dir: Path,
    *,
    az_path: str | None = None,
    base_environ: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> dict[str, str]:
    """Point an isolated Azure CLI profile (``AZURE_CONFIG_DIR``) at a sandbox and sign its developer in.

    Registers the sandbox as a custom cloud (endpoint discovery skipped: the sandbox serves no
    ``/metadata/endpoints``), turns MSAL instance discovery off, and signs in with the device code
    flow, which the sandbox approves at once. Returns the environment to run ``az`` with.
    """
    az = az_path or find_az()
    if az is None:
        raise CredentialUnavailableError("the Azure CLI ('az') is not on PATH")
    config_dir.mkdir(parents=True, exist_ok=True)
    environ = dict(base_environ if base_environ is not None else os.environ)
    environ.pop(SESSION_ENV, None)
    environ.update(
        AZURE_CONFIG_DIR=str(config_dir),
        REQUESTS_CA_BUNDLE=str(manifest["ca_bundle"]),
        AZURE_CORE_COLLECT_TELEMETRY="false",
        AZURE_CORE_NO_COLOR="true",
        AZURE_CORE_SURVEY_MESSAGE="false",
    )
    steps = [
        ["config", "set", "core.instance_discovery=false"],
        ["cloud", "register", "--name", "AgentMcpSandbox",
         "--endpoint-resource-manager", manifest["arm_endpoint"],
         "--endpoint-active-directory", manifest["authority_host"],
         "--endpoint-active-directory-resource-id", "https://management.core.windows.net/",
         "--endpoint-active-directory-graph-resource-id", "https://graph.windows.net/",
         "--endpoint-management", "https://management.core.windows.net/"],
        ["cloud", "set", "--name", "AgentMcpSandbox"],
        ["login", "--use-device-code", "--tenant", manifest["tenant_id"], "--allow-no-subscriptions"],
    ]
    for step in steps:
        done = subprocess.run(
            [az, *step, "--only-show-errors", "--output", "none"],
            capture_output=True, text=True, env=environ, timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )
        if done.returncode != 0:
            raise CredentialUnavailableError(
                f"`az {' '.join(step[:2])}` against the sandbox failed: {' '.join(done.stderr.split())[:300]}"
            )
    return environ
