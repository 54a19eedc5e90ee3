"""The policy model: an Azure role definition plus Deny and Confirm lists, and how files become one.

A policy file is JSON in either shape Azure itself uses for a role definition, so an operator can
copy a custom role they already have:

* ``az role definition create`` input: ``Name``, ``Description``, ``Actions``, ``NotActions``,
  ``DataActions``, ``NotDataActions``, ``AssignableScopes`` (``Id``, ``IsCustom`` tolerated);
* ``az role definition list`` output: an object (or a one-element list) with ``roleName``,
  ``permissions: [{actions, notActions, dataActions, notDataActions}]``, ``assignableScopes``
  and the bookkeeping keys ARM adds (``id``, ``type``, ``createdOn``...), or the REST shape with
  those under ``properties``;

plus the extension keys ``Deny``, ``Confirm`` (operation patterns), ``ExpectedPrincipal`` (the
app id or object id the server must be running as), ``Elevation`` (what may be requested for a
while, with approval: ``policy.elevation``) and ``Profile`` (a built-in profile the file starts
from, e.g. ``read-only`` plus an Elevation block; its permissions and Deny list are then the
profile's own). Keys are matched case-insensitively, as
ARM does. Anything unexpected is an error naming the file and the key: a policy that is only
half understood must not be enforced (fail closed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from azure_agent_mcp.policy.elevation import Elevation, parse_elevation
from azure_agent_mcp.policy.errors import PolicyLoadError
from azure_agent_mcp.policy.patterns import pattern_problem
from azure_agent_mcp.policy.scopes import ROOT, scope_problem

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# lowercase key -> spelling used in messages
_PERMISSION_KEYS = {
    "actions": "Actions",
    "notactions": "NotActions",
    "dataactions": "DataActions",
    "notdataactions": "NotDataActions",
}
_EXTENSION_KEYS = {"deny": "Deny", "confirm": "Confirm", "expectedprincipal": "ExpectedPrincipal",
                   "elevation": "Elevation"}
# a file naming a built-in Profile: the profile brings permissions, Deny and Confirm; the file adds these
_PROFILE_KEYS = {"profile": "Profile", "name": "Name", "id": "Id", "iscustom": "IsCustom", "description": "Description",
                 "expectedprincipal": "ExpectedPrincipal", "elevation": "Elevation"}
_CREATE_KEYS = {
    "name": "Name",
    "id": "Id",
    "iscustom": "IsCustom",
    "description": "Description",
    "assignablescopes": "AssignableScopes",
    **_PERMISSION_KEYS,
    **_EXTENSION_KEYS,
}
_LIST_KEYS = {
    "rolename": "roleName",
    "name": "name",
    "id": "id",
    "type": "type",
    "roletype": "roleType",
    "description": "description",
    "permissions": "permissions",
    "assignablescopes": "assignableScopes",
    "createdon": "createdOn",
    "updatedon": "updatedOn",
    "createdby": "createdBy",
    "updatedby": "updatedBy",
    **_EXTENSION_KEYS,
}
_PERMISSION_ENTRY_KEYS = {**_PERMISSION_KEYS, "condition": "condition", "conditionversion": "conditionVersion"}


@dataclass(frozen=True)
class PermissionBlock:
    """One ``permissions[]`` entry: effective = Actions minus NotActions (DataActions likewise)."""

    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()

    def as_json(self) -> dict[str, list[str]]:
        return {
            "actions": list(self.actions),
            "notActions": list(self.not_actions),
            "dataActions": list(self.data_actions),
            "notDataActions": list(self.not_data_actions),
        }


@dataclass(frozen=True)
class Policy:
    """An effective policy. ``name`` is what decisions cite: the profile name, or the file's path."""

    name: str
    source: str
    blocks: tuple[PermissionBlock, ...]
    deny: tuple[str, ...] = ()
    confirm: tuple[str, ...] = ()
    assignable_scopes: tuple[str, ...] = (ROOT,)
    expected_principal: str | None = None
    role_name: str | None = None
    description: str = ""
    read_only: bool = False  # narrowed by --read-only: reads without secrets, whatever the blocks say
    elevation: Elevation | None = None
    """What an agent may request for a while with the user's approval; None: nothing (built-in profiles)."""
    profile: str | None = None
    """The built-in profile a file started from (``Profile``), which then also decides like it."""
    _compiled: Any = field(default=None, init=False, repr=False, compare=False, hash=False)

    @property
    def builtin(self) -> bool:
        return self.source == "builtin"

    def as_json(self) -> dict[str, Any]:
        """The effective policy in ``az role definition list`` shape plus the extension keys."""
        return {
            "policy": self.name,
            "source": self.source,
            "roleName": self.role_name or self.name,
            "description": self.description,
            "permissions": [block.as_json() for block in self.blocks],
            "assignableScopes": list(self.assignable_scopes),
            "Deny": list(self.deny),
            "Confirm": list(self.confirm),
            "ExpectedPrincipal": self.expected_principal,
            "readOnlyNarrowed": self.read_only,
            "Profile": self.profile,
            "Elevation": self.elevation.as_json() if self.elevation is not None else None,
        }


def _duplicate_checking_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    lowered: dict[str, str] = {}
    for key, value in pairs:
        if key.lower() in lowered:
            raise _DuplicateKey(lowered[key.lower()], key)
        lowered[key.lower()] = key
        result[key] = value
    return result


class _DuplicateKey(ValueError):
    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first!r} and {second!r}")
        self.first = first
        self.second = second


def parse_policy_text(text: str, *, source: str) -> Policy:
    """Parse and validate the JSON text of a policy file."""
    try:
        data = json.loads(text, object_pairs_hook=_duplicate_checking_object)
    except _DuplicateKey as exc:
        raise PolicyLoadError(
            f"policy file {source}: key '{exc.second}': given twice (keys are case-insensitive; "
            f"'{exc.first}' already set it)",
            source=source,
            key=exc.second,
        ) from None
    except json.JSONDecodeError as exc:
        raise PolicyLoadError(
            f"policy file {source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            source=source,
        ) from None
    return parse_policy(data, source=source)


def parse_policy(data: Any, *, source: str) -> Policy:
    """Build a Policy from parsed JSON in either role-definition shape."""
    where = f"policy file {source}"
    if isinstance(data, list):
        if len(data) != 1:
            raise PolicyLoadError(
                f"{where}: top level is a list of {len(data)} role definitions; a policy is exactly one "
                "(keep one element of the 'az role definition list' output)",
                source=source,
            )
        data = data[0]
    if not isinstance(data, dict):
        raise PolicyLoadError(
            f"{where}: top level must be a JSON object (a role definition), got {_json_type(data)}", source=source
        )
    data = _unwrap_rest_shape(data)
    keys = {k.lower(): k for k in data}
    if "profile" in keys:
        return _parse_profile_shape(data, keys, where, source)
    if "permissions" in keys:
        flat = [keys[k] for k in _PERMISSION_KEYS if k in keys]
        if flat:
            raise PolicyLoadError(
                f"{where}: key '{flat[0]}': not allowed next to 'permissions' (use one shape: either "
                "'permissions[]' as printed by 'az role definition list', or top-level Actions as for "
                "'az role definition create')",
                source=source,
                key=flat[0],
            )
        return _parse_list_shape(data, keys, where, source)
    return _parse_create_shape(data, keys, where, source)


def _unwrap_rest_shape(data: dict[str, Any]) -> dict[str, Any]:
    """ARM's REST shape nests the definition under ``properties``; lift it (keeping extension keys)."""
    props_key = next((k for k in data if k.lower() == "properties"), None)
    if props_key is None or not isinstance(data[props_key], dict):
        return data
    lifted = {k: v for k, v in data.items() if k != props_key and k.lower() in _LIST_KEYS}
    unknown = [k for k in data if k != props_key and k.lower() not in _LIST_KEYS]
    merged = dict(data[props_key])
    merged.update(lifted)
    for k in unknown:  # keep so that validation names them
        merged[k] = data[k]
    return merged


def _check_keys(data: dict[str, Any], allowed: dict[str, str], where: str, source: str, shape: str) -> None:
    for key in data:
        if key.lower() not in allowed:
            expected = ", ".join(sorted(set(allowed.values()), key=str.lower))
            raise PolicyLoadError(
                f"{where}: key '{key}': unknown key for the {shape} shape (expected one of: {expected})",
                source=source,
                key=key,
            )


def _parse_profile_shape(data: dict[str, Any], keys: dict[str, str], where: str, source: str) -> Policy:
    """A built-in profile plus what a file adds to it (an Elevation block, the expected principal)."""
    from azure_agent_mcp.policy.profiles import PROFILE_NAMES, builtin_profile

    for key in data:
        if key.lower() not in _PROFILE_KEYS:
            raise PolicyLoadError(
                f"{where}: key '{key}': not allowed next to 'Profile' (the profile brings its own permissions, Deny "
                f"and Confirm; a file naming one may add only: {', '.join(sorted(set(_PROFILE_KEYS.values())))})",
                source=source,
                key=key,
            )
    name = data[keys["profile"]]
    if not isinstance(name, str) or name.lower() not in PROFILE_NAMES:
        raise PolicyLoadError(
            f"{where}: key '{keys['profile']}': {name!r} is not a built-in profile ({', '.join(PROFILE_NAMES)})",
            source=source,
            key=keys["profile"],
        )
    base = builtin_profile(name.lower())
    principal = _expected_principal(data, keys, where, source)
    return Policy(
        name=source,
        source=source,
        blocks=base.blocks,
        deny=base.deny,
        confirm=base.confirm,
        assignable_scopes=base.assignable_scopes,
        expected_principal=principal.lower() if principal else None,
        role_name=_string(data, keys, "name", where, source) or base.role_name,
        description=_string(data, keys, "description", where, source) or base.description,
        elevation=_elevation(data, keys, where, source),
        profile=name.lower(),
    )


def _elevation(data: dict[str, Any], keys: dict[str, str], where: str, source: str) -> Elevation | None:
    if "elevation" not in keys or data[keys["elevation"]] is None:
        return None
    return parse_elevation(data[keys["elevation"]], key=keys["elevation"], where=where, source=source)


def _parse_create_shape(data: dict[str, Any], keys: dict[str, str], where: str, source: str) -> Policy:
    _check_keys(data, _CREATE_KEYS, where, source, "'az role definition create'")
    block = PermissionBlock(
        actions=_patterns(data, keys, "actions", where, source),
        not_actions=_patterns(data, keys, "notactions", where, source),
        data_actions=_patterns(data, keys, "dataactions", where, source),
        not_data_actions=_patterns(data, keys, "notdataactions", where, source),
    )
    return _finish(data, keys, (block,), _string(data, keys, "name", where, source), where, source)


def _parse_list_shape(data: dict[str, Any], keys: dict[str, str], where: str, source: str) -> Policy:
    _check_keys(data, _LIST_KEYS, where, source, "'az role definition list'")
    raw = data[keys["permissions"]]
    if not isinstance(raw, list):
        raise PolicyLoadError(
            f"{where}: key '{keys['permissions']}': expected a list of permission objects, got {_json_type(raw)}",
            source=source,
            key=keys["permissions"],
        )
    blocks = []
    for index, entry in enumerate(raw):
        label = f"{keys['permissions']}[{index}]"
        if not isinstance(entry, dict):
            raise PolicyLoadError(
                f"{where}: key '{label}': expected an object, got {_json_type(entry)}", source=source, key=label
            )
        entry_keys = {k.lower(): k for k in entry}
        for key in entry:
            if key.lower() not in _PERMISSION_ENTRY_KEYS:
                raise PolicyLoadError(
                    f"{where}: key '{label}.{key}': unknown key (expected actions, notActions, dataActions, "
                    "notDataActions)",
                    source=source,
                    key=f"{label}.{key}",
                )
        for cond in ("condition", "conditionversion"):
            if cond in entry_keys and entry[entry_keys[cond]] not in (None, ""):
                name = f"{label}.{entry_keys[cond]}"
                raise PolicyLoadError(
                    f"{where}: key '{name}': role assignment conditions (ABAC) cannot be evaluated locally; "
                    "remove the condition or express it with AssignableScopes and NotActions",
                    source=source,
                    key=name,
                )
        blocks.append(
            PermissionBlock(
                actions=_patterns(entry, entry_keys, "actions", where, source, prefix=label + "."),
                not_actions=_patterns(entry, entry_keys, "notactions", where, source, prefix=label + "."),
                data_actions=_patterns(entry, entry_keys, "dataactions", where, source, prefix=label + "."),
                not_data_actions=_patterns(entry, entry_keys, "notdataactions", where, source, prefix=label + "."),
            )
        )
    return _finish(data, keys, tuple(blocks), _string(data, keys, "rolename", where, source), where, source)


def _finish(
    data: dict[str, Any],
    keys: dict[str, str],
    blocks: tuple[PermissionBlock, ...],
    role_name: str | None,
    where: str,
    source: str,
) -> Policy:
    if not any(block.actions or block.data_actions for block in blocks):
        raise PolicyLoadError(
            f"{where}: empty policy: no Actions or DataActions, so nothing would ever be allowed "
            "(add e.g. \"Actions\": [\"*/read\"])",
            source=source,
        )
    scopes: tuple[str, ...] = (ROOT,)
    if "assignablescopes" in keys:
        key = keys["assignablescopes"]
        raw = data[key]
        if not isinstance(raw, list):
            raise PolicyLoadError(
                f"{where}: key '{key}': expected a list of scopes, got {_json_type(raw)}", source=source, key=key
            )
        if not raw:
            raise PolicyLoadError(
                f"{where}: key '{key}': empty list: nothing would be in scope (use [\"/\"] for everywhere, or "
                "leave the key out)",
                source=source,
                key=key,
            )
        for index, scope in enumerate(raw):
            problem = scope_problem(scope)
            if problem is not None:
                raise PolicyLoadError(f"{where}: key '{key}[{index}]': {problem}", source=source, key=key)
        scopes = tuple(raw)
    principal = _expected_principal(data, keys, where, source)
    return Policy(
        name=source,
        source=source,
        blocks=blocks,
        deny=_patterns(data, keys, "deny", where, source),
        confirm=_patterns(data, keys, "confirm", where, source),
        assignable_scopes=scopes,
        expected_principal=principal.lower() if principal else None,
        role_name=role_name,
        description=_string(data, keys, "description", where, source) or "",
        elevation=_elevation(data, keys, where, source),
    )


def _patterns(
    data: dict[str, Any], keys: dict[str, str], lower: str, where: str, source: str, prefix: str = ""
) -> tuple[str, ...]:
    if lower not in keys:
        return ()
    key = keys[lower]
    raw = data[key]
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PolicyLoadError(
            f"{where}: key '{prefix}{key}': expected a list of operation patterns, got {_json_type(raw)}",
            source=source,
            key=prefix + key,
        )
    for index, pattern in enumerate(raw):
        problem = pattern_problem(pattern)
        if problem is not None:
            raise PolicyLoadError(
                f"{where}: key '{prefix}{key}[{index}]': bad pattern: {problem}", source=source, key=prefix + key
            )
    return tuple(raw)


def _expected_principal(data: dict[str, Any], keys: dict[str, str], where: str, source: str) -> str | None:
    principal = _string(data, keys, "expectedprincipal", where, source)
    if principal is not None and not _GUID.fullmatch(principal):
        key = keys["expectedprincipal"]
        raise PolicyLoadError(
            f"{where}: key '{key}': '{principal}' is not an app id or object id (a GUID)", source=source, key=key
        )
    return principal


def _string(data: dict[str, Any], keys: dict[str, str], lower: str, where: str, source: str) -> str | None:
    if lower not in keys:
        return None
    key = keys[lower]
    value = data[key]
    if value is None:
        return None
    if not isinstance(value, str):
        raise PolicyLoadError(
            f"{where}: key '{key}': expected a string, got {_json_type(value)}", source=source, key=key
        )
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
