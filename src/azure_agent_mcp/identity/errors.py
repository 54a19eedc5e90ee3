"""The identity area's failures, as types the server and the CLI can tell apart.

Stdlib only: the CLI imports these on its start-up path. Messages never carry a token or secret.
"""

from __future__ import annotations


class IdentityError(Exception):
    """Base of every failure raised by the identity area."""


class InvalidSessionIdError(IdentityError, ValueError):
    """An agent session id that must not be sent to Entra (empty, too long, or odd characters).

    A ValueError too, so callers validating untrusted input (an HTTP header) can catch it generically.
    """


class InvalidDurationError(IdentityError, ValueError):
    """A session TTL that is not a duration such as ``45m``, ``8h``, ``90s``, ``1d`` or ``0``."""


class SessionExpiredError(IdentityError):
    """The agent session has ended: no token is acquired or handed out for it any more."""


class CredentialUnavailableError(IdentityError):
    """A credential provider cannot work here (tool missing, not signed in, nothing configured).

    Raised at start-up (``--credential`` resolution) and by providers; the message says what to do.
    """


class UnknownCredentialKindError(IdentityError, ValueError):
    """``--credential`` named a provider that does not exist (or does not exist yet)."""
