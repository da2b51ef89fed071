"""sd_notify without a dependency: readiness and watchdog pings for `Type=notify` units.

Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.
"""

from __future__ import annotations

import os
import socket

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"


def notify(state: str) -> bool:
    """Send one state line ("READY=1", "WATCHDOG=1", "STOPPING=1"); True if it was sent."""
    address = os.environ.get(NOTIFY_SOCKET_ENV)
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True
