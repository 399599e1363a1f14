"""`Notifications`: the daemon's one handle on telling its owner what happens.

    notifications = build_notifications(settings, os.environ, log)   # ConfigError if unset
    await notifications.start()
    notifications.notify(DaemonStarted(mode="paper"))   # returns at once, never raises
    ...
    await notifications.stop()                          # sends what is queued, within a deadline

`notify` renders the event once and offers it to every target's channel; each channel's own
worker task sends it. Nothing the targets do (hang, refuse, rate-limit) reaches the caller:
failures are logged and counted (`counters`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from daemon.logs import EventLog
from daemon.service.notify.channel import Channel
from daemon.service.notify.counters import NotifyCounters
from daemon.service.notify.events import NotifyEvent, Probe
from daemon.service.notify.messages import render

if TYPE_CHECKING:
    import aiohttp


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """One target's answer to `send_test`: delivered, or the error (secrets redacted)."""

    ok: bool
    error: str | None = None


class Notifications:
    """Sends the daemon's events to every configured target, without ever waiting on one.

    Args:
        channels: one per target (`build_notifications` makes them from the settings).
        counters: the counts the channels keep (shared with them).
        stop_deadline_s: how long `stop` lets the queues drain.
        wall: the wall clock (UTC ns) messages are stamped with.
    """

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        log: EventLog,
        counters: NotifyCounters,
        stop_deadline_s: float = 5.0,
        wall: Callable[[], int] = time.time_ns,
    ) -> None:
        self.wall = wall
        self.channels = list(channels)
        self.log = log
        self.counters = counters
        self.stop_deadline_s = stop_deadline_s
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def targets(self) -> list[str]:
        """The targets' names, in configuration order."""
        return [c.name for c in self.channels]

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def notify(self, event: NotifyEvent) -> None:
        """Tell every target that wants it about `event`. Returns at once; call it on the
        event loop's thread. Before `start`, messages wait in the queues."""
        if not self.channels:
            return
        try:
            message = render(event, self.wall())
            for channel in self.channels:
                channel.offer(event, message)
        except Exception as e:  # a notifier's bug must not stop the trading
            self.log.error("notification_error", event_type=type(event).__name__, error=repr(e))

    async def start(self) -> None:
        """Open the HTTP client and start one worker per target."""
        if self._tasks or not self.channels:
            return
        import aiohttp

        self._session = aiohttp.ClientSession()
        session = self._session
        self._tasks = [
            asyncio.create_task(c.run(session), name=f"notify:{c.name}") for c in self.channels
        ]
        for task in self._tasks:
            task.add_done_callback(self._reap)

    async def stop(self, deadline_s: float | None = None) -> None:
        """Send what is queued (rate-limit summaries included) within the deadline, then stop
        the workers and close the client. Messages still queued are counted as dropped."""
        deadline = self.stop_deadline_s if deadline_s is None else deadline_s
        for channel in self.channels:
            channel.wind_down()
        if self._tasks:
            idle = asyncio.gather(*(c.idle() for c in self.channels))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(idle, deadline)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # reaped by _reap
        self._tasks = []
        for channel in self.channels:
            if channel.queued:
                self.counters.count("dropped", channel.name, channel.queued)
                self.log.warning("notifications_unsent", target=channel.name, count=channel.queued)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _reap(self, task: asyncio.Task[None]) -> None:
        """A worker ends only when cancelled; any other end is a bug, logged when it happens
        (the daemon trades on: that target is silent until a restart)."""
        if not task.cancelled() and task.exception() is not None:
            self.log.error(
                "notification_worker_died", task=task.get_name(), error=repr(task.exception())
            )

    async def send_test(self, text: str | None = None) -> dict[str, SendResult]:
        """One message to every target at once (whatever its switches), one try each within
        its timeout: target name -> delivered or the error. Not counted in `counters`."""
        import aiohttp

        message = render(Probe() if text is None else Probe(text=text), self.wall())
        own = self._session is None
        session = aiohttp.ClientSession() if self._session is None else self._session
        try:
            replies = await asyncio.gather(
                *(c.deliver(session, message, attempts=1) for c in self.channels)
            )
        finally:
            if own:
                await session.close()
        return {
            c.name: SendResult(ok=r.ok, error=None if r.ok else c.redact(r.error))
            for c, r in zip(self.channels, replies, strict=True)
        }

    async def __aenter__(self) -> Notifications:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
