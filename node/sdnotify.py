"""systemd's readiness protocol (sd_notify), without libsystemd.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for an
abstract socket) and waits for a ``READY=1`` datagram before it calls the service
started. ``hashfed serve`` sends it once its port is bound, and ``STOPPING=1`` when
it begins to shut down. Outside systemd (no ``NOTIFY_SOCKET``) nothing is sent.
"""

from __future__ import annotations

import os
import socket


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Sends state (e.g. ``READY=1``) to systemd; returns whether there was anyone to tell.

    An unreachable socket is reported as False, never raised: readiness is a courtesy
    to the service manager, and serving must not fail for it.
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(target)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True
