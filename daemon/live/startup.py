"""A start-up that a stop request interrupts, at whatever stage it is."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def start_unless_stopped(start: Coroutine[Any, Any, None], stopping: asyncio.Event) -> bool:
    """Run `start` until it returns or `stopping` is set, whichever comes first.

    A stop (SIGINT/SIGTERM) during a long start-up (a reconciliation of thousands of orders, a
    warm-up) cancels it there, so the shutdown that follows keeps its deadline.

    Returns:
        True when the start-up finished and no stop is requested; False when it was cancelled
        (or finished with a stop requested).

    Raises:
        What the start-up raised.
    """
    task = asyncio.create_task(start, name="start")
    stop = asyncio.create_task(stopping.wait(), name="start-stop")
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    task.result()
    return not stopping.is_set()
