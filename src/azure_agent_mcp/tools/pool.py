"""One connection pool for every agent session's SDK clients, with the environment read once.

Sessions differ in their credential, not in where they send: a transport per session's client
left a pool (and, once idle, sockets in CLOSE-WAIT) behind every session. Here all clients share
one ``requests`` session whose lifetime is the server's. A client's ``close()`` closes its
transport, so the transports handed out do not own the session; ``HttpPool.close()`` does.

``requests`` merges the environment into every request (proxy variables scanned from the whole
environment, ``NO_PROXY`` matching, ``~/.netrc``, ``REQUESTS_CA_BUNDLE``). The pool reads the
proxy variables once, when it is built, and decides each host's proxy once (``NO_PROXY`` as
``requests`` would apply it); the session then has ``trust_env = False``. The CA stays pinned by
azure-core's ``connection_verify`` on every request.

No cookie is ever kept: the session is shared by every agent session, and nothing one of them
received may ride along on another's request.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

POOL_HOSTS = 16
"""Hosts whose connections are kept (ARM, the authority, a few vaults)."""
POOL_PER_HOST = 64
"""Connections kept per host: as many as calls run at once, so a busy server does not reconnect."""


@dataclass(frozen=True)
class ProxySettings:
    """The proxy variables as ``requests`` reads them (``getproxies``), taken once."""

    proxies: Mapping[str, str] = field(default_factory=dict)
    no_proxy: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        """Proxies from ``environ`` (default: this process's environment), read as urllib's
        ``getproxies_environment`` (which ``requests`` uses) reads them: any ``*_proxy`` variable, a
        lowercase name winning over its uppercase twin, ``HTTP_PROXY`` ignored under CGI."""
        env = os.environ if environ is None else environ
        found: dict[str, str] = {}
        for name, value in env.items():
            if value and name[-6:].lower() == "_proxy":
                found[name[:-6].lower()] = value
        if "REQUEST_METHOD" in env:
            found.pop("http", None)
        for name, value in env.items():
            if name[-6:] == "_proxy":
                if value:
                    found[name[:-6]] = value
                else:
                    found.pop(name[:-6], None)
        no_proxy = found.pop("no", None)
        return cls(proxies=found, no_proxy=no_proxy)

    def for_url(self, url: str) -> dict[str, str]:
        """The proxies ``requests`` would use for ``url`` (empty: direct)."""
        if not self.proxies:
            return {}
        from requests.utils import should_bypass_proxies

        if self.no_proxy is not None and should_bypass_proxies(url, no_proxy=self.no_proxy):
            return {}
        scheme = urlsplit(url).scheme
        chosen = self.proxies.get(scheme) or self.proxies.get("all")
        return {scheme: chosen} if chosen else {}


class HttpPool:
    """The shared ``requests`` session (pool sized for concurrent calls) and transports over it."""

    def __init__(self, proxies: ProxySettings | None = None, *, hosts: int = POOL_HOSTS,
                 per_host: int = POOL_PER_HOST) -> None:
        self.proxies = proxies if proxies is not None else ProxySettings.from_environment()
        self.session = _shared_session(self.proxies, hosts, per_host)
        self._lock = threading.Lock()
        self.closed = False

    def transport(self, connection_verify: Any = True) -> Any:
        """An azure-core RequestsTransport over the shared session; closing it leaves the session open.

        ``connection_verify`` (a CA bundle path, or True) is sent with every request it carries."""
        from azure.core.pipeline.transport import RequestsTransport

        return RequestsTransport(session=self.session, session_owner=False, use_env_settings=False,
                                 connection_verify=connection_verify)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self.session.close()


def _shared_session(snapshot: ProxySettings, hosts: int, per_host: int) -> Any:
    import http.cookiejar

    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    class PooledSession(requests.Session):
        """A Session that takes its proxies from the snapshot (one decision per host) instead of the environment."""

        def __init__(self) -> None:
            super().__init__()
            self._by_origin: dict[tuple[str, str], dict[str, str]] = {}

        def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if not settings["proxies"] and proxies_in_use:
                parts = urlsplit(url)
                origin = (parts.scheme, parts.netloc)
                chosen = self._by_origin.get(origin)
                if chosen is None:
                    chosen = self._by_origin[origin] = snapshot.for_url(url)
                settings["proxies"] = chosen
            return settings

    proxies_in_use = bool(snapshot.proxies)
    session = PooledSession()
    session.trust_env = False
    session.cookies = requests.cookies.RequestsCookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    # azure-core's own pipeline retries; the adapter must not (nor follow redirects, nor raise on status)
    adapter = HTTPAdapter(pool_connections=hosts, pool_maxsize=per_host,
                          max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
