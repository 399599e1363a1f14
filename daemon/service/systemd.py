"""systemd's notify protocol (`Type=notify`): READY=1, WATCHDOG=1, STOPPING=1, STATUS=...

A datagram to the unix socket named by $NOTIFY_SOCKET (a path, or an abstract name starting
with "@"). Without that variable (not under systemd) every call does nothing. A few lines of
socket code, so no dependency on python-systemd.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Mapping

from daemon.timeutil import ticks


class Notifier:
    """Tells systemd how the daemon is doing.

    Args:
        env: the process environment; $NOTIFY_SOCKET and $WATCHDOG_USEC are read from it.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        # Ping at half the watchdog period, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval_s: float | None = (
            int(usec) / 2_000_000 if usec.isdigit() and int(usec) > 0 else None
        )

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send `lines` (e.g. "READY=1", "STATUS=trading"); False when not under systemd or the
        socket is gone (systemd's view of us is then stale, not our problem to crash on)."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(lines).encode())
        except OSError:
            return False
        return True

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    async def watchdog(
        self,
        healthy: Callable[[], bool],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Ping WATCHDOG=1 every half period while `healthy()` is true (runs until cancelled).

        A stalled event loop stops the pings, and systemd restarts the daemon.
        """
        interval = self.watchdog_interval_s
        if interval is None or self.address is None:
            return
        if healthy():
            self.notify("WATCHDOG=1")
        async for _ in ticks(interval, sleep=sleep):
            if healthy():
                self.notify("WATCHDOG=1")
