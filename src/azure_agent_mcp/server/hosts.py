"""Which Host and Origin headers the HTTP transport answers: DNS-rebinding protection on every bind.

A browser page on ``evil.example`` that makes its name resolve to 127.0.0.1 can reach a loopback
server, but its requests still say ``Host: evil.example`` (and ``Origin: http://evil.example``).
The MCP SDK checks those headers only when the bind is one of its three default hosts; this
derives the lists from whatever address the server really binds, so 127.0.0.2 or ::1 are held
to the same rule. Other names are admitted only when the operator names them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from azure_agent_mcp.netaddr import is_loopback


_HAS_PORT = re.compile(r"(^[^:\[\]]+|\])(:\d+)$")


@dataclass(frozen=True)
class AllowedPeers:
    hosts: tuple[str, ...]
    origins: tuple[str, ...]


def _authority(host: str, port: int) -> str:
    bare = host.strip("[]")
    try:
        is_v6 = ipaddress.ip_address(bare).version == 6
    except ValueError:
        is_v6 = False
    return f"[{bare}]:{port}" if is_v6 else f"{bare.lower()}:{port}"


def allowed_peers(bind: str, port: int, extra_hosts: tuple[str, ...] = (), extra_origins: tuple[str, ...] = ()) -> AllowedPeers:
    """Host values (``host:port``) and origins for a server bound to ``bind``:``port``.

    A loopback bind also answers to ``localhost`` (what clients type); a wildcard bind
    (0.0.0.0, ::) answers only to the names given with ``--allow-host``.
    """
    names: list[str] = []
    if bind.strip("[]") not in ("0.0.0.0", "::"):
        names.append(_authority(bind, port))
    if is_loopback(bind):
        names.append(f"localhost:{port}")
    names.extend(extra.lower() if _HAS_PORT.search(extra) else _authority(extra, port) for extra in extra_hosts)
    if port == 80:  # clients leave the default port out of Host
        names.extend([name.rsplit(":", 1)[0] for name in names])
    hosts = tuple(dict.fromkeys(names))
    origins = tuple(dict.fromkeys([*(f"http://{h}" for h in hosts), *(o.rstrip("/") for o in extra_origins)]))
    return AllowedPeers(hosts, origins)
