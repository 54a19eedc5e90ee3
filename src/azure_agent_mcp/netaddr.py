"""Is this host this machine? One answer for every place that must refuse to leave loopback."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str | None) -> bool:
    """True for loopback names and addresses (``127.0.0.0/8``, ``::1``, bracketed or not)."""
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
