"""The Key Vault data plane for secrets, under ``/vaults/{vault}`` on the sandbox origin.

Unauthenticated requests get the 401 challenge azure-keyvault-secrets expects
(``WWW-Authenticate: Bearer authorization="{authority}", resource="https://vault.azure.net"``).
Vaults use the RBAC permission model: every call is a DataAction checked against role
assignments at ``{vault id}/secrets/{name}``; ``getSecret`` is also subject to the RP agent rule.
Deletion is soft: ``GET /deletedsecrets/{name}`` answers at once so the SDK's delete poller ends.
Secret ids are ``{origin}/secrets/{name}/{version}`` (no vault segment: see ``VaultPlane._base``).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any
from urllib.parse import quote, urlencode

from azure_agent_mcp.sandbox.access import (
    AuthFailure,
    Principal,
    agent_rule_message,
    authenticate,
    is_secret_bearing,
)
from azure_agent_mcp.sandbox.protocol import BadRequestBodyError, Request, Response, json_response
from azure_agent_mcp.sandbox.world import DeletedSecret, SecretVersion, Vault

VAULT_AUDIENCES = frozenset({"https://vault.azure.net", "https://vault.azure.net/"})
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_VERSION = re.compile(r"^[0-9a-fA-F]{32}$")
MAX_VALUE = 25 * 1024
RETENTION_DAYS = 90
_DATA = "Microsoft.KeyVault/vaults/secrets/"


class VaultFailure(Exception):
    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner


def _kv_error(status: int, code: str, message: str, inner: str | None = None,
              headers: list[tuple[str, str]] | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return json_response(status, {"error": error}, headers, error_code=code)


def _not_found(name: str) -> VaultFailure:
    return VaultFailure(404, "SecretNotFound",
                        f"A secret with (name/id) {name} was not found in this key vault. If you recently deleted "
                        "this secret you may be able to recover it using the correct recovery command.")


class VaultPlane:
    def __init__(self, state: Any) -> None:
        self.state = state

    def handle(self, request: Request, parts: list[str]) -> Response:
        # parts: ["vaults", name, ...]
        if len(parts) < 2:
            return _kv_error(404, "VaultNotFound", "Name a vault: /vaults/{vault}/secrets.")
        vault = self.state.world.vaults.get(parts[1].lower())
        if vault is None:
            return _kv_error(404, "VaultNotFound",
                             f"The vault '{parts[1]}' does not exist in the sandbox. Vaults: "
                             + ", ".join(sorted(v.name for v in self.state.world.vaults.values())) + ".")
        principal = authenticate(self.state.tokens, request, VAULT_AUDIENCES)
        if isinstance(principal, AuthFailure):
            return self._challenge(principal)
        log = principal.log_fields()
        try:
            response = self._authorized(request, vault, [p for p in parts[2:]], principal, log)
        except VaultFailure as exc:
            response = _kv_error(exc.status, exc.code, exc.message, exc.inner)
        response.log.update(log)
        return response

    def _challenge_header(self, extra: str = "") -> str:
        return f'Bearer authorization="{self.state.authority}", resource="https://vault.azure.net"{extra}'

    def _challenge(self, failure: AuthFailure) -> Response:
        message = ("AKV10000: Request is missing a Bearer or PoP token." if failure.code == "AuthenticationFailed"
                   else f"AKV10022: {failure.message}")
        return _kv_error(401, "Unauthorized", message, headers=[("www-authenticate", self._challenge_header())])

    def _authorized(self, request: Request, vault: Vault, rest: list[str], principal: Principal,
                    log: dict[str, Any]) -> Response:
        if not request.query_ci("api-version"):
            raise VaultFailure(400, "BadParameter", "The request URI contains an invalid or missing api-version "
                                                    "parameter: add ?api-version=7.5 (or newer).")
        method = request.method
        low = [r.lower() for r in rest]
        route = self._route(method, low)
        if route is None:
            raise VaultFailure(404, "NotFound", f"The operation {method} /{'/'.join(rest)} is not supported by the "
                                                "sandbox's Key Vault.")
        operation, handler = route
        name = rest[1] if len(rest) > 1 else None
        if name is not None and not _NAME.match(name):
            raise VaultFailure(400, "BadParameter",
                               f"The request URI contains an invalid name: '{name}'. Secret names are 1-127 "
                               "letters, digits and '-'.")
        scope = vault.resource_id + (f"/secrets/{name}" if name else "")
        action = _DATA + operation
        log["operation"] = action
        log["scope"] = scope
        challenge = self.state.claims_challenge_for(request.path, principal)
        if challenge is not None:
            extra = f', error="insufficient_claims", claims="{challenge.encoded}"'
            return _kv_error(401, "Unauthorized", "AKV10000: the token lacks claims this vault requires (claims "
                                                  "challenge).",
                             headers=[("www-authenticate", self._challenge_header(extra))])
        if not self.state.authorizer.allowed(principal.object_id, action, scope, data_action=True):
            caller = (f"appid={principal.claims.get('appid')};oid={principal.object_id};"
                      f"iss={principal.claims.get('iss')}")
            raise VaultFailure(
                403, "Forbidden",
                "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or "
                "role definitions were changed recently, please observe propagation time.\r\n"
                f"Caller: {caller}\r\nAction: '{action}'\r\nResource: '{scope.lower()}'\r\n"
                f"Assignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: {vault.name};"
                f"location=eastus\r\n",
                inner="ForbiddenByRbac",
            )
        if self.state.agent_rule and principal.tagged and is_secret_bearing(action):
            raise VaultFailure(403, "AgentSessionSecretAccessDenied", agent_rule_message(principal, action),
                               inner="ForbiddenByResourceProvider")
        return handler(self, request, vault, rest)

    @staticmethod
    def _route(method: str, low: list[str]) -> tuple[str, Any] | None:
        n = len(low)
        if n == 1 and low[0] == "secrets" and method == "GET":
            return "readMetadata/action", VaultPlane._list
        if n == 1 and low[0] == "deletedsecrets" and method == "GET":
            return "readMetadata/action", VaultPlane._list_deleted
        if n >= 2 and low[0] == "secrets":
            if n == 2 and method == "GET":
                return "getSecret/action", VaultPlane._get
            if n == 2 and method == "PUT":
                return "setSecret/action", VaultPlane._set
            if n == 2 and method == "DELETE":
                return "delete", VaultPlane._delete
            if n == 3 and low[2] == "versions" and method == "GET":
                return "readMetadata/action", VaultPlane._versions
            if n == 3 and method == "GET":
                return "getSecret/action", VaultPlane._get
            if n in (2, 3) and method == "PATCH":
                return "update/action", VaultPlane._update
        if n >= 2 and low[0] == "deletedsecrets":
            if n == 2 and method == "GET":
                return "readMetadata/action", VaultPlane._get_deleted
            if n == 2 and method == "DELETE":
                return "purge/action", VaultPlane._purge
            if n == 3 and low[2] == "recover" and method == "POST":
                return "recover/action", VaultPlane._recover
        return None

    # -- rendering ---------------------------------------------------------------------------------

    def _base(self, vault: Vault) -> str:
        """The prefix of secret ids: the origin alone, without ``/vaults/{vault}``.

        azure-keyvault-secrets parses every id as ``https://host[:port]/secrets/{name}[/{version}]`` (at
        most three path segments), so ids cannot carry the vault path the sandbox routes on. Requests
        still go to the vault URL the client was built with; only the ids omit the vault segment.
        """
        del vault
        return self.state.origin

    @staticmethod
    def _attributes(v: SecretVersion) -> dict[str, Any]:
        return {"enabled": v.enabled, "created": v.created, "updated": v.updated,
                "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": RETENTION_DAYS}

    def _bundle(self, vault: Vault, name: str, v: SecretVersion, with_value: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"id": f"{self._base(vault)}/secrets/{name}/{v.version}",
                                "attributes": self._attributes(v)}
        if with_value:
            body["value"] = v.value
        if v.content_type:
            body["contentType"] = v.content_type
        if v.tags:
            body["tags"] = dict(v.tags)
        return body

    def _item(self, vault: Vault, name: str, v: SecretVersion, versioned: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"{self._base(vault)}/secrets/{name}" + (f"/{v.version}" if versioned else ""),
            "attributes": self._attributes(v),
        }
        if v.content_type:
            body["contentType"] = v.content_type
        if v.tags:
            body["tags"] = dict(v.tags)
        return body

    def _deleted(self, vault: Vault, name: str, d: DeletedSecret, item: bool = False) -> dict[str, Any]:
        latest = d.versions[-1]
        body = self._item(vault, name, latest) if item else self._bundle(vault, name, latest, with_value=False)
        body.update({"recoveryId": f"{self._base(vault)}/deletedsecrets/{name}",
                     "deletedDate": d.deleted_date, "scheduledPurgeDate": d.scheduled_purge_date})
        return body

    def _paged(self, request: Request, items: list[dict[str, Any]]) -> Response:
        raw = request.query_ci("maxresults")
        size = 25
        if raw:
            try:
                size = int(raw)
            except ValueError:
                size = 0
            if not 1 <= size <= 25:
                raise VaultFailure(400, "BadParameter", "maxresults must be between 1 and 25.")
        offset = 0
        token = request.query_ci("$skiptoken")
        if token:
            try:
                offset = int(token.removeprefix("o"))
            except ValueError as exc:
                raise VaultFailure(400, "BadParameter", "The $skiptoken is not valid: use the nextLink as "
                                                        "returned.") from exc
        payload: dict[str, Any] = {"value": items[offset:offset + size], "nextLink": None}
        if offset + size < len(items):
            params = {"api-version": request.query_ci("api-version") or "", "maxresults": str(size),
                      "$skiptoken": f"o{offset + size}"}
            payload["nextLink"] = f"{self.state.origin}{request.path}?{urlencode(params, quote_via=quote)}"
        return json_response(200, payload)

    # -- handlers ----------------------------------------------------------------------------------

    def _latest(self, vault: Vault, name: str) -> tuple[str, list[SecretVersion]]:
        versions = vault.secrets.get(name.lower())
        if not versions:
            raise _not_found(name)
        return vault.secret_names[name.lower()], versions

    def _list(self, request: Request, vault: Vault, rest: list[str]) -> Response:
        items = [self._item(vault, vault.secret_names[key], versions[-1])
                 for key, versions in sorted(vault.secrets.items())]
        return self._paged(request, items)

    def _versions(self, request: Request, vault: Vault, rest: list[str]) -> Response:
        name, versions = self._latest(vault, rest[1])
        return self._paged(request, [self._item(vault, name, v, versioned=True) for v in versions])

    def _get(self, request: Request, vault: Vault, rest: list[str]) -> Response:
        name, versions = self._latest(vault, rest[1])
        if len(rest) == 3:
            found = next((v for v in versions if v.version.lower() == rest[2].lower()), None)
            if found is None:
                raise _not_found(f"{rest[1]}/{rest[2]}")
            return json_response(200, self._bundle(vault, name, found, with_value=True))
        return json_response(200, self._bundle(vault, name, versions[-1], with_value=True))

    def _set(self, request: Request, vault: Vault, rest: list[str]) -> Response:
        try:
            body = request.json()
        except BadRequestBodyError as exc:
            raise VaultFailure(400, "BadParameter", f"The request body is not valid JSON: {exc}.") from exc
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            raise VaultFailure(400, "BadParameter", "Property 'value' is required and must be a string: "
                                                    "{\"value\": \"...\"}.")
        if len(body["value"]) > MAX_VALUE:
            raise VaultFailure(400, "BadParameter", f"The secret value exceeds the maximum size of {MAX_VALUE} "
                                                    "characters.")
        name = rest[1]
        if name.lower() in vault.deleted:
            raise VaultFailure(409, "Conflict",
                               f"Secret {name} is currently in a deleted but recoverable state, and its name cannot "
                               "be reused; in this state, the secret can only be recovered or purged.",
                               inner="ObjectIsDeletedButRecoverable")
        tags = body.get("tags")
        attributes = body.get("attributes") if isinstance(body.get("attributes"), dict) else {}
        now = int(time.time())
        version = SecretVersion(uuid.uuid4().hex, body["value"], now, now,
                                enabled=bool(attributes.get("enabled", True)),
                                content_type=body.get("contentType") if isinstance(body.get("contentType"), str)
                                else None,
                                tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else None)
        vault.secrets.setdefault(name.lower(), []).append(version)
        vault.secret_names.setdefault(name.lower(), name)
        return json_response(200, self._bundle(vault, vault.secret_names[name.lower()], version, with_value=True))

    def _update(self, request: Request, vault: Vault, rest: list[str]) -> Response:
        name, versions = self._latest(vault, rest[1])
        target = versions[-1]
        if len(rest) == 3:
            target = next((v for v in versions if v.version.lower() == rest[2].lower()), None)  # type: ignore
            if target is None:
                raise _not_found(f"{rest[1]}/{rest[2]}")
        try:
            body = request.json() or {}
        except BadRequestBodyError as exc:
            raise VaultFailure(400, "BadParameter", f"The request body is not valid JSON: {exc}.") from exc
        if not isinstance(body, dict):
            raise VaultFailure(400, "BadParameter", "The request body must be a JSON object.")
        if isinstance(body.get("contentType"), str):
            target.content_type = body["contentType"]
        if isinstance(body.get("tags"), dict):
            target.tags = {str(k): str(v) for k, v in body["tags"].items()}
        if isinstance(body.get("attributes"), dict) and "enabled" in body["attributes"]:
            target.enabled = bool(body["attributes"]["enabled"])
        target.updated = int(time.time())
        return json_response(200, self._bundle(vault, name, target, with_value=False))

    def _delete(self, request: Request, vault: Vault, rest: list[str]) -> Response:
        name, versions = self._latest(vault, rest[1])
        now = int(time.time())
        deleted = DeletedSecret(versions, now, now + RETENTION_DAYS * 86400)
        del vault.secrets[name.lower()]
        vault.deleted[name.lower()] = deleted
        return json_response(200, self._deleted(vault, name, deleted))

    def _deleted_entry(self, vault: Vault, raw: str) -> tuple[str, DeletedSecret]:
        deleted = vault.deleted.get(raw.lower())
        if deleted is None:
            raise VaultFailure(404, "SecretNotFound", f"Deleted Secret not found: {raw}")
        return vault.secret_names.get(raw.lower(), raw), deleted

    def _list_deleted(self, request: Request, vault: Vault, rest: list[str]) -> Response:
        items = [self._deleted(vault, vault.secret_names.get(k, k), d, item=True)
                 for k, d in sorted(vault.deleted.items())]
        return self._paged(request, items)

    def _get_deleted(self, request: Request, vault: Vault, rest: list[str]) -> Response:
        name, deleted = self._deleted_entry(vault, rest[1])
        return json_response(200, self._deleted(vault, name, deleted))

    def _purge(self, request: Request, vault: Vault, rest: list[str]) -> Response:
        name, _ = self._deleted_entry(vault, rest[1])
        del vault.deleted[name.lower()]
        vault.secret_names.pop(name.lower(), None)
        return Response(204)

    def _recover(self, request: Request, vault: Vault, rest: list[str]) -> Response:
        name, deleted = self._deleted_entry(vault, rest[1])
        del vault.deleted[name.lower()]
        vault.secrets[name.lower()] = deleted.versions
        return json_response(200, self._bundle(vault, name, deleted.versions[-1], with_value=False))
