"""The live daemon's tasks, and loud failures: a bug in one of them stops the daemon, and says so.

A `TradingdError` is a condition the daemon knows (refused keys, a feed the plan lacks): it
stops with its one-line message. Anything else is a bug: it is logged at error level with its
traceback (one JSON line), counted in `tradingd_task_failures_total{task=...}`, and the daemon
stops with exit code 1 so that systemd restarts it (`Restart=always`; exit 2, a user's mistake,
is not restarted). Errors gathered from the tasks at the stop are logged the same way.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from daemon.live.loop import Fatal
from daemon.logs import EventLog
from daemon.service.telemetry import Telemetry
from feeds.errors import TradingdError

# Tasks that end by design; any other that ends means the daemon is not healthy.
_ONE_SHOT_TASKS = frozenset({"backfill"})

EXIT_TASK_FAILED = 1
"""The exit code of a daemon stopped by a bug in one of its tasks (systemd restarts it)."""


def error_fields(error: BaseException) -> dict[str, str]:
    """The error's type, message and full traceback, as log fields."""
    kind = type(error)
    return {
        "error_type": f"{kind.__module__}.{kind.__qualname__}",
        "error": str(error),
        "traceback": "".join(traceback.format_exception(error)),
    }


class TaskFailures:
    """Reports the unexpected errors of the daemon's tasks: each once, logged and counted."""

    def __init__(self, *, log: EventLog, telemetry: Telemetry) -> None:
        self.log = log
        self.telemetry = telemetry
        self.reported: list[tuple[str, BaseException]] = []

    def report(self, task: str, error: BaseException, *, action: str) -> None:
        """Log `error` (with its traceback) at error level and count it, once per error."""
        if any(seen is error for _, seen in self.reported):
            return
        self.reported.append((task, error))
        self.telemetry.task_failed(task)
        self.log.error("task_failed", task=task, action=action, **error_fields(error))

    def gathered(self, results: Iterable[tuple[str, BaseException | None]]) -> None:
        """What the tasks ended with at the stop: every error not reported yet is logged.

        A `TradingdError` there was already the stop's reason (or a known condition): it is
        logged with its message only; cancellations are the stop itself.
        """
        for task, error in results:
            if error is None or isinstance(error, asyncio.CancelledError):
                continue
            if isinstance(error, TradingdError):
                self.log.warning("task_ended_with_error", task=task, error=str(error))
            else:
                self.report(task, error, action="found at the stop")


class DaemonTasks:
    """The tasks the daemon owns: a failure posts `Fatal` (the engine loop raises it and the
    daemon stops); at the stop all are cancelled and what they ended with is logged.

    Args:
        post: hands a `Fatal` to the engine loop.
    """

    def __init__(self, failures: TaskFailures, post: Callable[[Fatal], None]) -> None:
        self.failures = failures
        self._post = post
        self._tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Start a task named `name` (the failure metric's label)."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._done)
        self._tasks.append(task)

    def _done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._post(Fatal(error, task.get_name()))

    def alive(self) -> bool:
        """Every long-running task is still running (none died)."""
        return not any(t.done() for t in self._tasks if t.get_name() not in _ONE_SHOT_TASKS)

    async def stop(self) -> None:
        """Cancel every task and wait for them; log the errors they ended with."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        self.failures.gathered(
            (t.get_name(), r if isinstance(r, BaseException) else None)
            for t, r in zip(tasks, results, strict=True)
        )


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
