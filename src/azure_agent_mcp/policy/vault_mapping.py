"""Key Vault data-plane paths to the DataActions Key Vault's RBAC checks.

Paths are relative to the vault (``/secrets/{name}/{version}``...). The operation names are the
``Microsoft.KeyVault/vaults/...`` DataActions of Azure's permission reference: listing and
reading attributes is ``secrets/readMetadata/action``, reading a value ``secrets/getSecret/action``.

Scope: a data-plane URL names a vault, not its subscription and resource group, so it has no ARM
resource id. The mapper uses the pseudo-scope ``/providers/Microsoft.KeyVault/vaults/{vault}``
(+ ``/secrets/{name}``, ``/keys/{name}``, ``/certificates/{name}``). It is covered by
AssignableScopes ``/`` or by an entry naming that pseudo-scope, and by no subscription or group:
a policy fenced to ``/subscriptions/abc`` cannot reach any vault's data plane unless it also
lists the vault explicitly (fail closed, and the refusal says how to allow it).
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "Microsoft.KeyVault/vaults/"

_KEY_CRYPTO = {
    "encrypt": "encrypt",
    "decrypt": "decrypt",
    "sign": "sign",
    "verify": "verify",
    "wrapkey": "wrap",
    "unwrapkey": "unwrap",
    "release": "release",
}


class VaultShapeError(ValueError):
    """The path is not a Key Vault data-plane request shape the mapper understands."""


@dataclass(frozen=True)
class VaultOperation:
    operation: str
    scope: str


def map_vault(method: str, vault: str, segs: list[str]) -> VaultOperation:
    low = [s.lower() for s in segs]
    root = f"/providers/Microsoft.KeyVault/vaults/{vault}"
    if not segs:
        raise VaultShapeError("the vault root is not a data-plane operation")
    collection, rest, rest_low = low[0], segs[1:], low[1:]
    n = len(rest)

    def op(action: str, kind: str | None = None, name: str | None = None) -> VaultOperation:
        scope = root if kind is None or name is None else f"{root}/{kind}/{name}"
        return VaultOperation(PREFIX + action, scope)

    if collection == "secrets":
        if method == "GET":
            if n == 0:
                return op("secrets/readMetadata/action")
            if n == 2 and rest_low[1] == "versions":
                return op("secrets/readMetadata/action", "secrets", rest[0])
            if n in (1, 2):
                return op("secrets/getSecret/action", "secrets", rest[0])
        if method == "PUT" and n == 1:
            return op("secrets/setSecret/action", "secrets", rest[0])
        if method == "PATCH" and n in (1, 2):
            return op("secrets/update/action", "secrets", rest[0])
        if method == "DELETE" and n == 1:
            return op("secrets/delete", "secrets", rest[0])
        if method == "POST":
            if n == 1 and rest_low[0] == "restore":
                return op("secrets/restore/action")
            if n == 2 and rest_low[1] == "backup":
                return op("secrets/backup/action", "secrets", rest[0])
    elif collection == "deletedsecrets":
        if method == "GET" and n <= 1:
            return op("secrets/readMetadata/action", "secrets", rest[0] if n else None)
        if method == "DELETE" and n == 1:
            return op("secrets/purge/action", "secrets", rest[0])
        if method == "POST" and n == 2 and rest_low[1] == "recover":
            return op("secrets/recover/action", "secrets", rest[0])
    elif collection == "keys":
        return _keys(method, rest, rest_low, op)
    elif collection == "deletedkeys":
        if method == "GET" and n <= 1:
            return op("keys/read", "keys", rest[0] if n else None)
        if method == "DELETE" and n == 1:
            return op("keys/purge/action", "keys", rest[0])
        if method == "POST" and n == 2 and rest_low[1] == "recover":
            return op("keys/recover/action", "keys", rest[0])
    elif collection == "certificates":
        return _certificates(method, rest, rest_low, op)
    elif collection == "deletedcertificates":
        if method == "GET" and n <= 1:
            return op("certificates/read", "certificates", rest[0] if n else None)
        if method == "DELETE" and n == 1:
            return op("certificates/purge/action", "certificates", rest[0])
        if method == "POST" and n == 2 and rest_low[1] == "recover":
            return op("certificates/recover/action", "certificates", rest[0])
    raise VaultShapeError(f"{method} /{'/'.join(segs)} is not a Key Vault data-plane operation this server maps")


def _keys(method: str, rest: list[str], rest_low: list[str], op) -> VaultOperation:  # type: ignore[no-untyped-def]
    n = len(rest)
    if method == "GET":
        if n == 0:
            return op("keys/read")
        if n == 2 and rest_low[1] == "rotationpolicy":
            return op("keyrotationpolicies/read", "keys", rest[0])
        if n in (1, 2):
            return op("keys/read", "keys", rest[0])
    if method == "PUT":
        if n == 1:
            return op("keys/import/action", "keys", rest[0])
        if n == 2 and rest_low[1] == "rotationpolicy":
            return op("keyrotationpolicies/write", "keys", rest[0])
    if method == "PATCH" and n in (1, 2):
        return op("keys/update/action", "keys", rest[0])
    if method == "DELETE" and n == 1:
        return op("keys/delete", "keys", rest[0])
    if method == "POST":
        if n == 1 and rest_low[0] == "restore":
            return op("keys/restore/action")
        if n == 2 and rest_low[1] in ("create", "backup", "rotate"):
            return op(f"keys/{rest_low[1]}/action", "keys", rest[0])
        if n in (2, 3) and rest_low[-1] in _KEY_CRYPTO:
            return op(f"keys/{_KEY_CRYPTO[rest_low[-1]]}/action", "keys", rest[0])
    raise VaultShapeError(f"{method} /keys/{'/'.join(rest)} is not a Key Vault key operation this server maps")


def _certificates(method: str, rest: list[str], rest_low: list[str], op) -> VaultOperation:  # type: ignore[no-untyped-def]
    n = len(rest)
    if n >= 1 and rest_low[0] == "issuers":
        if method == "GET" and n <= 2:
            return op("certificatecas/read")
        if method in ("PUT", "PATCH") and n == 2:
            return op("certificatecas/write")
        if method == "DELETE" and n == 2:
            return op("certificatecas/delete")
    elif n == 1 and rest_low[0] == "contacts":
        if method == "GET":
            return op("certificatecontacts/read")
        if method in ("PUT", "DELETE"):
            return op("certificatecontacts/write")
    elif method == "GET":
        if n == 0:
            return op("certificates/read")
        if n in (1, 2):
            return op("certificates/read", "certificates", rest[0])
    elif method == "PATCH" and n in (1, 2):
        return op("certificates/update/action", "certificates", rest[0])
    elif method == "DELETE":
        if n == 1:
            return op("certificates/delete", "certificates", rest[0])
        if n == 2 and rest_low[1] == "pending":
            return op("certificates/update/action", "certificates", rest[0])
    elif method == "POST":
        if n == 1 and rest_low[0] == "restore":
            return op("certificates/restore/action")
        if n == 2 and rest_low[1] in ("create", "import", "backup"):
            return op(f"certificates/{rest_low[1]}/action", "certificates", rest[0])
        if n == 3 and rest_low[1:] == ["pending", "merge"]:
            return op("certificates/create/action", "certificates", rest[0])
    raise VaultShapeError(
        f"{method} /certificates/{'/'.join(rest)} is not a Key Vault certificate operation this server maps"
    )
