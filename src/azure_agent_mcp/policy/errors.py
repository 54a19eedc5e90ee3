"""The policy area's exceptions, as types the server can map to MCP errors without parsing messages."""

from __future__ import annotations

from azure_agent_mcp.policy.effects import Decision


class PolicyError(Exception):
    """Base of every error the policy engine raises."""


class PolicyLoadError(PolicyError):
    """A policy (profile name or file) could not be loaded; the server must not start with it.

    The message names the file, the key and what is wrong, so an operator can fix it without
    reading code.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.key = key


class UnmappableRequestError(PolicyError):
    """A request whose host or shape the mapper does not understand: it is denied, never guessed at."""

    def __init__(self, method: str, url: str, problem: str) -> None:
        super().__init__(f"{method.upper()} {_shorten(url)}: {problem}")
        self.method = method.upper()
        self.url = url
        self.problem = problem


class PolicyDeniedError(PolicyError):
    """The active policy refused a request before it was sent; carries the decision that refused it."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"{decision.reason} [rule: {decision.rule}]")
        self.decision = decision


class ConfirmationRequiredError(PolicyDeniedError):
    """The policy asks for confirmation and nobody confirmed (no confirmer, or it said no).

    A subclass of PolicyDeniedError: for the caller the request was refused either way; the
    decision's effect ("confirm") says why.
    """


def _shorten(url: str, limit: int = 300) -> str:
    """The URL without its query string or fragment (they can carry tokens), at most ``limit`` characters."""
    shown = url.split("?", 1)[0].split("#", 1)[0]
    return shown if len(shown) <= limit else shown[:limit] + "..."
