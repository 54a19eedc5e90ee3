"""Local grants: the policy widened for one agent session, for some operations at one scope, until an instant.

A grant is made only after the user approved exactly it (``access_request``); it applies to the
session that asked and to nothing else: the guard consults ``GrantBook.widen`` on every request,
with the time of ``clock.GrantClock``, so a grant stops applying the moment it ends. A grant can
lift only the refusals that mean "the policy does not grant this" (no Actions pattern, NotActions,
the read-only narrowing); an explicit Deny (the secret-bearing catalog), a scope outside
AssignableScopes, an operation Azure does not publish and an unmappable request stay refused, and
so does any secret-bearing operation under a custom policy that does not Deny it.

The book also holds two kinds of one-shot tickets:

* pending approvals: the question asked for one ``access_request`` (its grant id, start and end,
  so the question reads the same on every round of a 2026-07-28 retry) until it is answered;
  taking one consumes it, so an approval cannot be replayed into a second grant;
* permits for the PIM requests an approved grant needs (its activation, its deactivation): the
  guard lets through exactly that method, URL and body, once, from that session and that tool.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from azure_agent_mcp.access.clock import GrantClock
from azure_agent_mcp.policy.effects import Decision, Effect

_LOG = logging.getLogger(__name__)
GRANT_RULE_PREFIX = "Elevation grant "
LIFTABLE_RULES = ("no Actions pattern", "no DataActions pattern", "NotActions:", "NotDataActions:", "read-only narrowing")
"""Refusals a grant may lift: the policy does not grant the operation. Nothing else is ever lifted."""
PENDING_SECONDS = 600.0
"""How long a question asked for a grant stays answerable."""


def utc_iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_grant_id() -> str:
    return "g-" + secrets.token_hex(6)


def _scope_key(scope: str) -> str:
    return scope.lower().rstrip("/") or "/"


def scope_covers(outer: str, inner: str) -> bool:
    """Whether ``inner`` is ``outer`` or below it (ARM scopes are case-insensitive)."""
    o, i = _scope_key(outer), _scope_key(inner)
    return o == "/" or i == o or i.startswith(o + "/")


@functools.lru_cache(maxsize=1024)
def _pattern_set(patterns: tuple[str, ...]) -> Any:
    from azure_agent_mcp.policy.patterns import PatternSet

    return PatternSet(patterns)


def _matches(patterns: Sequence[str], operation: str) -> str | None:
    """The first of ``patterns`` matching ``operation`` (compiled once per pattern list: checked on every request)."""
    return _pattern_set(tuple(patterns)).first_match(operation.lower())


@dataclass(frozen=True)
class PimActivation:
    """The Azure side of a grant: the role assignment PIM made active for the same period."""

    kind: str  # "SelfActivate" (a user's eligible role) | "AdminAssign" (a time-bound assignment to a service principal)
    request_name: str
    principal_id: str
    role_definition_id: str
    role_name: str
    scope: str
    eligibility_schedule_id: str | None = None
    assignment: Any = None  # access.pim_assign.TimeBoundAssignment for AdminAssign

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "request": self.request_name, "role": self.role_name,
                "role_definition_id": self.role_definition_id, "scope": self.scope,
                "eligibility_schedule_id": self.eligibility_schedule_id}


@dataclass(frozen=True)
class Grant:
    id: str
    session_id: str
    scope: str
    start: float
    end: float
    justification: str
    actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    role: str | None = None
    pim: PimActivation | None = None
    not_actions: tuple[str, ...] = ()  # a role's NotActions (a grant of a role covers what the role does)
    not_data_actions: tuple[str, ...] = ()

    def covers(self, operation: str, scope: str, data_action: bool) -> bool:
        if not scope_covers(self.scope, scope):
            return False
        include, exclude = ((self.data_actions, self.not_data_actions) if data_action
                            else (self.actions, self.not_actions))
        return _matches(include, operation) is not None and (not exclude or _matches(exclude, operation) is None)

    def as_json(self, now: float | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "operations": list(self.actions),
            "data_operations": list(self.data_actions),
            "scope": self.scope,
            "start": utc_iso(self.start),
            "end": utc_iso(self.end),
            "role": self.role,
            "pim": self.pim.as_json() if self.pim is not None else None,
        }
        if now is not None:
            data["remaining_seconds"] = max(0, int(self.end - now))
        return {k: v for k, v in data.items() if v not in (None, [])}


@dataclass
class PendingApproval:
    """The question asked for one access_request; answered (taken) at most once."""

    grant_id: str
    session_id: str
    digest: str
    start: float
    end: float
    asked_at: float


@dataclass(frozen=True)
class Permit:
    """One PIM request an approved grant needs. Exact (``url`` and ``body`` as sent) unless ``named_by_sdk``:
    then the SDK names the request (a GUID after ``url``, then the api-version query) and serialises the body,
    so the request must carry every field of ``body["properties"]`` with the same value."""

    grant_id: str
    session_id: str
    tool: str
    method: str
    url: str
    body: Any
    purpose: str  # "activation" | "deactivation" | "cancellation" | "assignment" | "removal"
    named_by_sdk: bool = False

    def matches(self, session_id: str, tool: str, method: str, url: str, sent: Any, raw: Any) -> bool:
        if self.session_id != session_id or self.tool != tool or self.method != method.upper():
            return False
        if not self.named_by_sdk:
            return url == self.url and sent == self.body and (sent is not None or raw in (None, b"", ""))
        import re

        base, _, query = self.url.partition("?")
        rest = url[len(base):] if url.startswith(base) else None
        if rest is None or not re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\?" + re.escape(query),
                                            rest):
            return False
        want = (self.body or {}).get("properties") or {}
        got = (sent or {}).get("properties") if isinstance(sent, dict) else None
        return isinstance(got, dict) and all(_field(got, key) == value for key, value in want.items())


def _field(properties: dict[str, Any], key: str) -> Any:
    """A dotted key of the request's properties (``scheduleInfo.expiration.duration``)."""
    value: Any = properties
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@dataclass
class _SessionGrants:
    grants: dict[str, Grant] = field(default_factory=dict)


class GrantBook:
    """Every agent session's grants, pending approvals and PIM permits (one per server)."""

    def __init__(self, clock: GrantClock | None = None, audit: Any = None,
                 on_expired: Callable[[Grant], None] | None = None) -> None:
        self.clock = clock or GrantClock()
        self.audit = audit
        self.on_expired = on_expired
        self._lock = threading.Lock()
        self._sessions: dict[str, _SessionGrants] = {}
        self._pending: dict[tuple[str, str], PendingApproval] = {}
        self._permits: list[Permit] = []
        self._widened: dict[tuple[str, Decision], Decision] = {}
        self._requesting: dict[str, threading.Lock] = {}

    # -- audit ----------------------------------------------------------------------------------

    def record(self, event: str, grant: Grant | None = None, *, durable: bool = True, **fields: Any) -> None:
        """One ``kind: grant`` audit record (its request, approval or refusal, activation, revoke, expiry)."""
        if self.audit is None:
            return
        record: dict[str, Any] = {"kind": "grant", "event": event}
        if grant is not None:
            record.update(grant_id=grant.id, session_id=grant.session_id, scope=grant.scope,
                          operations=list(grant.actions) or None, data_operations=list(grant.data_actions) or None,
                          role=grant.role, start=utc_iso(grant.start), end=utc_iso(grant.end),
                          pim=grant.pim.as_json() if grant.pim is not None else None)
        record.update(fields)
        self.audit.append({k: v for k, v in record.items() if v is not None}, durable=durable)

    # -- grants ---------------------------------------------------------------------------------

    def add(self, grant: Grant) -> None:
        with self._lock:
            self._sessions.setdefault(grant.session_id, _SessionGrants()).grants[grant.id] = grant

    def _expire(self, session_id: str, now: float) -> list[Grant]:
        held = self._sessions.get(session_id)
        if held is None:
            return []
        ended = [g for g in held.grants.values() if g.end <= now]
        for grant in ended:
            del held.grants[grant.id]
        return ended

    def _report_expired(self, ended: list[Grant], now: float) -> None:
        for grant in ended:
            try:
                self.record("expired", grant, durable=False, at=utc_iso(now))
            except Exception:  # the grant has stopped applying either way
                _LOG.warning("the audit record of grant %s's expiry could not be written", grant.id, exc_info=True)
            if self.on_expired is not None:
                self.on_expired(grant)

    def active(self, session_id: str) -> list[Grant]:
        """The session's grants in force now (those that ended are dropped and audited as expired)."""
        now = self.clock.now()
        with self._lock:
            ended = self._expire(session_id, now)
            live = sorted(self._sessions.get(session_id, _SessionGrants()).grants.values(), key=lambda g: g.start)
        self._report_expired(ended, now)
        return live

    def take_session(self, session_id: str) -> list[Grant]:
        """The session is ending: its live grants, removed (they stop applying now); its questions and
        permits are dropped, and grants already over are audited as expired. The caller ends Azure's side
        (``access.ending``) and audits each end."""
        now = self.clock.now()
        with self._lock:
            held = self._sessions.pop(session_id, None)
            for key in [k for k in self._pending if k[0] == session_id]:
                del self._pending[key]
        grants = list(held.grants.values()) if held is not None else []
        self._report_expired([g for g in grants if g.end <= now], now)
        return sorted((g for g in grants if g.end > now), key=lambda g: g.start)

    def sessions_with_grants(self) -> list[str]:
        with self._lock:
            return [sid for sid, held in self._sessions.items() if held.grants]

    def close(self) -> None:
        """The server stops: every grant still held ends with it (audited); an ended one is audited as expired.

        The runtime ends each session's grants, Azure's side included, before this (``access.ending``);
        what is left here had no Azure session to end it with, so its PIM side runs to its own end."""
        now = self.clock.now()
        with self._lock:
            held = [g for session in self._sessions.values() for g in session.grants.values()]
            self._sessions.clear()
            self._pending.clear()
            self._permits.clear()
        self._report_expired([g for g in held if g.end <= now], now)
        for grant in (g for g in held if g.end > now):
            try:
                self.record("ended", grant, durable=False, at=utc_iso(now), reason="the server stopped",
                            azure=f"runs to its end at {utc_iso(grant.end)}" if grant.pim is not None else None)
            except Exception:
                _LOG.warning("the audit record of grant %s's end could not be written", grant.id, exc_info=True)

    def get(self, session_id: str, grant_id: str) -> Grant | None:
        return next((g for g in self.active(session_id) if g.id == grant_id), None)

    def remove(self, session_id: str, grant_id: str) -> Grant | None:
        with self._lock:
            held = self._sessions.get(session_id)
            return held.grants.pop(grant_id, None) if held is not None else None

    def covering(self, session_id: str | None, operation: str, scope: str, data_action: bool) -> Grant | None:
        if not session_id:
            return None
        return next((g for g in self.active(session_id) if g.covers(operation, scope, data_action)), None)

    def overlapping(self, session_id: str, operations: Sequence[str], data_operations: Sequence[str], scope: str,
                    role: str | None) -> Grant | None:
        """An active grant of the session that a new one would overlap: a scope inside the other's, and an
        operation (or the role) in common."""
        for grant in self.active(session_id):
            if not (scope_covers(grant.scope, scope) or scope_covers(scope, grant.scope)):
                continue
            if role is not None and grant.role is not None and role.lower() == grant.role.lower():
                return grant
            if any(grant.covers(op, scope_deepest(grant.scope, scope), False) for op in operations):
                return grant
            if any(grant.covers(op, scope_deepest(grant.scope, scope), True) for op in data_operations):
                return grant
            if any(_matches(operations, op) for op in grant.actions):
                return grant
        return None

    def widen(self, session_id: str | None, decision: Decision) -> tuple[Decision, Grant | None]:
        """The decision with the session's grants applied: a liftable refusal a grant covers becomes an allow
        that names the grant."""
        if decision.effect is not Effect.DENY or not decision.rule.startswith(LIFTABLE_RULES):
            return decision, None
        if _secret_bearing(decision.operation):  # never, whatever the policy's own Denies say (a custom one may have none)
            return decision, None
        grant = self.covering(session_id, decision.operation, decision.scope, decision.data_action)
        if grant is None:
            return decision, None
        key = (grant.id, decision)
        widened = self._widened.get(key)
        if widened is None:  # the same request under the same grant reads the same: made once
            widened = self._widen(grant, decision)
            if len(self._widened) >= 4096:
                self._widened.clear()
            self._widened[key] = widened
        return widened, grant

    @staticmethod
    def _widen(grant: Grant, decision: Decision) -> Decision:
        return replace(
            decision,
            effect=Effect.ALLOW,
            rule=f"{GRANT_RULE_PREFIX}{grant.id} (until {utc_iso(grant.end)})",
            reason=f"{decision.operation} at {decision.scope} is allowed until {utc_iso(grant.end)} by grant "
                   f"{grant.id}, which the user approved for agent session {grant.session_id} "
                   f"(policy '{decision.policy}' alone: {decision.rule}).",
            hint="",
        )

    def requesting(self, session_id: str) -> threading.Lock:
        """The session's lock for one access_request, held from its checks (overlap) until its grant is added:
        two concurrent requests would otherwise both pass the overlap check before either grant exists."""
        with self._lock:
            return self._requesting.setdefault(session_id, threading.Lock())

    # -- approvals --------------------------------------------------------------------------------

    def pending(self, session_id: str, digest: str, seconds: int) -> PendingApproval:
        """The question for this request (the same one on every round until it is answered)."""
        now = self.clock.now()
        with self._lock:
            for key, held in list(self._pending.items()):
                if now - held.asked_at > PENDING_SECONDS:
                    del self._pending[key]
            held = self._pending.get((session_id, digest))
            if held is None:
                held = PendingApproval(new_grant_id(), session_id, digest, now, now + seconds, now)
                self._pending[(session_id, digest)] = held
            return held

    def is_pending(self, session_id: str, digest: str) -> bool:
        with self._lock:
            return (session_id, digest) in self._pending

    def take_pending(self, session_id: str, digest: str) -> PendingApproval | None:
        """The approved question, consumed: a second answer to it (a replay) finds nothing."""
        with self._lock:
            held = self._pending.pop((session_id, digest), None)
        if held is None or self.clock.now() - held.asked_at > PENDING_SECONDS:
            return None
        return held

    def forget_pending(self, session_id: str, digest: str) -> PendingApproval | None:
        with self._lock:
            return self._pending.pop((session_id, digest), None)

    # -- PIM permits ------------------------------------------------------------------------------

    def permit(self, permit: Permit) -> None:
        with self._lock:
            self._permits.append(permit)

    def withdraw(self, permit: Permit) -> None:
        with self._lock:
            if permit in self._permits:
                self._permits.remove(permit)

    def take_permit(self, session_id: str | None, tool: str | None, method: str, url: str, body: Any) -> Permit | None:
        """The permit for exactly this request from this session and tool, consumed; None when there is none."""
        if not session_id or not tool:
            return None
        sent = _json_of(body)
        with self._lock:
            for permit in self._permits:
                if permit.matches(session_id, tool, method, url, sent, body):
                    self._permits.remove(permit)
                    return permit
        return None


@functools.lru_cache(maxsize=4096)
def _secret_bearing(operation: str) -> bool:
    from azure_agent_mcp.policy.catalog import secret_bearing

    return secret_bearing(operation)


def scope_deepest(a: str, b: str) -> str:
    return b if scope_covers(a, b) else a


def _json_of(body: Any) -> Any:
    if body is None:
        return None
    if hasattr(body, "getvalue"):  # an in-memory stream (an SDK sending serialised bytes): read without consuming
        body = body.getvalue()
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            return json.loads(body)
        except ValueError:
            return None
    if isinstance(body, dict):
        return body
    return None
