"""``(method, url)`` -> the operation, scope and plane the policy decides on.

Only four kinds of destination exist: the configured ARM endpoint, Key Vaults under the
configured vault URL template (``https://{vault}.vault.azure.net`` in Azure,
``https://127.0.0.1:PORT/vaults/{vault}`` in the sandbox), the Log Analytics query endpoint
(``https://api.loganalytics.io``; ``https://127.0.0.1:PORT/loganalytics`` in the sandbox, so it is
matched by origin and path prefix, before ARM) and Azure DevOps (``https://dev.azure.com`` and
``https://vssps.dev.azure.com``; ``/devops`` and ``/vssps`` in the sandbox), for the one
configured organization only (``devops_mapping``). Scheme, host and port are compared
exactly; a request anywhere else (another host, a port, plain http, user info in the URL) is
refused, because the policy cannot say what it would do there.

The path is decided as it is written on the wire: ``urlpath`` refuses any path that requests,
urllib3 or Azure would read differently, so the path recorded in the audit is the path sent.
A fragment, and any character outside printable ASCII anywhere in the URL, are refused too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from azure_agent_mcp.policy.arm_mapping import ArmShapeError, map_arm
from azure_agent_mcp.policy.devops_mapping import ORGANIZATION_FLAG, DevOpsShapeError, map_devops, organization_problem
from azure_agent_mcp.policy.errors import UnmappableRequestError
from azure_agent_mcp.policy.known_operations import is_known_operation
from azure_agent_mcp.policy.logs_mapping import LogsShapeError, map_logs
from azure_agent_mcp.policy.urlpath import PathRejected, path_segments
from azure_agent_mcp.policy.vault_mapping import VaultShapeError, map_vault

if TYPE_CHECKING:
    from azure_agent_mcp.environment import AzureEnvironment

METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"})
_DEFAULT_PORTS = {"https": 443, "http": 80}
_VAULT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,22}[a-z0-9]")
_PLACEHOLDER = "vaultplaceholder0123"
_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]")

_Origin = tuple[str, str, int]


def _origin(url: str, what: str) -> tuple[_Origin, list[str]]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{what} '{url}' is not an absolute http(s) URL")
    return (scheme, parts.hostname.lower(), parts.port or _DEFAULT_PORTS[scheme]), [
        s for s in parts.path.split("/") if s
    ]


@dataclass(frozen=True)
class Endpoints:
    """Where ARM, the Key Vault data plane, Log Analytics' query API and Azure DevOps are (compiled at construction).

    ``devops_organization`` None means Azure DevOps is not configured: its URLs are refused, with the
    flag that configures it.
    """

    arm_endpoint: str
    keyvault_url_template: str
    logs_endpoint: str = "https://api.loganalytics.io"
    devops_endpoint: str = "https://dev.azure.com"
    devops_vssps_endpoint: str = "https://vssps.dev.azure.com"
    devops_organization: str | None = None
    _arm: tuple[_Origin, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _devops: tuple[tuple[str, _Origin, tuple[str, ...]], ...] = field(init=False, repr=False, compare=False)
    _logs: tuple[_Origin, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _vault: tuple[str, _Origin, tuple[str, ...], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        origin, base = _origin(self.arm_endpoint, "ARM endpoint")
        object.__setattr__(self, "_arm", (origin, tuple(s.lower() for s in base)))
        logs_origin, logs_base = _origin(self.logs_endpoint, "Log Analytics endpoint")
        logs = (logs_origin, tuple(s.lower() for s in logs_base))
        if logs == self._arm:
            raise ValueError(f"the Log Analytics endpoint '{self.logs_endpoint}' cannot be the ARM endpoint itself")
        object.__setattr__(self, "_logs", logs)
        devops = []
        for host, url, what in (("devops", self.devops_endpoint, "Azure DevOps endpoint"),
                                ("vssps", self.devops_vssps_endpoint, "Azure DevOps VSSPS endpoint")):
            origin, base = _origin(url, what)
            compiled = (origin, tuple(s.lower() for s in base))
            if compiled in (self._arm, self._logs) or any(compiled == (o, b) for _, o, b in devops):
                raise ValueError(f"the {what} '{url}' cannot be the ARM, Log Analytics or other Azure DevOps endpoint")
            devops.append((host, *compiled))
        object.__setattr__(self, "_devops", tuple(devops))
        if self.devops_organization is not None:
            problem = organization_problem(self.devops_organization)
            if problem is not None:
                raise ValueError(f"{ORGANIZATION_FLAG}: {problem}")
        template = self.keyvault_url_template
        if template.count("{vault}") != 1:
            raise ValueError(f"Key Vault URL template '{template}' must contain '{{vault}}' exactly once")
        vault_origin, vault_path = _origin(template.replace("{vault}", _PLACEHOLDER), "Key Vault URL template")
        host = vault_origin[1]
        if _PLACEHOLDER in host:
            if not host.startswith(_PLACEHOLDER + ".") or vault_path:
                raise ValueError(f"Key Vault URL template '{template}': '{{vault}}' must be the first host label")
            suffix = host[len(_PLACEHOLDER) :]
            object.__setattr__(self, "_vault", ("host", vault_origin, (), suffix))
        else:
            lowered = [s.lower() for s in vault_path]
            if not lowered or lowered[-1] != _PLACEHOLDER:
                raise ValueError(f"Key Vault URL template '{template}': '{{vault}}' must end the host or the path")
            object.__setattr__(self, "_vault", ("path", vault_origin, tuple(lowered[:-1]), ""))

    @classmethod
    def from_environment(cls, env: AzureEnvironment, devops_organization: str | None = None) -> Endpoints:
        return cls(env.arm_endpoint, env.keyvault_url_template, env.logs_endpoint, env.devops_endpoint,
                   env.devops_vssps_endpoint, devops_organization)

    @classmethod
    def public_cloud(cls, devops_organization: str | None = None) -> Endpoints:
        return cls("https://management.azure.com", "https://{vault}.vault.azure.net", "https://api.loganalytics.io",
                   devops_organization=devops_organization)


@dataclass(frozen=True)
class MappedRequest:
    operation: str
    data_action: bool
    scope: str
    plane: str  # "arm" | "keyvault" | "loganalytics" | "devops"
    path: str = ""  # the path exactly as sent (canonical, so also as decided); no query string
    vault: str | None = None
    unknown_operation: bool = False  # its namespace's published operation list does not name it
    scopes: tuple[str, ...] = ()  # for body-scoped operations: every scope the body names, as decided


def map_request(method: str, url: str, endpoints: Endpoints) -> MappedRequest:
    """Map one HTTP request; raise UnmappableRequestError for anything the policy cannot vouch for."""
    verb = method.upper()
    if verb not in METHODS:
        raise UnmappableRequestError(method, url, f"method {method} is not one ARM or Key Vault defines")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnmappableRequestError(method, url, f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    hostname = parts.hostname  # each of urlsplit's netloc properties parses the netloc again: once
    if scheme not in _DEFAULT_PORTS or not hostname:
        raise UnmappableRequestError(method, url, "not an absolute https URL")
    if "@" in parts.netloc:
        raise UnmappableRequestError(method, url, "URLs with user information are never sent")
    if "#" in url:
        raise UnmappableRequestError(method, url, "the URL has a fragment ('#'); ARM and Key Vault URLs never do")
    odd = _NOT_PRINTABLE.search(url)
    if odd is not None:
        raise UnmappableRequestError(
            method, url, f"the URL contains {odd.group()!r}, which is not printable ASCII; escape it in the query, or drop it"
        )
    origin = (scheme, hostname, port or _DEFAULT_PORTS[scheme])
    mode, vault_origin, vault_prefix, suffix = endpoints._vault
    maybe_vault = origin == vault_origin if mode == "path" else origin[1].endswith(suffix)
    try:
        segments = path_segments(parts.path, trailing_slash=maybe_vault)
    except PathRejected as exc:
        raise UnmappableRequestError(method, url, f"the path is not canonical: {exc}") from None
    path = parts.path

    vault: str | None = None
    rest: list[str] = []
    if mode == "path" and origin == vault_origin:
        k = len(vault_prefix)
        if len(segments) > k and tuple(s.lower() for s in segments[:k]) == vault_prefix:
            vault, rest = segments[k], segments[k + 1 :]
            if not _VAULT_NAME.fullmatch(vault.lower()):
                raise UnmappableRequestError(method, url, f"'{vault}' is not a Key Vault name")
    elif mode == "host" and origin[0] == vault_origin[0] and origin[2] == vault_origin[2]:
        host = origin[1]
        if host.endswith(suffix) and "." not in host[: -len(suffix)]:
            label = host[: -len(suffix)]
            if not _VAULT_NAME.fullmatch(label):
                raise UnmappableRequestError(method, url, f"'{label}' is not a Key Vault name")
            vault, rest = label, segments
    if vault is not None:
        try:
            mapped = map_vault(verb, vault, rest)
        except VaultShapeError as exc:
            raise UnmappableRequestError(method, url, str(exc)) from None
        return MappedRequest(
            mapped.operation, True, mapped.scope, "keyvault", path, vault, not is_known_operation(mapped.operation, True)
        )

    if parts.path.endswith("/") and parts.path != "/":
        raise UnmappableRequestError(method, url, "the path is not canonical: the path has a trailing '/'")
    for host, devops_origin, devops_base in endpoints._devops:
        if origin == devops_origin and tuple(s.lower() for s in segments[: len(devops_base)]) == devops_base:
            return _map_devops(method, url, endpoints, host, segments[len(devops_base) :], parts.query, path)

    logs_origin, logs_base = endpoints._logs
    if origin == logs_origin and tuple(s.lower() for s in segments[: len(logs_base)]) == logs_base:
        try:
            mapped_logs = map_logs(verb, segments[len(logs_base) :])
        except LogsShapeError as exc:
            raise UnmappableRequestError(method, url, str(exc)) from None
        return MappedRequest(
            mapped_logs.operation, False, mapped_logs.scope, "loganalytics", path, None,
            not mapped_logs.known or not is_known_operation(mapped_logs.operation, False),
        )

    arm_origin, arm_base = endpoints._arm
    if origin == arm_origin and tuple(s.lower() for s in segments[: len(arm_base)]) == arm_base:
        try:
            mapped_arm = map_arm(verb, segments[len(arm_base) :])
        except ArmShapeError as exc:
            raise UnmappableRequestError(method, url, str(exc)) from None
        operation = mapped_arm.operation
        return MappedRequest(
            operation, False, mapped_arm.scope, "arm", path, None, not is_known_operation(operation, False)
        )

    shown = f"{origin[0]}://{origin[1]}:{origin[2]}"
    raise UnmappableRequestError(
        method, url, f"{shown} is neither the configured ARM endpoint, a Key Vault under the configured template, the "
        "configured Log Analytics endpoint, nor the configured Azure DevOps endpoints"
    )


def devops_organization_in(url: str, endpoints: Endpoints) -> str | None:
    """The organization an Azure DevOps URL names (its first segment below the endpoint), or None.

    For ``policy explain --url``, which decides as a server configured for that organization would;
    None for any other URL, and for a first segment that is not an organization name.
    """
    try:
        origin, segments = _origin(url, "URL")
    except ValueError:
        return None
    for _, devops_origin, base in endpoints._devops:
        if origin == devops_origin and tuple(s.lower() for s in segments[: len(base)]) == base and len(segments) > len(base):
            named = segments[len(base)]
            return named if organization_problem(named) is None else None
    return None


def _map_devops(
    method: str, url: str, endpoints: Endpoints, host: str, segments: list[str], query: str, path: str
) -> MappedRequest:
    organization = endpoints.devops_organization
    if organization is None:
        raise UnmappableRequestError(
            method, url, f"Azure DevOps is not configured on this server; start it with {ORGANIZATION_FLAG} ORG to let "
            "requests to that organization through"
        )
    if not segments:
        raise UnmappableRequestError(method, url, "an Azure DevOps URL names its organization first ({organization}/...)")
    if segments[0].lower() != organization.lower():
        raise UnmappableRequestError(
            method, url, f"'{segments[0]}' is not the configured Azure DevOps organization '{organization}' "
            f"({ORGANIZATION_FLAG}); requests to other organizations are never sent"
        )
    try:
        mapped = map_devops(host, method.upper(), organization, segments[1:], query)
    except DevOpsShapeError as exc:
        raise UnmappableRequestError(method, url, str(exc)) from None
    return MappedRequest(mapped.operation, False, mapped.scope, "devops", path)
