"""Every tool argument that reaches a URL, typed: parsed into its parts, then written canonically.

The pipeline policy refuses what it cannot vouch for, but it should not be the only thing
between a client's string and a URL. So an argument is checked against what Azure itself
accepts (a subscription id is a GUID, a group name follows ARM's naming rule, a resource id has
ARM's structure), and the URL is built from the parsed parts, each escaped by
``urlpath.quote_segment``: no value can add a segment, a query or another host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from azure_agent_mcp.policy.urlpath import PathRejected, path_segments, quote_segment
from azure_agent_mcp.tools.base import ToolInputError

_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# ARM: 1-90 letters, digits, '_', '-', '.', '(' and ')'; not ending in '.'. (ARM also allows
# non-ASCII letters; this server sends ASCII paths only, so it accepts ASCII names only.)
_GROUP = re.compile(r"[-\w.()]{0,89}[-\w()]", re.ASCII)
_NAMESPACE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)+")
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9]*")
# A resource name inside an id: printable ASCII, without what would end or escape a segment.
_NAME = re.compile(r"[\x20-\x7e]{1,260}")
_NAME_FORBIDDEN = frozenset("/\\?#%")
# ARM: 1-64 letters, digits, '-', '.', '_', '(' and ')' (azure-rest-api-specs, deploymentName); '.' and '..'
# alone would be dot segments of the path, not names.
_DEPLOYMENT = re.compile(r"(?!\.\.?$)[-\w.()]{1,64}", re.ASCII)
_VAULT = re.compile(r"[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]")

RESOURCE_ID_HINT = (
    "Pass the id exactly as resource_list returns it: /subscriptions/<guid>/resourceGroups/<group>/providers/"
    "<Namespace>/<type>/<name>[/<type>/<name>...]."
)


def _matching(pattern: re.Pattern[str], value: str, what: str, hint: str) -> str:
    if not pattern.fullmatch(value):
        raise ToolInputError(f"'{value[:100]}' is not {what}.", hint=hint)
    return value


def subscription_id(value: str) -> str:
    return _matching(_GUID, value, "a subscription id",
                     "A subscription id is a GUID like 0b1f6471-1bf0-4dda-aec3-cb9272f09590 (subscription_list shows them).")


def group_name(value: str) -> str:
    return _matching(_GROUP, value, "a valid resource group name",
                     "Use 1-90 ASCII letters, digits, '-', '_', '.', '(' or ')', not ending in '.'.")


def deployment_name(value: str) -> str:
    return _matching(_DEPLOYMENT, value, "a deployment name",
                     "A deployment name has 1-64 ASCII letters, digits, '-', '.', '_', '(' or ')', and is not '.' or "
                     "'..' (deployment_list shows them).")


def vault_name(value: str) -> str:
    return _matching(_VAULT, value, "a Key Vault name",
                     "A vault name has 3-24 letters, digits and single hyphens, starts with a letter and ends with a "
                     "letter or digit (for example kv-prod), or pass the vault's URL as the server's endpoint names it.")


@dataclass(frozen=True)
class ResourceId:
    """A parsed ARM resource id: its decoded segments, and the canonical path built from them."""

    segments: tuple[str, ...]

    @property
    def path(self) -> str:
        return "/" + "/".join(quote_segment(s) for s in self.segments)

    @property
    def subscription(self) -> str:
        return self.segments[1]

    def _innermost_section(self) -> int | None:
        """The index of the ``providers`` that opens the innermost provider section, if any.

        Sections open at even indices (after ``subscriptions/{id}`` and ``resourceGroups/{g}``, in
        ``providers/{namespace}`` and ``{type}/{name}`` pairs); a resource or group *named*
        ``providers`` stands at an odd index and is a name.
        """
        found = None
        for index in range(2, len(self.segments), 2):
            if self.segments[index].lower() == "providers":
                found = index
        return found

    @property
    def namespace(self) -> str:
        """The provider namespace of the innermost provider section (Microsoft.Resources for groups)."""
        index = self._innermost_section()
        return "Microsoft.Resources" if index is None else self.segments[index + 1]

    @property
    def resource_type(self) -> str:
        """The type chain after the innermost namespace (``storageAccounts/blobServices``)."""
        index = self._innermost_section()
        if index is None:
            return "resourceGroups" if len(self.segments) > 2 else "subscriptions"
        rest = self.segments[index + 2 :]
        return "/".join(rest[0::2])


def _bad_id(value: str, problem: str) -> ToolInputError:
    return ToolInputError(f"'{value[:200]}' is not an ARM resource id: {problem}.", hint=RESOURCE_ID_HINT)


def resource_id(value: str) -> ResourceId:
    """Parse ``/subscriptions/{guid}[/resourceGroups/{g}][/providers/{NS}/{type}/{name}...]...``."""
    if not value.startswith("/"):
        raise _bad_id(value, "it does not start with /subscriptions/")
    segments = value[1:].split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise _bad_id(value, "it has an empty, '.' or '..' segment")
        if not _NAME.fullmatch(segment) or _NAME_FORBIDDEN & set(segment):
            raise _bad_id(value, f"segment '{segment[:60]}' has a character ids never carry (/ \\ ? # % or non-ASCII)")
    if len(segments) < 2 or segments[0].lower() != "subscriptions":
        raise _bad_id(value, "it does not start with /subscriptions/<guid>")
    subscription_id(segments[1])
    position = 2
    if len(segments) > 2 and segments[2].lower() == "resourcegroups":
        if len(segments) < 4:
            raise _bad_id(value, "resourceGroups is not followed by a group name")
        group_name(segments[3])
        position = 4
    while position < len(segments):
        if segments[position].lower() != "providers":
            raise _bad_id(value, f"'{segments[position][:60]}' stands where 'providers' must")
        if position + 1 >= len(segments) or not _NAMESPACE.fullmatch(segments[position + 1]):
            raise _bad_id(value, "'providers' is not followed by a namespace like Microsoft.Storage")
        position += 2
        pairs = 0
        while position < len(segments) and segments[position].lower() != "providers":
            if not _TYPE.fullmatch(segments[position]):
                raise _bad_id(value, f"'{segments[position][:60]}' is not a resource type name")
            if position + 1 >= len(segments):
                raise _bad_id(value, f"it ends with the type '{segments[position]}' instead of a resource name")
            position += 2
            pairs += 1
        if pairs == 0:
            raise _bad_id(value, "a provider section names no resource")
    return ResourceId(tuple(segments))


def scope_id(value: str) -> ResourceId:
    """A subscription, a resource group or a resource: what an ARM scope argument may name."""
    return resource_id(value.rstrip("/") if value.endswith("/") and value != "/" else value)


def arm_path(value: str) -> str:
    """A raw ARM path for ``arm_request``: canonical as it stands (the guard would refuse it otherwise)."""
    path, _, query = value.strip().partition("?")
    if "://" in path or path.startswith("//") or not path.startswith("/"):
        raise ToolInputError(
            "path must be relative to the ARM endpoint (start with /subscriptions/, /providers/ or /tenants); "
            "absolute URLs and other hosts are refused.",
            hint="Example: /subscriptions/<id>/resourceGroups/<group>",
        )
    if "#" in value:
        raise ToolInputError("path may not carry a fragment ('#').")
    try:
        path_segments(path)
    except PathRejected as exc:
        hint = f"Send {exc.canonical} instead." if exc.canonical else "Write the path out in full, each segment as ARM names it."
        raise ToolInputError(f"path is not canonical: {exc.problem}.", hint=hint) from None
    if "api-version=" in query.lower():
        raise ToolInputError("Pass the api-version as api_version, not inside path.")
    return value.strip()


def vault_for(value: str, vault_url_template: str) -> str:
    """A vault name, or a URL that is exactly the configured endpoint's URL for one vault: the name."""
    if not value.lower().startswith("https://"):
        return vault_name(value)
    try:
        parts = urlsplit(value.rstrip("/"))
    except ValueError as exc:  # an unbalanced '[', a host that changes under NFKC normalisation...
        raise ToolInputError(
            f"'{value[:100]}' is not a Key Vault URL ({exc}).",
            hint="Pass the vault's name (for example kv-prod), or its URL exactly as the endpoint template builds it.",
        ) from None
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ToolInputError(f"'{value[:100]}' is not a Key Vault URL: it has a query, fragment or user information.")
    template = urlsplit(vault_url_template)
    candidate = (parts.hostname or "").split(".", 1)[0] if "{vault}" in template.netloc else parts.path.rsplit("/", 1)[-1]
    expected = vault_url_template.format(vault=candidate)
    if not _VAULT.fullmatch(candidate) or value.rstrip("/").lower() != expected.lower():
        raise ToolInputError(
            f"'{value[:100]}' is not a Key Vault URL under this server's endpoint ({vault_url_template}).",
            hint="Pass the vault's name (for example kv-prod), or its URL exactly as the endpoint template builds it.",
        )
    return candidate
