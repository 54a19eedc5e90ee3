"""``--ephemeral-agent``: a fresh agent identity per agent session, holding only time-bound roles.

Lifecycle (each step audited as ``kind: ephemeral``):

1. **create**: on the session's first token request, the blueprint (its own Graph token, application
   permission ``AgentIdentity.CreateAsManager``) creates an agent identity through Microsoft Graph
   (``POST /beta/servicePrincipals/microsoft.graph.agentIdentity``: ``displayName``,
   ``agentIdentityBlueprintId``, ``sponsors@odata.bind`` = the operator), tagged (below);
2. **assign**: each ``--ephemeral-role ROLE@SCOPE`` becomes a PIM ``AdminAssign`` with an expiration
   at the session's end (``access.pim_assign``): service principals cannot activate eligible
   roles, so they get time-bound active assignments. Nothing is assigned without an end;
3. **use**: the session's tokens are that identity's (the blueprint's exchange, ``fmi_path``);
4. **delete**: when the session ends (shutdown, eviction, DELETE of its MCP session) or expires
   (a timer at its end), the assignments are removed (``AdminRemove``) and the identity deleted.
   The assignments end at the session's end anyway: a failed clean-up cannot extend them.

Crash clean-up ("no longer used"): every identity carries the tags ``azure-agent-mcp:ephemeral``,
``azure-agent-mcp:process=<host>/<pid>``, ``azure-agent-mcp:session=<id>``,
``azure-agent-mcp:created=<UTC>``, ``azure-agent-mcp:expires=<UTC>`` (its session's end: its lease)
and ``azure-agent-mcp:role=<role guid>@<scope>`` per assignment. On start, the server lists the
blueprint's identities tagged ephemeral and removes (assignments, then identity) each one that
is no longer in use, which is known without any shared state:

- its process tag names this host and a process that is not running (a crash, ``kill -9``); or
- its lease ended more than the grace period (``--ephemeral-grace``, default 10m) ago, whoever
  made it: its session is over, so nobody can be using it. "Now" is the later of the local clock and
  Azure's (the ``Date`` of Graph's answer), so a slow local clock cannot keep leftovers alive.

Everything else (a live process here, another host whose lease still runs) is left alone.
Graph and PIM requests go through ``management.ManagementTransport`` (a fixed, audited allowlist),
not the agent's guard: the agent's policy decides what the agent does, not the server's own housekeeping.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from azure_agent_mcp.identity.errors import CredentialUnavailableError

_LOG = logging.getLogger(__name__)
TAG = "azure-agent-mcp:ephemeral"
TAG_PROCESS = "azure-agent-mcp:process="
TAG_SESSION = "azure-agent-mcp:session="
TAG_CREATED = "azure-agent-mcp:created="
TAG_EXPIRES = "azure-agent-mcp:expires="
TAG_ROLE = "azure-agent-mcp:role="
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_VERSION = "beta"
DEFAULT_GRACE = "10m"
SWEEP_WAIT = 60.0
"""Seconds the first identity waits for the start-up sweep (it runs in the background: start stays fast)."""
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
BUILTIN_ROLES = {
    "reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "website contributor": "de139f84-1756-47ae-9be6-808fbbe84772",
    "key vault secrets user": "4633458b-17de-408a-b874-0445c86b69e6",
    "storage blob data reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
}


class EphemeralAgentError(CredentialUnavailableError):
    """The ephemeral identity could not be made, given its roles, or used; says what and what to do."""


# -- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EphemeralRole:
    """One ``--ephemeral-role ROLE@SCOPE``: a built-in role name or a role definition GUID, at an ARM scope."""

    role_definition: str
    scope: str
    label: str = ""

    @classmethod
    def parse(cls, text: str) -> EphemeralRole:
        role, sep, scope = text.strip().partition("@")
        if not sep or not role.strip() or not scope.strip():
            raise EphemeralAgentError(f"--ephemeral-role {text!r} must be ROLE@SCOPE, e.g. "
                                      "'Website Contributor@/subscriptions/<id>/resourceGroups/<group>'")
        role, scope = role.strip(), scope.strip().rstrip("/")
        guid = role.lower() if _GUID.match(role) else BUILTIN_ROLES.get(role.lower())
        if guid is None:
            raise EphemeralAgentError(f"--ephemeral-role {text!r}: unknown role {role!r}; give a role definition GUID "
                                      "or one of: " + ", ".join(sorted(name.title() for name in BUILTIN_ROLES)))
        parts = [p for p in scope.split("/") if p]
        if len(parts) < 2 or parts[0].lower() != "subscriptions" or not _GUID.match(parts[1]) or "@" in scope:
            raise EphemeralAgentError(f"--ephemeral-role {text!r}: the scope must be an ARM scope under a "
                                      "subscription, e.g. /subscriptions/<id>/resourceGroups/<group>")
        return cls(guid, "/" + "/".join(parts), role)

    @property
    def tag(self) -> str:
        return f"{TAG_ROLE}{self.role_definition}@{self.scope}"


@dataclass(frozen=True)
class EphemeralSettings:
    sponsor: str
    """The object id of the user who sponsors every identity (the operator)."""
    roles: tuple[EphemeralRole, ...] = ()
    grace_seconds: float = 600.0


# -- what exists --------------------------------------------------------------------------------


@dataclass
class EphemeralIdentity:
    object_id: str
    session_id: str
    created: datetime.datetime
    expires: datetime.datetime
    assignments: list[Any] = field(default_factory=list)
    released: bool = False


def identity_tags(session_id: str, created: datetime.datetime, expires: datetime.datetime,
                  roles: tuple[EphemeralRole, ...]) -> list[str]:
    return [TAG, f"{TAG_PROCESS}{socket.gethostname()}/{os.getpid()}", f"{TAG_SESSION}{session_id}",
            f"{TAG_CREATED}{_iso(created)}", f"{TAG_EXPIRES}{_iso(expires)}", *(r.tag for r in roles)]


def leftover_reason(tags: list[str], now: datetime.datetime, grace: float, *, host: str | None = None,
                    alive: Any = None) -> str | None:
    """Why an ephemeral identity with these tags is no longer in use (None: it may be)."""
    host = host or socket.gethostname()
    alive = alive or _process_alive
    process = next((t[len(TAG_PROCESS):] for t in tags if t.startswith(TAG_PROCESS)), "")
    owner_host, _, pid = process.rpartition("/")
    if owner_host == host and pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
        return f"its server process {pid} on this host is gone"
    expires = _parse_iso(next((t[len(TAG_EXPIRES):] for t in tags if t.startswith(TAG_EXPIRES)), ""))
    if expires is None:
        return "it carries no lease (expires tag): it was not made by a running server"
    if now > expires + datetime.timedelta(seconds=grace):
        return f"its lease ended at {_iso(expires)}, more than the grace period ago"
    return None


def made_by(item: dict[str, Any], blueprint_client_id: str) -> bool:
    """Whether a listed identity is an ephemeral one of this blueprint: tagged so, and its blueprint's."""
    tags = item.get("tags") or []
    blueprint = str(item.get("agentIdentityBlueprintId") or "")
    return isinstance(tags, list) and TAG in tags and blueprint.lower() == blueprint_client_id.lower()


def roles_of(tags: list[str]) -> list[EphemeralRole]:
    found = []
    for tag in tags:
        if tag.startswith(TAG_ROLE):
            role, _, scope = tag[len(TAG_ROLE):].partition("@")
            if _GUID.match(role) and scope.startswith("/"):
                found.append(EphemeralRole(role.lower(), scope))
    return found


# -- the manager ----------------------------------------------------------------------------------


class EphemeralAgents:
    """Creates, tracks and deletes this server's ephemeral agent identities; sweeps leftovers at start."""

    def __init__(self, env: Any, settings: EphemeralSettings, options: dict[str, Any], audit: Any) -> None:
        from azure_agent_mcp.identity.agent_identity import agent_identity_provider

        self.env = env
        self.settings = settings
        self.audit = audit
        self._options = {k: v for k, v in options.items() if k not in ("agent_identity_id", "agent_user")}
        # the blueprint's own client (its Graph and ARM tokens); the agent id is a placeholder, never used
        self.blueprint = agent_identity_provider(env, **{**self._options, "agent_identity_id": _ZERO_GUID})
        self.blueprint_client_id = self.blueprint.blueprint_client_id
        self.tenant = self.blueprint.default_tenant
        manifest = env.manifest or {}
        self.graph_endpoint = str(manifest.get("graph_endpoint") or "https://graph.microsoft.com").rstrip("/")
        self._lock = threading.Lock()
        self._live: dict[str, EphemeralIdentity] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._azure_clock: tuple[float, float] | None = None  # (Azure's epoch from a Date header, monotonic then)
        self._swept = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._graph: Any = None
        self._arm: Any = None
        self._acting = threading.local()  # the agent session the current management request is for (records)
        self.closed = False

    # -- start and stop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Sweep leftovers in the background (start-up must not wait for Graph)."""
        self._sweeper = threading.Thread(target=self._sweep_quietly, name="ephemeral-sweep", daemon=True)
        self._sweeper.start()

    def _sweep_quietly(self) -> None:
        try:
            self.sweep()
        except Exception as exc:  # the server runs on; the next start sweeps again
            self._record("sweep-failed", error=type(exc).__name__, message=_one_line(exc))
            _LOG.warning("the sweep of leftover ephemeral agent identities failed: %s", _one_line(exc))
        finally:
            self._swept.set()

    def close(self) -> None:
        """Release every identity still live (shutdown), then close the clients."""
        with self._lock:
            live = list(self._live.values())
            self.closed = True
        for identity in live:
            self.release(identity, "server shutdown")
        for client in (self._graph, self._arm):
            if client is not None:
                try:
                    client.close()
                except Exception:
                    pass
        self.blueprint.close()

    # -- per session -----------------------------------------------------------------------------------

    def provider_for(self, session: Any, options: dict[str, Any]) -> EphemeralProvider:
        return EphemeralProvider(self, session, {**self._options, **{k: v for k, v in options.items()
                                                                      if k not in ("agent_identity_id", "agent_user")}})

    def provision(self, session: Any) -> EphemeralIdentity:
        """A new agent identity for ``session``, with its time-bound roles (ends with the session)."""
        if self.closed:
            raise EphemeralAgentError("the server is shutting down: no new ephemeral agent identity is made")
        self._swept.wait(SWEEP_WAIT)
        now = self.now()
        remaining = session.remaining()
        if remaining is None:
            raise EphemeralAgentError("--ephemeral-agent needs a session that ends (--session-ttl other than 0): "
                                      "its identity's role assignments end with the session")
        # the session's end in whole seconds, rounded up: the identity goes at (never before) that end, so no
        # request of the session can meet a deleted identity while the session still hands out its tokens
        expires = datetime.datetime.fromtimestamp(math.ceil(session.expires_at), datetime.timezone.utc)
        duration = expires - now
        from azure_agent_mcp.access.pim_assign import MIN_DURATION

        if self.settings.roles and duration < MIN_DURATION:
            raise EphemeralAgentError(
                f"agent session {session.id} has {int(remaining)} s left, under PIM's minimum of "
                f"{int(MIN_DURATION.total_seconds())} s for a time-bound assignment: start a new session")
        body = {
            "displayName": f"azure-agent-mcp {session.id}"[:256],
            "agentIdentityBlueprintId": self.blueprint_client_id,
            "sponsors@odata.bind": [f"https://graph.microsoft.com/v1.0/users/{self.settings.sponsor}"],
            "tags": identity_tags(session.id, now, expires, self.settings.roles),
        }
        response = self._graph_send("POST", f"/{GRAPH_VERSION}/servicePrincipals/microsoft.graph.agentIdentity", body,
                                    session_id=session.id)
        if response.status_code != 201:
            raise EphemeralAgentError(f"Microsoft Graph did not create the agent identity: {_graph_error(response)}. "
                                      "The blueprint needs the application permission AgentIdentity.CreateAsManager, "
                                      "and --ephemeral-sponsor must be a user of the tenant.")
        object_id = str(response.json()["id"])
        identity = EphemeralIdentity(object_id, session.id, now, expires)
        with self._lock:
            self._live[object_id] = identity
        self._record("created", agent_identity_id=object_id, session_id=session.id, expires=_iso(expires),
                     sponsor=self.settings.sponsor)
        try:
            self._assign(identity, duration, session.id)
        except BaseException:
            self.release(identity, "its role assignment failed")
            raise
        self._schedule_release(identity)
        return identity

    def _assign(self, identity: EphemeralIdentity, duration: datetime.timedelta, session_id: str) -> None:
        from azure_agent_mcp.access.pim_assign import TimeBoundAssignmentError, assign_time_bound

        self._acting.session_id = session_id
        for role in self.settings.roles:
            try:
                assignment = assign_time_bound(
                    self._authorization(role.scope), principal_id=identity.object_id,
                    role_definition_id=role.role_definition, scope=role.scope, duration=duration,
                    justification=f"azure-agent-mcp ephemeral agent for session {session_id}",
                    start=identity.created)
            except TimeBoundAssignmentError as exc:
                self._record("assign-failed", agent_identity_id=identity.object_id, session_id=session_id,
                             role=role.role_definition, scope=role.scope, code=exc.code)
                raise EphemeralAgentError(
                    f"PIM refused to give the ephemeral agent identity {role.label or role.role_definition} at "
                    f"{role.scope} ({exc.code}): the blueprint needs Microsoft.Authorization/roleAssignments/write "
                    "there (e.g. Role Based Access Control Administrator), and the session's TTL must fit the role's "
                    f"PIM policy (maximum active assignment duration). PIM said: {exc.message}") from None
            identity.assignments.append(assignment)
            self._record("assigned", agent_identity_id=identity.object_id, session_id=session_id,
                         role=role.role_definition, scope=role.scope, request=assignment.request_name,
                         start=_iso(assignment.start), end=_iso(assignment.end))

    def release(self, identity: EphemeralIdentity, reason: str) -> None:
        """Remove the identity's assignments, then the identity (once; failures audited, never raised)."""
        with self._lock:
            if identity.released:
                return
            identity.released = True
            self._live.pop(identity.object_id, None)
            timer = self._timers.pop(identity.object_id, None)
        if timer is not None:
            timer.cancel()
        from azure_agent_mcp.access.pim_assign import remove_time_bound

        self._acting.session_id = identity.session_id
        removed = 0
        for assignment in identity.assignments:
            if assignment.end <= self.now():
                continue  # ended by itself
            try:
                remove_time_bound(self._authorization(assignment.scope), assignment)
                removed += 1
            except Exception as exc:
                self._record("remove-failed", agent_identity_id=identity.object_id, session_id=identity.session_id,
                             scope=assignment.scope, error=type(exc).__name__, message=_one_line(exc))
        deleted = self._delete_identity(identity.object_id, identity.session_id)
        self._record("deleted" if deleted else "delete-failed", agent_identity_id=identity.object_id,
                     session_id=identity.session_id, reason=reason, assignments_removed=removed)

    def _delete_identity(self, object_id: str, session_id: str | None) -> bool:
        try:
            response = self._graph_send("DELETE", f"/{GRAPH_VERSION}/servicePrincipals/{object_id}/"
                                                  "microsoft.graph.agentIdentity", session_id=session_id)
        except Exception as exc:
            _LOG.warning("deleting ephemeral agent identity %s failed: %s", object_id, type(exc).__name__)
            return False
        return response.status_code in (204, 404)

    def _schedule_release(self, identity: EphemeralIdentity) -> None:
        delay = max(identity.expires.timestamp() - time.time(), 0.0)  # the session's clock is the local one
        timer = threading.Timer(delay, self.release, (identity, "its session expired"))
        timer.daemon = True
        with self._lock:
            if identity.released:
                return
            self._timers[identity.object_id] = timer
        timer.start()

    # -- crash clean-up ---------------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Remove this blueprint's ephemeral identities no longer in use (see the module docstring)."""
        query = (f"$filter=tags/any(t:t eq '{TAG}') and agentIdentityBlueprintId eq '{self.blueprint_client_id}'"
                 "&$top=100")
        found = self._list_all(f"/{GRAPH_VERSION}/servicePrincipals/microsoft.graph.agentIdentity?{query}")
        now = self.now()
        removed = []
        for item in found:
            object_id, tags = str(item.get("id")), list(item.get("tags") or [])
            if not made_by(item, self.blueprint_client_id):
                continue  # Graph's filter is not trusted with a deletion: ours is checked here too
            with self._lock:
                if object_id in self._live:
                    continue
            reason = leftover_reason(tags, now, self.settings.grace_seconds)
            if reason is None:
                continue
            self._remove_leftover(object_id, tags, now)
            removed.append(object_id)
            self._record("swept", agent_identity_id=object_id, reason=reason,
                         session_id=next((t[len(TAG_SESSION):] for t in tags if t.startswith(TAG_SESSION)), None))
        self._record("sweep", found=len(found), removed=len(removed))
        return removed

    def _list_all(self, path: str) -> list[dict[str, Any]]:
        """Every page of a Graph listing (``@odata.nextLink``, on the Graph host only)."""
        items: list[dict[str, Any]] = []
        for _ in range(100):  # at most 10 000 identities: a bound, not a expectation
            response = self._graph_send("GET", path)
            if response.status_code != 200:
                raise EphemeralAgentError(f"Microsoft Graph did not list the ephemeral agent identities: "
                                          f"{_graph_error(response)}")
            page = response.json()
            items.extend(item for item in page.get("value", []) if isinstance(item, dict))
            link = page.get("@odata.nextLink")
            if not isinstance(link, str) or not link.startswith(self.graph_endpoint + "/"):
                return items
            path = link[len(self.graph_endpoint):]
        return items

    def _remove_leftover(self, object_id: str, tags: list[str], now: datetime.datetime) -> None:
        from azure_agent_mcp.access.pim_assign import TimeBoundAssignment, full_role_definition_id, remove_time_bound

        expires = _parse_iso(next((t[len(TAG_EXPIRES):] for t in tags if t.startswith(TAG_EXPIRES)), ""))
        if expires is None or expires > now:
            for role in roles_of(tags):
                if not any(role.scope.lower() == r.scope.lower() for r in self.settings.roles):
                    continue  # a scope this server may not touch (not in its allowlist): it ends by itself
                leftover = TimeBoundAssignment("", object_id, full_role_definition_id(role.role_definition, role.scope),
                                               role.scope, now, expires or now)
                try:
                    remove_time_bound(self._authorization(role.scope), leftover)
                except Exception as exc:
                    self._record("remove-failed", agent_identity_id=object_id, scope=role.scope,
                                 error=type(exc).__name__, message=_one_line(exc))
        self._delete_identity(object_id, None)

    # -- clocks and clients -------------------------------------------------------------------------

    def now(self) -> datetime.datetime:
        """The later of the local clock and Azure's (its last ``Date``, advanced by the monotonic time since)."""
        local = time.time()
        with self._lock:
            seen = self._azure_clock
        azure = seen[0] + (time.monotonic() - seen[1]) if seen else local
        return datetime.datetime.fromtimestamp(max(local, azure), datetime.timezone.utc).replace(microsecond=0)

    def _saw_date(self, value: str | None) -> None:
        if not value:
            return
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return
        with self._lock:
            self._azure_clock = (when, time.monotonic())

    def credential(self) -> Any:
        """The blueprint's own credential (azure-core's TokenCredential): it makes and assigns the identities."""
        return BlueprintTokenCredential(self.blueprint)

    def _transport(self) -> Any:
        from azure.core.pipeline.transport import RequestsTransport

        from azure_agent_mcp.access.management import ManagementTransport, allowlist

        rules = allowlist(self.graph_endpoint, self.env.arm_endpoint, tuple(r.scope for r in self.settings.roles))
        return ManagementTransport(RequestsTransport(connection_verify=self.env.connection_verify), rules, self.audit,
                                   lambda: getattr(self._acting, "session_id", None),
                                   lambda response: self._saw_date(response.headers.get("date")))

    def _graph_send(self, method: str, path: str, body: Any = None, *, session_id: str | None = None) -> Any:
        from azure.core.rest import HttpRequest

        with self._lock:
            if self._graph is None:
                from azure.core import PipelineClient
                from azure.core.pipeline.policies import (
                    BearerTokenCredentialPolicy,
                    HeadersPolicy,
                    RetryPolicy,
                    UserAgentPolicy,
                )

                from azure_agent_mcp import USER_AGENT

                self._graph = PipelineClient(self.graph_endpoint, policies=[
                    HeadersPolicy({"OData-Version": "4.0"}), UserAgentPolicy(USER_AGENT), RetryPolicy(retry_total=2),
                    BearerTokenCredentialPolicy(self.credential(), GRAPH_SCOPE),
                ], transport=self._transport())
            client = self._graph
        self._acting.session_id = session_id
        request = HttpRequest(method, self.graph_endpoint + path, json=body) if body is not None else \
            HttpRequest(method, self.graph_endpoint + path)
        return client.send_request(request)

    def _authorization(self, scope: str) -> Any:
        with self._lock:
            if self._arm is None:
                from azure_agent_mcp import USER_AGENT
                from azure_agent_mcp.access.pim_assign import authorization_client

                self._arm = authorization_client(self.credential(), self.env, transport=self._transport(),
                                                 user_agent=USER_AGENT, connection_verify=self.env.connection_verify)
            return self._arm

    def _record(self, event: str, **fields: Any) -> None:
        record = {"kind": "ephemeral", "event": event, "blueprint": self.blueprint_client_id,
                  **{k: v for k, v in fields.items() if v is not None}}
        try:
            self.audit.append(record, durable=event in ("created", "assigned", "deleted", "swept"))
        except Exception as exc:
            _LOG.warning("the audit record of ephemeral event %s could not be written: %s", event, type(exc).__name__)


class EphemeralProvider:
    """A session's token provider: its own ephemeral agent identity, made on the first token request."""

    kind = "agent-identity"
    tagged = False

    def __init__(self, manager: EphemeralAgents, session: Any, options: dict[str, Any]) -> None:
        self.manager = manager
        self.session = session
        self.options = options
        self.default_tenant = manager.tenant
        self.identity: EphemeralIdentity | None = None
        self._inner: Any = None
        self._lock = threading.Lock()

    def _provider(self) -> Any:
        with self._lock:
            if self._inner is None:
                if self.identity is not None and self.identity.released:
                    raise EphemeralAgentError(f"agent session {self.session.id}'s ephemeral agent identity was deleted "
                                              "(the session ended); start a new session")
                from azure_agent_mcp.identity.agent_identity import agent_identity_provider

                self.identity = self.manager.provision(self.session)
                self._inner = agent_identity_provider(self.manager.env, **{**self.options,
                                                                          "agent_identity_id": self.identity.object_id})
            return self._inner

    def acquire(self, scopes: tuple[str, ...], *, tenant_id: str | None, claims: str | None) -> Any:
        provider = self._provider()
        if self.identity is not None and self.identity.released:
            raise EphemeralAgentError(f"agent session {self.session.id}'s ephemeral agent identity was deleted "
                                      "(the session ended); start a new session")
        return provider.acquire(scopes, tenant_id=tenant_id, claims=claims)

    def forget_session(self) -> None:
        self._release("the session ended")

    def _release(self, reason: str) -> None:
        with self._lock:
            inner, identity = self._inner, self.identity
            self._inner = None
        if inner is not None:
            inner.close()
        if identity is not None:
            self.manager.release(identity, reason)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "blueprint_client_id": self.manager.blueprint_client_id,
            "blueprint_credential": self.manager.blueprint.blueprint_credential.method,
            "flow": "autonomous (ephemeral agent identity)",
        }
        if self.identity is not None:
            info["agent_identity_id"] = self.identity.object_id
            info["ephemeral"] = {"expires": _iso(self.identity.expires), "released": self.identity.released,
                                 "roles": [f"{r.role_definition}@{r.scope}" for r in self.manager.settings.roles]}
        return info

    def close(self) -> None:
        self._release("the session ended")


class BlueprintTokenCredential:
    """azure-core's TokenCredential over the blueprint's own app tokens (Graph, ARM for PIM)."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        token = self.provider.blueprint_token(tuple(scopes))
        return AccessToken(token.token, token.expires_on)


_ZERO_GUID = "00000000-0000-0000-0000-000000000000"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _iso(value: datetime.datetime) -> str:
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def _graph_error(response: Any) -> str:
    try:
        error = response.json().get("error") or {}
        return f"HTTP {response.status_code} {error.get('code')}: {error.get('message')}"
    except Exception:
        return f"HTTP {response.status_code}"


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
