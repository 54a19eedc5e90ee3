"""The URL a span may carry: no user info, no fragment, and query values only where they cannot be secrets.

Key Vault and Storage put credentials in query strings (SAS ``sig``, ``skoid``, ``skt``...) and
``nextLink`` pages carry opaque ``$skiptoken`` values, so the rule is an allow-list, failing closed:
every parameter keeps its name, and only the values listed here survive; others read ``REDACTED``
(the OpenTelemetry HTTP conventions' spelling).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

KEPT_QUERY_VALUES = frozenset({"api-version", "$top", "$expand", "$select", "maxresults", "comp", "restype", "timeout"})
REDACTED = "REDACTED"
_NAME = re.compile(r"[A-Za-z0-9$._~%-]{1,64}")


def span_url(url: str) -> str:
    """``url`` as a span attribute (``url.full``); string operations only: it runs once per attempt.

    Names and kept values stay as sent (percent-encoded: azure-core sends ``%24top``); a piece
    without ``=`` or whose name is not a plain token reads ``REDACTED`` whole: fail closed.
    """
    url = url.split("#", 1)[0]
    base, _, query = url.partition("?")
    scheme, sep, rest = base.partition("://")
    if sep:
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            authority = authority.rsplit("@", 1)[1]
        base = f"{scheme}://{authority}{slash}{path}"
    if not query:
        return base
    shown = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, eq, value = piece.partition("=")
        if not eq or not _NAME.fullmatch(name):  # a bare piece may be a credential itself
            shown.append(REDACTED)
        elif (unquote(name) if "%" in name else name).lower() in KEPT_QUERY_VALUES:
            shown.append(piece)
        else:
            shown.append(f"{name}={REDACTED}")
    return f"{base}?{'&'.join(shown)}"


def server_address(url: str) -> tuple[str, int | None]:
    """(host, port) for ``server.address`` / ``server.port``; the scheme's default port when none is given."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"https": 443, "http": 80}.get(parts.scheme.lower())
    return parts.hostname or "", port
