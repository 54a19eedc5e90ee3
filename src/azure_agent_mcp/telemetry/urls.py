"""The URL a span may carry: no user info, no fragment, and query values only where they cannot be secrets.

Key Vault and Storage put credentials in query strings (SAS ``sig``, ``skoid``, ``skt``...) and
``nextLink`` pages carry opaque ``$skiptoken`` values, so the rule is an allow-list, failing closed:
every parameter keeps its name, and only the values listed here survive; others read ``REDACTED``
(the OpenTelemetry HTTP conventions' spelling).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

KEPT_QUERY_VALUES = frozenset({"api-version", "$top", "$expand", "$select", "maxresults", "comp", "restype", "timeout"})
REDACTED = "REDACTED"


def span_url(url: str) -> str:
    """``url`` as a span attribute (``url.full``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    query = "&".join(
        f"{quote(name, safe='$-._~')}={quote(value, safe='-._~') if name.lower() in KEPT_QUERY_VALUES else REDACTED}"
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


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
