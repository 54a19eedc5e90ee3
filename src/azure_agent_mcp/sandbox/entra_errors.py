"""What every part of the sandbox's token service shares: the AAD error type and its wire shape.

It sits below ``entra`` and the grant modules (``agent_grants``, ``entra_authorize``,
``entra_obo``) so each can raise the same error without importing the router back.
"""

from __future__ import annotations

import base64
import datetime
import json
import uuid
from typing import Any

from azure_agent_mcp.sandbox.protocol import Request, Response, json_response

JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class AadError(Exception):
    """An AAD error answer: HTTP status, OAuth error, AADSTS code, description.

    ``extra`` carries the fields some answers add to the body (``suberror``, ``claims``).
    """

    def __init__(self, status: int, error: str, code: int, description: str,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description
        self.extra = dict(extra or {})


def error_body(origin: str, request: Request, exc: AadError) -> dict[str, Any]:
    """Entra's error body: the description starts with ``AADSTS<code>:`` and ends with the trace ids."""
    correlation = (request.headers.get("x-ms-correlation-request-id")
                   or request.headers.get("client-request-id") or str(uuid.uuid4()))
    trace = str(uuid.uuid4())
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": exc.error,
        "error_description": f"AADSTS{exc.code}: {exc.description} Trace ID: {trace} Correlation ID: "
                             f"{correlation} Timestamp: {stamp}",
        "error_codes": [exc.code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"{origin}/error?code={exc.code}",
    }
    body.update(exc.extra)
    return body


def error_response(origin: str, request: Request, exc: AadError) -> Response:
    return json_response(exc.status, error_body(origin, request, exc), error_code=exc.error, aadsts=exc.code)


def unverified_header(token: str) -> dict[str, Any]:
    """A JWT's header, unverified: tells a sandbox-issued assertion (our ``kid``) from a certificate-signed one."""
    try:
        header = token.split(".")[0]
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (IndexError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}
