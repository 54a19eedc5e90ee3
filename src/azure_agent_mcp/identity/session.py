"""The agent session: one id, decided once at start-up, visible to Entra, to children and to the audit.

The id travels to Entra on every user token request (``client_session`` and a claims request), so
it is validated before anything is sent: a host that hands us a malformed id gets a refusal at
start-up rather than tokens tagged with something nobody can search for. The session also has an
end: after it, no token is acquired or handed out, so a forgotten agent cannot keep acting.

Stdlib only: this module is on the CLI's start-up path.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from azure_agent_mcp.identity.errors import InvalidDurationError, InvalidSessionIdError, SessionExpiredError

SESSION_ENV = "COPILOT_AGENT_SESSION_ID"
"""The variable agent hosts (GitHub Copilot, VS Code) set, and Azure CLI 2.91 reads."""

MAX_SESSION_ID_LENGTH = 128
DEFAULT_TTL = "8h"
_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]+")
_SECONDS = re.compile(r"[0-9]+")
_DURATION = re.compile(r"(?:[0-9]+[smhd])+")
_DURATION_PART = re.compile(r"([0-9]+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

ORIGIN_FLAG = "flag"
ORIGIN_HOST = "host"
ORIGIN_GENERATED = "generated"


def validate_session_id(session_id: str, source: str = "session id") -> str:
    """Return the id unchanged if Entra may see it; otherwise raise InvalidSessionIdError saying why."""
    if not isinstance(session_id, str) or session_id == "":
        raise InvalidSessionIdError(
            f"{source} is empty: give 1-{MAX_SESSION_ID_LENGTH} characters from A-Z a-z 0-9 . _ : - "
            "(or leave it unset and a new session id is generated)"
        )
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        raise InvalidSessionIdError(
            f"{source} is {len(session_id)} characters long; the limit is {MAX_SESSION_ID_LENGTH}"
        )
    if not _ID_PATTERN.fullmatch(session_id):
        bad = sorted({c for c in session_id if not _ID_PATTERN.fullmatch(c)})
        shown = " ".join(repr(c) for c in bad[:5])
        raise InvalidSessionIdError(
            f"{source} contains characters outside A-Z a-z 0-9 . _ : - ({shown}); "
            "use a UUID or a similar plain identifier"
        )
    return session_id


def parse_duration(text: str | int | float | None) -> int:
    """Seconds in a duration such as ``45m``, ``8h``, ``90s``, ``1d``, ``1h30m`` or ``3600``; ``0`` means no expiry."""
    if text is None:
        return 0
    if isinstance(text, bool):
        raise InvalidDurationError(f"session TTL {text!r} is not a duration")
    if isinstance(text, (int, float)):
        if text < 0:
            raise InvalidDurationError(f"session TTL {text!r} is negative; use 0 for a session that never expires")
        return int(text)
    raw = str(text).strip().lower()
    if not raw:
        raise InvalidDurationError("session TTL is empty: give a duration such as 45m, 8h, 90s or 1d (0 = no expiry)")
    if _SECONDS.fullmatch(raw):
        return int(raw)
    if not _DURATION.fullmatch(raw):
        raise InvalidDurationError(
            f"session TTL {text!r} is not a duration: use a number with s, m, h or d "
            "(45m, 8h, 90s, 1d, 1h30m), plain seconds, or 0 for no expiry"
        )
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(raw))


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AgentSession:
    """One agent session: its id, where the id came from, and when it ends (None: never)."""

    id: str
    origin: str
    created_at: float
    expires_at: float | None = None
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.clock() >= self.expires_at

    def remaining(self) -> float | None:
        """Seconds left, or None for a session without end."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - self.clock())

    def check(self) -> None:
        """Raise SessionExpiredError once the session has ended."""
        if self.expired:
            raise SessionExpiredError(
                f"agent session {self.id} expired at {_iso(self.expires_at)} and no longer gets Azure tokens; "
                "start a new agent session (restart the server or open a new chat), or start the server "
                "with a longer --session-ttl (0 = no expiry)"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (what whoami and the audit show)."""
        return {
            "id": self.id,
            "origin": self.origin,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "expired": self.expired,
        }


def resolve_session(
    session_id: str | None = None,
    ttl: str | int | float | None = DEFAULT_TTL,
    environ: MutableMapping[str, str] | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> AgentSession:
    """The session for this process: ``session_id`` (the flag) > ``$COPILOT_AGENT_SESSION_ID`` > a new UUID4.

    The chosen id is written back into ``environ`` (``os.environ`` by default) so every child process,
    ``az`` included, acts in the same session. An empty ``COPILOT_AGENT_SESSION_ID`` counts as unset
    (as in Azure CLI); an empty ``session_id`` is refused.
    """
    if environ is None:
        environ = os.environ
    if session_id is not None:
        chosen, origin = validate_session_id(session_id, "--session-id"), ORIGIN_FLAG
    elif environ.get(SESSION_ENV):
        chosen, origin = validate_session_id(environ[SESSION_ENV], SESSION_ENV), ORIGIN_HOST
    else:
        chosen, origin = str(uuid.uuid4()), ORIGIN_GENERATED
    seconds = parse_duration(ttl)
    now = clock()
    session = AgentSession(
        id=chosen,
        origin=origin,
        created_at=now,
        expires_at=now + seconds if seconds > 0 else None,
        clock=clock,
    )
    environ[SESSION_ENV] = chosen
    return session
