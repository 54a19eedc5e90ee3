"""The sandbox's request and response values, and the error bodies each Azure plane speaks.

A deliberately small layer over raw ASGI: the planes are plain functions from ``Request`` to
``Response``, which keeps the hot path free of framework overhead and the handlers easy to test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


class BadRequestBodyError(Exception):
    """The request body is not the JSON (or form) the endpoint needs."""


@dataclass
class Request:
    method: str
    path: str  # percent-decoded path, as received
    query_string: str
    headers: dict[str, str]  # lower-cased names; last value wins
    body: bytes
    client_host: str
    origin: str  # https://127.0.0.1:PORT
    raw_path: str = ""  # the path exactly as it came on the wire (escapes kept)
    _query: dict[str, str] | None = field(default=None, repr=False)
    _form: dict[str, str] | None = field(default=None, repr=False)

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = {k: v for k, v in parse_qsl(self.query_string, keep_blank_values=True)}
        return self._query

    def query_ci(self, name: str) -> str | None:
        """A query parameter by case-insensitive name (ARM treats them so)."""
        lowered = name.lower()
        for key, value in self.query.items():
            if key.lower() == lowered:
                return value
        return None

    @property
    def form(self) -> dict[str, str]:
        if self._form is None:
            try:
                text = self.body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequestBodyError("the form body is not UTF-8") from exc
            self._form = {k: v for k, v in parse_qsl(text, keep_blank_values=True)}
        return self._form

    def json(self) -> Any:
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, ValueError) as exc:  # ValueError: bad JSON, or an int over Python's digit limit
            raise BadRequestBodyError(str(exc)) from exc
        except RecursionError:
            raise BadRequestBodyError("the JSON body is nested too deeply") from None

    @property
    def url(self) -> str:
        return self.origin + self.path + (("?" + self.query_string) if self.query_string else "")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    # What the request log should know beyond status (error code, operation, ...).
    log: dict[str, Any] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None, **log: Any) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    hdrs = [("content-type", "application/json; charset=utf-8")]
    if headers:
        hdrs.extend(headers)
    return Response(status, body, hdrs, dict(log))


def arm_error(status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None, **log: Any) -> Response:
    """ARM's error envelope: ``{"error": {"code", "message"}}``."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers, error_code=code, **log)
