"""``(method, url)`` -> the operation, scope and plane the policy decides on.

Only two kinds of destination exist: the configured ARM endpoint and Key Vaults under the
configured vault URL template (``https://{vault}.vault.azure.net`` in Azure,
``https://127.0.0.1:PORT/vaults/{vault}`` in the sandbox). Scheme, host and port are compared
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
from azure_agent_mcp.policy.errors import UnmappableRequestError
from azure_agent_mcp.policy.known_operations import is_known_operation
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
    """Where ARM and the Key Vault data plane are (compiled for matching at construction)."""

    arm_endpoint: str
    keyvault_url_template: str
    _arm: tuple[_Origin, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _vault: tuple[str, _Origin, tuple[str, ...], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        origin, base = _origin(self.arm_endpoint, "ARM endpoint")
        object.__setattr__(self, "_arm", (origin, tuple(s.lower() for s in base)))
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
    def from_environment(cls, env: AzureEnvironment) -> Endpoints:
        return cls(env.arm_endpoint, env.keyvault_url_template)

    @classmethod
    def public_cloud(cls) -> Endpoints:
        return cls("https://management.azure.com", "https://{vault}.vault.azure.net")


@dataclass(frozen=True)
class MappedRequest:
    operation: str
    data_action: bool
    scope: str
    plane: str  # "arm" | "keyvault"
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

    arm_origin, arm_base = endpoints._arm
    if parts.path.endswith("/") and parts.path != "/":
        raise UnmappableRequestError(method, url, "the path is not canonical: the path has a trailing '/'")
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
        method, url, f"{shown} is neither the configured ARM endpoint nor a Key Vault under the configured template"
    )
