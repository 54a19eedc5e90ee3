"""Every Azure request names the tool call it belongs to, so a call can be found in the Activity Log.

ARM records ``x-ms-correlation-request-id`` with every operation. One id per MCP tool call (from the
call scope the server opens) ties together the pages, polls and retries of that call; a request
made outside any call still gets an id of its own. A per-call policy: retries keep the same id.
"""

from __future__ import annotations

import uuid
from typing import Any

from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from azure_agent_mcp.callcontext import current_call

CORRELATION_HEADER = "x-ms-correlation-request-id"


class CorrelationPolicy(SansIOHTTPPolicy[Any, Any]):
    """Sets ``x-ms-correlation-request-id`` from ``current_call()`` and nothing else."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        headers = request.http_request.headers
        call = current_call()
        if call is not None:
            headers[CORRELATION_HEADER] = call.correlation_id
        elif not headers.get(CORRELATION_HEADER):
            headers[CORRELATION_HEADER] = str(uuid.uuid4())
