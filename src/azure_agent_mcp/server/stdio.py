"""stdio transport that answers malformed input instead of dropping it.

The SDK's stdio reader turns a line that is not JSON-RPC into an exception on the read stream
and the session only logs it, so a client that sent garbage waits forever. JSON-RPC 2.0 says such
a line gets an error with ``"id": null``; this wrapper sends it and keeps serving. The error never
echoes the line back: it may hold anything the client typed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.stdio import stdio_server
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage
from mcp_types import ErrorData, JSONRPCError
from mcp_types.jsonrpc import INVALID_REQUEST, PARSE_ERROR
from pydantic import ValidationError


def error_for(exc: Exception) -> JSONRPCError:
    if isinstance(exc, ValidationError) and any(e.get("type") == "json_invalid" for e in exc.errors()):
        error = ErrorData(code=PARSE_ERROR, message="Parse error: the line is not valid JSON.")
    else:
        error = ErrorData(code=INVALID_REQUEST, message="Invalid request: the message is not a JSON-RPC 2.0 request, notification or response.")
    return JSONRPCError(jsonrpc="2.0", id=None, error=error)


@asynccontextmanager
async def answering_stdio_server() -> AsyncIterator[tuple[Any, Any]]:
    async with stdio_server() as (read_stream, write_stream):
        forward, forwarded = create_context_streams[SessionMessage | Exception](0)

        async def pump() -> None:
            async with forward:
                async for item in read_stream:
                    if isinstance(item, Exception):
                        await write_stream.send(SessionMessage(error_for(item)))
                    else:
                        await forward.send(item)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pump)
            yield forwarded, write_stream
            tasks.cancel_scope.cancel()


async def run_stdio(server: Any) -> None:
    lowlevel = server._lowlevel_server
    async with answering_stdio_server() as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
