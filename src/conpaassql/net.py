"""Facts about network addresses that every layer asks (cloud drivers, the agent,
the manager, and through ``rpc.endpoint`` the front-ends)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ``::1``, bracketed or not) or
    ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
