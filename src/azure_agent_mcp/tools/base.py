"""What a tool is: a function over Azure plus the operations it declares.

A tool declares its operations twice, for two different questions. ``operations`` answers
"could the active policy ever allow this tool?" (to hide it from ``tools/list``); ``plan``
answers "which concrete requests will this call make?" (to refuse or ask for confirmation
before anything is sent). The pipeline policy then checks every request actually sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


# Arguments that say which resource, method or path a call acts on: what a write's audit record
# keeps verbatim. Every other argument of a write or secret-bearing tool is kept as a digest.
IDENTIFYING_ARGUMENTS = frozenset(
    {
        "subscription", "resource_group", "resource_id", "resource_type", "scope", "name", "vault", "location",
        "method", "path", "api_version", "top", "name_contains", "operation", "data_action",
        "project", "repo", "id", "type", "branch", "base", "source_branch", "target_branch", "pull_request_id",
        "thread_id",
    }
)


@dataclass(frozen=True)
class DeclaredOperation:
    operation: str
    data_action: bool = False


@dataclass(frozen=True)
class PlannedRequest:
    """A request a tool call is about to make, as the policy will see it."""

    method: str
    url: str
    body: bytes | None = None  # what a body-scoped request (a Resource Graph query) will send, as the guard reads it


@dataclass
class ToolOutput:
    """A tool's answer: a one-line summary for the model and the structured data."""

    summary: str
    data: dict[str, Any]
    redacted: list[str] = field(default_factory=list)


class ToolInputError(ValueError):
    """The arguments cannot be acted on; the message says what to change."""

    code = "InvalidArgument"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class AzureTool:
    """``run(azure, **arguments)`` does the work; its signature (minus ``azure``) is the tool's input schema.

    ``plan(azure, **arguments)`` lists the requests the call will make, so the server can decide before
    sending anything. Tools that make no Azure request (``whoami``, ``policy_explain``) have no plan.
    """

    name: str
    description: str
    run: Callable[..., ToolOutput]
    operations: tuple[DeclaredOperation, ...] = ()
    plan: Callable[..., list[PlannedRequest]] | None = None
    read_only: bool = True
    destructive: bool = False
    idempotent: bool = True
    secret_bearing: bool = False
    local_only: bool = False
    output_schema: dict[str, Any] | None = None
    """JSON Schema of ``ToolOutput.data`` (published as the tool's ``outputSchema``; see ``tools.schemas``)."""
    needs_elevation: bool = False
    """Listed only when the active policy has an Elevation block (the temporary access tools)."""
    resolver: Callable[..., Any] | None = None
    """``(tool, runtime, parameters) -> resolver`` asking the user before the call, instead of the policy's Confirm."""


def clamp_top(top: int | None, default: int = 100, maximum: int = 1000) -> int:
    if top is None:
        return default
    if top < 1 or top > maximum:
        raise ToolInputError(f"top must be between 1 and {maximum}, got {top}.")
    return top
