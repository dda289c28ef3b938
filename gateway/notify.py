"""The systemd notify protocol, by hand: one datagram per message to $NOTIFY_SOCKET.

With `Type=notify` systemd counts the unit as started only when READY=1
arrives, shows the STATUS= line in `systemctl status`, and with
`WatchdogSec=` restarts a daemon whose WATCHDOG=1 pings stop. The protocol
is a few lines of socket code (sd_notify(3)); a dependency for it would be
larger than this module, and the daemon must not need libsystemd.

Outside systemd (no $NOTIFY_SOCKET) every call does nothing. A send that
fails (systemd restarted its manager, the socket went away) is logged once
and otherwise ignored: notifying must never stop the daemon.

Any thread may call `Notifier.send`; the socket is guarded by the notifier's lock.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Where the daemon tells its service manager how it is doing."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is a socket in the abstract namespace (a leading NUL byte).
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._warned = False
        self.watchdog_s = _watchdog_s(env)

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> None:
        """Send one message of KEY=value lines (READY=1, STATUS=..., WATCHDOG=1)."""
        if not self._address:
            return
        message = "\n".join(line.replace("\n", " ") for line in lines).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.sendto(message, self._address)
            except OSError as exc:
                if not self._warned:
                    log.warning("cannot notify the service manager (%s): %s", self._address, exc)
                    self._warned = True

    def ready(self, status: str) -> None:
        """Calls are served: systemd counts the unit as started."""
        self.send("READY=1", f"STATUS={status}")

    def stopping(self, status: str) -> None:
        """The drain begins: systemd shows the unit as deactivating."""
        self.send("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _watchdog_s(env: Mapping[str, str]) -> float | None:
    """The watchdog timeout systemd set for this process (sd_watchdog_enabled(3)), if any."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1e6
