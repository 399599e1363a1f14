"""Fault injection for the restart drills.

``$TRADINGD_CRASH_AT=POINT[:N]`` makes the process kill itself with SIGKILL (as ``kill -9``) the
N-th time it reaches POINT: after an intent is journaled, after an order was acknowledged, after
a fill, or in the middle of a slice's sends. Unset, it costs one comparison per point.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

from daemon.logs import EventLog
from feeds.errors import ConfigError

CRASH_ENV = "TRADINGD_CRASH_AT"
CRASH_POINTS = frozenset({"after_intent", "after_send", "after_fill", "mid_slice"})


class CrashPoints:
    """Where the drill wants the process to die, and how many visits are left before it does."""

    def __init__(self, env: Mapping[str, str], log: EventLog) -> None:
        self.log = log
        self.point: str | None = None
        self.left = 0
        text = env.get(CRASH_ENV, "")
        if not text:
            return
        point, _, count = text.partition(":")
        if point not in CRASH_POINTS or (count and not count.isdigit()):
            raise ConfigError(f"{CRASH_ENV}={text!r}: expected one of {sorted(CRASH_POINTS)}[:N]")
        self.point, self.left = point, int(count or 1)

    def reached(self, point: str) -> None:
        """The daemon is at `point`: die here if this is the visit the drill asked for."""
        if point != self.point:
            return
        self.left -= 1
        if self.left <= 0:
            self.log.warning("crash_injected", point=point)
            os.kill(os.getpid(), signal.SIGKILL)
