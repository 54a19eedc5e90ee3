"""Reading one ``access_request``: what it asks for, checked against the policy's Elevation block.

The same check runs twice: before the user is asked (so nobody is asked to approve what the policy
could never grant) and again after the approval, against the question that was answered. Every
refusal names the limit it hit and what to ask for instead.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from azure_agent_mcp.access.grants import GrantBook, scope_covers, utc_iso
from azure_agent_mcp.policy.elevation import DurationError, Elevation, is_guid, iso_duration, parse_iso_duration
from azure_agent_mcp.tools.base import ToolInputError

MAX_JUSTIFICATION = 500
"""Characters a justification may have (it is shown to the user and sent to PIM)."""
MIN_SECONDS = 60
_NOT_ONE_LINE = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Unicode categories a justification may not hold: controls (new lines, escapes), format (bidi overrides), separators."""
SESSION_MARGIN_SECONDS = 60
"""A grant must end at least this long before its agent session does (it never outlives it)."""


class AccessRequestError(ToolInputError):
    """The request is outside what the Elevation block allows, or malformed; the message names the limit."""

    code = "AccessRequestRefused"


class ElevationNotConfigured(AccessRequestError):
    code = "ElevationNotConfigured"


@dataclass(frozen=True)
class AccessPlan:
    """A checked request: what the grant will cover, for how long, and its digest (what the user approves)."""

    actions: tuple[str, ...]
    data_actions: tuple[str, ...]
    role: str | None
    scope: str
    seconds: int
    justification: str
    digest: str

    def describe(self) -> str:
        what = ", ".join((*self.actions, *self.data_actions)) or f"the operations of role '{self.role}'"
        return f"{what} at {self.scope} for {iso_duration(self.seconds)}"


def check_request(elevation: Elevation | None, session: Any, book: GrantBook | None, *, scope: str, duration: str,
                  justification: str, operations: list[str] | None = None, role: str | None = None) -> AccessPlan:
    from azure_agent_mcp.policy.catalog import secret_bearing
    from azure_agent_mcp.policy.patterns import pattern_problem
    from azure_agent_mcp.policy.scopes import scope_problem
    from azure_agent_mcp.tools.local import is_data_action

    if elevation is None or book is None:
        raise ElevationNotConfigured(
            "The active policy has no Elevation block, so no temporary access may be requested.",
            hint="Ask the operator for a policy file with \"Elevation\": {\"MaxDuration\": ..., \"Operations\": [...], "
                 "\"Scopes\": [...]} (README: temporary access).")
    problem = scope_problem(scope) if isinstance(scope, str) else "expected a string"
    if problem is not None:
        raise AccessRequestError(f"scope: {problem}.", hint="Pass an ARM scope such as /subscriptions/<id>/resourceGroups/<g>.")
    scope = scope.rstrip("/") or "/"
    if not any(scope_covers(allowed, scope) for allowed in elevation.scopes):
        raise AccessRequestError(
            f"Scope {scope} is outside the policy's Elevation Scopes [{', '.join(elevation.scopes)}].",
            hint="Ask for access at or below one of those scopes.")
    try:
        seconds = parse_iso_duration(duration)
    except DurationError as exc:
        raise AccessRequestError(f"duration: {exc}.", hint="Pass an ISO 8601 duration such as PT10M.") from None
    if seconds > elevation.max_seconds:
        raise AccessRequestError(
            f"duration {duration} is over the policy's Elevation MaxDuration {elevation.max_duration}.",
            hint=f"Ask for {elevation.max_duration} or less.")
    if seconds < MIN_SECONDS:
        raise AccessRequestError(f"duration {duration} is under the minimum of PT1M.", hint="Ask for PT1M or more.")
    text = justification.strip() if isinstance(justification, str) else ""
    if not text:
        raise AccessRequestError("justification is missing: say why the access is needed (the user and PIM read it).",
                                 hint="Pass a one-sentence justification.")
    odd = next((c for c in text if unicodedata.category(c) in _NOT_ONE_LINE), None)
    if odd is not None:
        raise AccessRequestError(
            f"justification contains {unicodedata.name(odd, hex(ord(odd)))} (U+{ord(odd):04X}): it is shown to the user "
            "inside the approval question, so it must be one line of plain text (no line breaks, control or "
            "direction characters).", hint="Pass a one-sentence justification on one line.")
    if len(text) > MAX_JUSTIFICATION:
        raise AccessRequestError(f"justification is {len(text)} characters, over the limit of {MAX_JUSTIFICATION}.",
                                 hint=f"Shorten it to {MAX_JUSTIFICATION} characters or fewer.")
    if bool(operations) == bool(role):
        raise AccessRequestError("Pass either operations (a list of operation names) or role (a role name or id), "
                                 "not both and not neither.")
    actions: list[str] = []
    data_actions: list[str] = []
    chosen_role: str | None = None
    if role:
        wanted = role.strip().lower().rsplit("/", 1)[-1]
        listed = next((r for r in elevation.roles if r.lower().rsplit("/", 1)[-1] == wanted), None)
        if listed is None:
            raise AccessRequestError(
                f"Role '{role}' is not in the policy's Elevation Roles [{', '.join(elevation.roles) or 'none'}].",
                hint="Ask for one of those roles (as the policy names it), or for single operations.")
        chosen_role = listed
    else:
        assert operations is not None
        for index, operation in enumerate(operations):
            if not isinstance(operation, str) or "*" in operation or pattern_problem(operation) is not None:
                raise AccessRequestError(
                    f"operations[{index}]: {operation!r} is not an operation name (no wildcards), "
                    "e.g. Microsoft.Web/sites/restart/action.")
            from azure_agent_mcp.policy.patterns import PatternSet

            if PatternSet(elevation.operations).first_match(operation.lower()) is None:
                raise AccessRequestError(
                    f"Operation {operation} is outside the policy's Elevation Operations "
                    f"[{', '.join(elevation.operations) or 'none'}].",
                    hint="Ask only for operations the Elevation block lists" +
                         (", or for one of its Roles." if elevation.roles else "."))
            if secret_bearing(operation):
                raise AccessRequestError(
                    f"Operation {operation} is secret-bearing (it returns keys, secrets or connection strings); "
                    "temporary access never grants one, whatever the Elevation block matches.",
                    hint="Ask a human to read the secret, or for an operation that does not return one.")
            (data_actions if is_data_action(operation) else actions).append(operation)
    remaining = session.remaining() if session is not None else None
    if remaining is not None and getattr(session, "expires_at", None) is not None:
        # grants run on the grants' clock (never earlier than Azure's): the session's end is measured on it too
        remaining = min(remaining, session.expires_at - book.clock.now())
    if remaining is not None and remaining - SESSION_MARGIN_SECONDS < seconds:
        most = int(remaining) - SESSION_MARGIN_SECONDS
        raise AccessRequestError(
            f"The agent session {session.id} expires at {utc_iso(session.expires_at)} (--session-ttl), before a grant "
            f"of {duration} would end; a grant never outlives its session.",
            hint=(f"Ask for {iso_duration(most - most % 60)} or less." if most >= MIN_SECONDS
                  else "Start a new agent session first."))
    overlap = book.overlapping(session.id, actions, data_actions, scope, chosen_role)
    if overlap is not None:
        raise AccessRequestError(
            f"This request overlaps grant {overlap.id} ({', '.join(overlap.actions) or overlap.role} at {overlap.scope}, "
            f"until {utc_iso(overlap.end)}).",
            hint=f"Use it while it lasts, or end it with access_revoke(grant_id='{overlap.id}') and ask again.")
    canonical = json.dumps({"a": sorted(a.lower() for a in actions), "d": sorted(d.lower() for d in data_actions),
                            "r": (chosen_role or "").lower(), "s": scope.lower(), "t": seconds, "j": text},
                           sort_keys=True)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return AccessPlan(tuple(actions), tuple(data_actions), chosen_role, scope, seconds, text, digest)


def role_key(role: str) -> str:
    """How a role is compared: its GUID when it is one, else its name, lowercased."""
    last = role.strip().lower().rsplit("/", 1)[-1]
    return last if is_guid(last) else role.strip().lower()
