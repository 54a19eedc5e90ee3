"""Defence in depth: secret-looking fields in responses the policy allowed, and in audit arguments.

The policy refuses secret-bearing operations before they are sent; this catches what slips
through anyway (an allowed read whose response embeds a connection string, a custom policy that
allows a generic ``*/read``). Fields are recognised by name (``primaryKey``, ``password``,
``connectionString``, ``keys[].value``...) and by value (connection strings carrying
``AccountKey=`` / ``Password=`` / ``SharedAccessSignature=``, SAS query strings, JWTs). The
result lists the paths it redacted, so the agent knows something was withheld and where.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from typing import Any

REDACTED = "***REDACTED***"


def _norm(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


# Field names whose value is a secret wherever they appear (compared without case, '_' or '-').
SECRET_FIELDS = frozenset(
    _norm(k)
    for k in (
        "password", "adminPassword", "administratorLoginPassword", "pwd", "passwd", "secret", "clientSecret",
        "sasToken", "sasUrl", "sasUri", "accountKey", "accessKey", "storageAccountKey", "storageKey",
        "primaryKey", "secondaryKey", "primaryMasterKey", "secondaryMasterKey", "primaryReadonlyMasterKey",
        "secondaryReadonlyMasterKey", "primaryConnectionString", "secondaryConnectionString",
        "connectionString", "connectionStrings", "primarySharedKey", "secondarySharedKey", "sharedAccessKey",
        "apiKey", "accessToken", "refreshToken", "idToken", "privateKey", "publishingPassword",
        "kubeconfig", "key1", "key2", "adminKey", "queryKey", "masterKey", "functionKey", "hostKey",
        "accessSAS", "userDelegationKey",
    )
)
# Lists whose elements carry a secret in their "value" (listKeys, AKS credentials, ACR passwords).
VALUE_BEARING_LISTS = frozenset(_norm(k) for k in ("keys", "kubeconfigs", "passwords", "secrets", "credentials"))
# Sibling keys that mark an object's "value" as a secret value (a Key Vault secret bundle, a key).
VALUE_MARKERS = frozenset(_norm(k) for k in ("keyName", "contentType", "kid"))

SECRET_VALUE = re.compile(
    r"(?i)(?:\b(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd|AccessKey)=[^;\s]"
    r"|[?&]sig=[^&\s]"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)"
)
_BASE64_KEY = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _has_content(value: Any) -> bool:
    return value not in (None, "", [], {})


def response_text(obj: Any) -> str | None:
    """``obj`` as compact JSON text, for the text pre-checks below (None when JSON cannot encode it)."""
    try:
        return json.dumps(obj, ensure_ascii=False, check_circular=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError):
        return None


def redact_secrets(obj: Any, *, text: str | None = None) -> tuple[Any, list[str]]:
    """A copy of ``obj`` with secret fields replaced by ``***REDACTED***``, and their paths.

    Most allowed responses hold no secret, so a cheap read-only scan runs first and the copying
    walk (which builds a path for every node) runs only when the scan finds something. Before
    that scan, ``_clearly_clean`` rules out most responses from their JSON text in one pass of C
    (``text``: that text, when the caller has it already; it must be ``response_text(obj)``).
    """
    if _clearly_clean(obj, text) or not _holds_secret(obj, None):
        return obj, []
    paths: list[str] = []
    return _walk(obj, "", None, paths), paths


# A key the scan looks at, as it appears in normalised JSON text (longest first: one pass of the regex engine).
_KEY_TO_SCAN = re.compile(
    '"(?:' + "|".join(sorted(map(re.escape, SECRET_FIELDS | {"value"}), key=len, reverse=True)) + ')":'
)


def _clearly_clean(obj: Any, text: str | None = None) -> bool:
    """Whether ``_holds_secret(obj)`` is surely False, decided on ``obj``'s JSON text (False: do the scan).

    Sound only without escapes: then every dict key ``k`` appears verbatim as ``"k":`` in the
    text, and every string value verbatim. Normalising the whole text (``_norm``: lower case, no
    ``_`` or ``-``) normalises each key as ``_norm`` would
    (``str.lower`` only looks at neighbours for a final sigma, never an ASCII letter). Then the
    text is clean when no key is a secret field, no key is ``value`` (whose rule depends on its
    siblings and parents: left to the scan) and no ``=`` or ``eyJ`` occurs (every secret-value
    pattern needs one). Anything else, including a value JSON cannot encode, goes to the scan.
    """
    if text is None:
        text = response_text(obj)
    if text is None:
        return False
    if "\\" in text or "=" in text:
        return False
    normalized = _norm(text)
    if "eyj" in normalized:
        return False
    return _KEY_TO_SCAN.search(normalized) is None


def _secret_string(value: str) -> bool:
    # Every SECRET_VALUE alternative contains '=' or 'eyJ'; skip the regex for the rest.
    return ("=" in value or "eyJ" in value) and SECRET_VALUE.search(value) is not None


def _value_is_secret(obj: dict[Any, Any], parent_key: str | None) -> bool:
    if parent_key is not None and parent_key in VALUE_BEARING_LISTS:
        return True
    if any(_norm(str(k)) in VALUE_MARKERS for k in obj):
        return True
    return isinstance(obj.get("id"), str) and "/secrets/" in obj["id"].lower()


def _holds_secret(obj: Any, parent_key: str | None) -> bool:
    """Whether ``_walk`` would redact anything below ``obj`` (same rules, no copies, no paths)."""
    if isinstance(obj, dict):
        value_is_secret = _value_is_secret(obj, parent_key)
        for key, value in obj.items():
            normalized = _norm(str(key))
            if _has_content(value) and (normalized in SECRET_FIELDS or (normalized == "value" and value_is_secret)):
                return True
            if isinstance(value, (dict, list, str)) and _holds_secret(value, normalized):
                return True
        return False
    if isinstance(obj, list):
        return any(isinstance(item, (dict, list, str)) and _holds_secret(item, parent_key) for item in obj)
    return isinstance(obj, str) and _secret_string(obj)


def _walk(obj: Any, path: str, parent_key: str | None, paths: list[str]) -> Any:
    if isinstance(obj, dict):
        value_is_secret = _value_is_secret(obj, parent_key)
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            child = _join(path, str(key))
            normalized = _norm(str(key))
            if _has_content(value) and (
                normalized in SECRET_FIELDS or (normalized == "value" and value_is_secret)
            ):
                out[key] = REDACTED
                paths.append(child)
            else:
                out[key] = _walk(value, child, normalized, paths)
        return out
    if isinstance(obj, list):
        return [_walk(item, f"{path}[{i}]", parent_key, paths) for i, item in enumerate(obj)]
    if isinstance(obj, str) and _secret_string(obj):
        paths.append(path or "$")
        return REDACTED
    return obj


# -- audit arguments ----------------------------------------------------------------------------

_SECRET_ARGUMENT = re.compile(
    r"(password|passwd|pwd|secret|token|connectionstring|credential|apikey|accountkey|accesskey|privatekey|sas|key)$"
)
_IDENTIFYING_SUFFIXES = ("name", "id", "ids", "names", "type", "uri", "url")


def redact_arguments(arguments: Any) -> Any:
    """Tool arguments for the audit log: values under secret-like names, or looking like keys, hidden.

    Names that identify rather than carry (``secret_name``, ``key_id``) are kept: which secret an
    agent asked for is exactly what an audit must show. Digests (``digest_value``) pass unchanged.
    """
    if is_digest(arguments):
        return arguments
    if isinstance(arguments, dict):
        out = {}
        for key, value in arguments.items():
            normalized = _norm(str(key))
            secret_name = bool(_SECRET_ARGUMENT.search(normalized)) and not normalized.endswith(_IDENTIFYING_SUFFIXES)
            out[key] = REDACTED if secret_name and _has_content(value) else redact_arguments(value)
        return out
    if isinstance(arguments, list):
        return [redact_arguments(item) for item in arguments]
    if isinstance(arguments, str) and (SECRET_VALUE.search(arguments) or _BASE64_KEY.fullmatch(arguments)):
        return REDACTED
    return arguments


def scrub_strings(obj: Any) -> Any:
    """Replace any string that looks like a token or connection string (the audit's last safety net)."""
    if is_digest(obj):
        return obj
    if isinstance(obj, dict):
        return {k: scrub_strings(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub_strings(v) for v in obj]
    if isinstance(obj, str) and SECRET_VALUE.search(obj):
        return REDACTED
    return obj


# -- arguments by structure ------------------------------------------------------------------------

DIGEST_OVER_BYTES = 4 * 1024
_DIGEST_KEYS = frozenset({"digest", "size", "sha256", "keys"})


def _canonical_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


def digest_value(value: Any) -> dict[str, Any]:
    """What the audit keeps of a value it must not hold: its size, its SHA-256 and its top-level keys.

    The hash lets an investigator prove which value was sent (by hashing a candidate) without the
    log ever holding it; strings are hashed as their UTF-8 bytes, anything else as sorted, compact JSON.
    """
    raw = _canonical_bytes(value)
    digest: dict[str, Any] = {"digest": "sha256", "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    if isinstance(value, dict):
        digest["keys"] = sorted(str(k) for k in value)
    return digest


def is_digest(value: Any) -> bool:
    return isinstance(value, dict) and value.get("digest") == "sha256" and set(value) <= _DIGEST_KEYS


def audit_arguments(arguments: Any, identifying: Collection[str] | None) -> Any:
    """Tool arguments as the audit records them, decided by structure rather than by key names.

    ``identifying=None`` (a read that returns no secret): every argument is kept, except a value
    over 4 KiB, which is digested. Otherwise (a write, or a secret-bearing tool) only the named
    identifying arguments (which resource, which method, which path) are kept, at most 4 KiB each
    and a path without its query; every other value (bodies, tags, secret values) is digested.
    """
    if not isinstance(arguments, dict):
        return None if arguments is None else digest_value(arguments)
    kept: dict[str, Any] = {}
    for key, value in arguments.items():
        if identifying is not None and key not in identifying:
            kept[key] = digest_value(value)
        elif len(_canonical_bytes(value)) > DIGEST_OVER_BYTES:
            kept[key] = digest_value(value)
        elif identifying is not None and key == "path" and isinstance(value, str) and "?" in value:
            path, _, query = value.partition("?")
            kept[key] = path
            kept["path_query"] = digest_value(query)
        else:
            kept[key] = value
    return kept


# -- deployment outputs ------------------------------------------------------------------------------


_SECURE_TYPES = frozenset({"securestring", "secureobject"})
_TYPE_NAME = re.compile(r"[A-Za-z]{1,32}")


def withhold_outputs(obj: Any, *, text: str | None = None) -> tuple[Any, list[str]]:
    """``properties.outputs`` of any resource in ``obj`` without values: names and types only.

    A template's outputs are whatever its author returned, ``listKeys()`` results included, under
    any name. So the values are withheld by where they stand, not by what they are called. The
    same goes for ``properties.parameters`` declared ``secureString`` or ``secureObject``: ARM
    never returns their values, so one that does appear is withheld all the more.

    ``text`` (``response_text(obj)``, when the caller has it): a response whose JSON holds no
    ``"properties":`` key has nothing to withhold (JSON writes that key verbatim, escapes or not).
    """
    if text is not None and '"properties":' not in text:
        return obj, []
    paths: list[str] = []
    return _outputs_walk(obj, "", paths), paths


def _outputs_walk(obj: Any, path: str, paths: list[str]) -> Any:
    if isinstance(obj, list):
        return [_outputs_walk(item, f"{path}[{i}]", paths) for i, item in enumerate(obj)]
    if not isinstance(obj, dict):
        return obj
    out = {key: _outputs_walk(value, _join(path, str(key)), paths) for key, value in obj.items()}
    properties = out.get("properties")
    if isinstance(properties, dict) and isinstance(properties.get("outputs"), dict):
        outputs: dict[str, Any] = {}
        for name, output in properties["outputs"].items():
            where = _join(_join(path, "properties.outputs"), str(name))
            if isinstance(output, dict):
                outputs[name] = _type_only(output)
                if any(k not in outputs[name] for k in output):  # the value, or anything else it carries
                    outputs[name]["value"] = REDACTED
                    paths.append(_join(where, "value"))
            else:
                outputs[name] = REDACTED
                paths.append(where)
        out["properties"] = {**properties, "outputs": outputs}
    if isinstance(properties, dict) and isinstance(properties.get("parameters"), dict):
        out["properties"] = {**out["properties"], "parameters": _secure_parameters(
            properties["parameters"], _join(path, "properties.parameters"), paths)}
    return out


def _type_only(declared: dict[Any, Any]) -> dict[Any, Any]:
    """``{"type": ...}`` when the type is a plain type name (``String``, ``SecureString``); else nothing."""
    kind = declared.get("type")
    return {"type": kind} if isinstance(kind, str) and _TYPE_NAME.fullmatch(kind) else {}


def _secure_parameters(parameters: dict[Any, Any], where: str, paths: list[str]) -> dict[Any, Any]:
    kept: dict[Any, Any] = {}
    for name, parameter in parameters.items():
        secure = isinstance(parameter, dict) and str(parameter.get("type", "")).lower() in _SECURE_TYPES
        if secure and any(k != "type" for k in parameter):
            kept[name] = {**_type_only(parameter), "value": REDACTED}
            paths.append(_join(_join(where, str(name)), "value"))
        else:
            kept[name] = parameter
    return kept
