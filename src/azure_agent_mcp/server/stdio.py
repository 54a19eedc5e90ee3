"""stdio transport: answers malformed input, shuts down on a signal, and treats EOF as the client leaving.

Malformed input: the SDK's stdio reader turns a line that is not JSON-RPC into an exception on the
read stream and the session only logs it, so a client that sent garbage waits forever. JSON-RPC
2.0 says such a line gets an error with ``"id": null``; this transport sends it and keeps serving.
The error never echoes the line back: it may hold anything the client typed.

Shutdown: the SDK reads stdin on an anyio worker thread that no cancellation can interrupt, so
SIGINT was not even noticed until stdin delivered a line, and a process could not exit while stdin
stayed open. Here stdin is read by a daemon thread with ``os.read`` (no buffered object whose lock
could be held at exit) and handed to the event loop line by line. SIGINT / SIGTERM drain the
calls in flight (``lifecycle``) and end the session; EOF on stdin cancels the calls in flight at
once (the client is gone, nobody reads their answers) and writes their records.

Like the SDK's transport, the protocol streams are private duplicates of fd 0 and 1 while
serving: fd 0 reads the null device and fd 1 points at stderr, so a stray print or a child
process cannot corrupt the wire.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import mcp_types as types
from mcp.shared.message import SessionMessage
from mcp_types import ErrorData, JSONRPCError
from mcp_types.jsonrpc import INVALID_REQUEST, PARSE_ERROR
from pydantic import ValidationError

from azure_agent_mcp.server.lifecycle import CallRegistry, ShutdownRequest, loop_scheduler

READ_CHUNK = 65536


def error_for(exc: Exception) -> JSONRPCError:
    if isinstance(exc, ValidationError) and any(e.get("type") == "json_invalid" for e in exc.errors()):
        error = ErrorData(code=PARSE_ERROR, message="Parse error: the line is not valid JSON.")
    else:
        error = ErrorData(code=INVALID_REQUEST, message="Invalid request: the message is not a JSON-RPC 2.0 request, notification or response.")
    return JSONRPCError(jsonrpc="2.0", id=None, error=error)


class _StdFds:
    """Private duplicates of fd 0 and 1; the originals point at the null device and stderr meanwhile."""

    def __init__(self) -> None:
        self.read_fd = os.dup(0)
        self.write_fd = os.dup(1)
        self._saved = (os.dup(0), os.dup(1))
        try:
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            os.dup2(2, 1)
        except OSError:  # pragma: no cover - keep serving on the originals
            pass

    def restore(self) -> None:
        saved_in, saved_out = self._saved
        with suppress(OSError):
            os.dup2(saved_in, 0)
        with suppress(OSError):
            os.dup2(saved_out, 1)
        for fd in (saved_in, saved_out, self.write_fd):
            with suppress(OSError):
                os.close(fd)
        # read_fd stays open: the reader thread may still be blocked on it until the process exits


def _reader(fd: int, deliver: Any) -> None:
    """Daemon thread: bytes from ``fd`` to the loop as lines; None at EOF."""
    pending = b""
    try:
        while True:
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                deliver(line)
    except OSError:
        pass
    if pending.strip():
        deliver(pending)
    deliver(None)


@asynccontextmanager
async def answering_stdio_server(
    registry: CallRegistry | None = None, shutdown: ShutdownRequest | None = None
) -> AsyncIterator[tuple[Any, Any]]:
    """(read stream, write stream) for ``lowlevel.run``; ends the read stream on EOF or shutdown."""
    fds = _StdFds()
    # plain anyio streams: the SDK's dispatcher reads any receive stream (a per-message contextvars
    # snapshot, which its private wrappers add, means nothing here: one task feeds the stream)
    forward, forwarded = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    outgoing, to_write = anyio.create_memory_object_stream[SessionMessage](0)
    inbox_send, inbox = anyio.create_memory_object_stream[bytes | None](math.inf)
    schedule = loop_scheduler()
    stop = anyio.Event()
    second_signal = anyio.Event()
    pump_scope = anyio.CancelScope()
    stop_scope = anyio.CancelScope()

    def deliver(line: bytes | None) -> None:
        schedule(_put, line)

    def _put(line: bytes | None) -> None:
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            inbox_send.send_nowait(line)

    def on_signal(count: int) -> None:
        if count > 1:
            second_signal.set()
        stop.set()

    async def pump() -> None:
        with pump_scope:
            async with forward:
                async for raw in inbox:
                    if raw is None:  # EOF: the client is gone
                        if registry is not None:
                            await registry.cancel_and_settle("stdin-closed")
                        return
                    line = raw.decode("utf-8", errors="replace")
                    if not line.strip():
                        continue
                    try:
                        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                    except Exception as exc:
                        await outgoing.send(SessionMessage(error_for(exc)))
                        continue
                    await forward.send(SessionMessage(message))

    async def on_stop() -> None:
        with stop_scope:
            await stop.wait()
            if registry is not None:
                await registry.drain(second_signal)
            pump_scope.cancel()  # ends the read stream: the session finishes and answers nothing more

    async def writer() -> None:
        broken = False
        async with to_write:
            async for message in to_write:
                if broken:
                    continue  # the client closed its end: keep draining so the session can finish
                data = (message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode("utf-8")
                try:
                    await anyio.to_thread.run_sync(_write_all, fds.write_fd, data)
                except OSError:
                    broken = True

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(writer)
            tasks.start_soon(pump)
            threading.Thread(target=_reader, args=(fds.read_fd, deliver), name="azure-agent-mcp stdin",
                             daemon=True).start()
            with shutdown.watch(on_signal) if shutdown is not None else _nothing():
                tasks.start_soon(on_stop)
                try:
                    yield forwarded, outgoing
                finally:
                    # the session is over (its write stream closed, so the writer finishes what it has)
                    pump_scope.cancel()
                    stop_scope.cancel()
                    outgoing.close()
    finally:
        inbox_send.close()
        fds.restore()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


async def run_stdio(server: Any, shutdown: ShutdownRequest | None = None) -> None:
    lowlevel = server._lowlevel_server
    registry = getattr(server, "calls", None)
    async with answering_stdio_server(registry, shutdown) as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
