"""What the current tool call is: correlation id, agent session, tool, MCP client, principal.

The server opens a scope per tool call; the pipeline policies that every SDK client carries
(correlation headers, policy enforcement, audit) read it. A ContextVar, so it follows the call
into ``anyio.to_thread`` workers and never leaks between concurrent calls.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class CallContext:
    correlation_id: str
    session_id: str | None = None
    tool: str | None = None
    client_name: str | None = None
    arguments: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_current: ContextVar[CallContext | None] = ContextVar("azure_agent_mcp_call", default=None)


def current_call() -> CallContext | None:
    return _current.get()


@contextmanager
def call_scope(**fields: Any) -> Iterator[CallContext]:
    """Open a call scope; a new correlation id unless one is given. Nested scopes inherit fields."""
    parent = _current.get()
    if parent is not None:
        fields.setdefault("correlation_id", parent.correlation_id)
        ctx = replace(parent, **fields)
    else:
        fields.setdefault("correlation_id", str(uuid.uuid4()))
        ctx = CallContext(**fields)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
