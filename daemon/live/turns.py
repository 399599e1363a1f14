"""Long work on the event loop's thread, done in turns of a few milliseconds.

A timer due during a turn fires two to three turns later: its wake-up and its task's step each
wait for the loop's next pass, behind the working task's own next step. Turns of 1.5 to 2 ms
(plus a slice's decision of ~4 ms at 500 symbols inside one) keep the loop's lag under ~10 ms.
"""

from __future__ import annotations

import asyncio
import time

WARM_UP_S = 0.0015  # the warm-up's turns (bars fed, minutes aggregated, bars freed)
INPUT_S = 0.002  # the engine task's turns of queued inputs and backfilled bars


class Turn:
    """A turn of `seconds` from now: `over()` once it is spent."""

    __slots__ = ("_ends", "_seconds")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._ends = time.perf_counter() + seconds

    def over(self) -> bool:
        return time.perf_counter() > self._ends

    async def next(self) -> None:
        """Let the event loop run, then start the next turn."""
        await asyncio.sleep(0)
        self._ends = time.perf_counter() + self._seconds
