"""One target's way out: its switches, rate limit and stream watch, a bounded queue, and one
worker task that sends the queue in order, retrying with backoff.

`offer` is synchronous and cheap (a few dict and deque operations): the daemon calls it from
its decision path and never waits on the network. The worker is the only code that awaits a
request; a target that hangs holds up only its own queue, which then drops its oldest.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from daemon.logs import EventLog
from daemon.service.notify.apis import Api, Reply
from daemon.service.notify.counters import NotifyCounters
from daemon.service.notify.events import EventKind, NotifyEvent, StreamDown, StreamRestored
from daemon.service.notify.messages import Message
from daemon.service.notify.redact import Redactor
from daemon.service.notify.settings import TargetSettings
from daemon.service.notify.throttle import Throttle
from daemon.service.notify.watch import StreamWatch

if TYPE_CHECKING:  # aiohttp is imported when the notifier starts, not with the settings
    import aiohttp

_MAX_BODY = 64 * 1024  # an answer's body read for its meaning; the rest is not needed


class Channel:
    """Delivers messages to one target.

    Args:
        name: the target's name (logs, metrics).
        api: how to talk to it.
        settings: its switches, limits and retry policy.
        market_open: whether the market is open now (for stream outages).
        market_poll_s: how often a stream outage looks again at a closed market.
        sleep, jitter: the backoff's wait and its random factor in [0, 1) (tests pin them).
        wall: the wall clock (UTC ns) summaries and outages are stamped with.
    """

    def __init__(
        self,
        *,
        name: str,
        api: Api,
        settings: TargetSettings,
        log: EventLog,
        counters: NotifyCounters,
        market_open: Callable[[], bool],
        market_poll_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        wall: Callable[[], int] = time.time_ns,
    ) -> None:
        self.name = name
        self.api = api
        self.settings = settings
        self.log = log
        self.counters = counters
        self.redact = Redactor(api.secrets)
        self.throttle = Throttle(settings.rate_limit)
        self.watch = StreamWatch(
            threshold_s=settings.stream_down_s,
            market_open=market_open,
            poll_s=market_poll_s,
            emit=self._admit,
            wall=wall,
        )
        self._wall = wall
        self._sleep = sleep
        self._jitter = jitter
        self._queue: deque[Message] = deque()
        self._dropped = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._windows: dict[EventKind, asyncio.TimerHandle] = {}

    @property
    def queued(self) -> int:
        return len(self._queue)

    def offer(self, event: NotifyEvent, message: Message) -> None:
        """Take an event (already rendered) if this target wants its kind. Never blocks."""
        if not self.settings.events.on(message.kind):
            return
        match event:
            case StreamDown():
                self.watch.down(event)
            case StreamRestored():
                self.watch.up(event)
            case _:
                self._admit(message)

    def _admit(self, message: Message) -> None:
        """Through the rate limit into the queue."""
        loop = asyncio.get_running_loop()
        admission = self.throttle.admit(message, loop.time())
        if admission.opened:
            window_s = self.settings.rate_limit.window_s
            self._windows[message.kind] = loop.call_later(window_s, self._close, message.kind)
        if admission.send:
            self.enqueue(message)
        else:
            self.counters.count("suppressed", self.name)

    def _close(self, kind: EventKind) -> None:
        self._windows.pop(kind, None)
        summary = self.throttle.close(kind, asyncio.get_running_loop().time(), self._wall())
        if summary is not None:
            self.enqueue(summary)

    def enqueue(self, message: Message) -> None:
        """Queue `message`; a full queue drops its oldest (counted, and said in the next)."""
        if len(self._queue) >= self.settings.queue_size:
            self._queue.popleft()
            self.counters.count("dropped", self.name)
            if self._dropped == 0:
                self.log.warning(
                    "notification_dropped",
                    target=self.name,
                    queue_size=self.settings.queue_size,
                )
            self._dropped += 1
        self._queue.append(message)
        self._idle.clear()
        self._wake.set()

    def wind_down(self) -> None:
        """At stop: cancel the stream timers, and queue the summaries of open windows."""
        self.watch.cancel()
        for timer in self._windows.values():
            timer.cancel()
        self._windows.clear()
        for summary in self.throttle.close_all(asyncio.get_running_loop().time(), self._wall()):
            self.enqueue(summary)

    async def idle(self) -> None:
        """Wait until the queue is empty and nothing is being sent."""
        await self._idle.wait()

    async def run(self, session: aiohttp.ClientSession) -> None:
        """The worker: send the queue in order, forever (cancelled at stop)."""
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            message = self._queue.popleft()
            if self._dropped:
                message = message.with_prefix(
                    f"({self._dropped} earlier notifications were dropped: the queue was full)"
                )
                self._dropped = 0
            try:
                reply = await self.deliver(session, message, self.settings.max_attempts)
            except Exception as e:  # a notifier's bug must not stop the trading
                reply = Reply(ok=False, error=f"{type(e).__name__}: {self.redact(str(e))}")
            if reply.ok:
                self.counters.count("sent", self.name)
                self.log.debug("notification_sent", target=self.name, kind=message.kind.value)
            else:
                self.counters.count("failed", self.name)
                self.log.error(
                    "notification_failed",
                    target=self.name,
                    kind=message.kind.value,
                    error=self.redact(reply.error),
                )

    async def deliver(
        self, session: aiohttp.ClientSession, message: Message, attempts: int
    ) -> Reply:
        """Send `message`, trying up to `attempts` times; the last reply."""
        reply = Reply(ok=False, error="not tried")
        for attempt in range(1, attempts + 1):
            reply = await self.attempt(session, message)
            if reply.ok or not reply.retryable or attempt == attempts:
                return reply
            wait_s = self._backoff_s(attempt, reply)
            if wait_s is None:
                return Reply(
                    ok=False,
                    error=f"{reply.error} (asked to wait {reply.retry_after_s:.0f} s, over "
                    f"max_retry_after_s {self.settings.max_retry_after_s:g})",
                )
            self.log.warning(
                "notification_retry",
                target=self.name,
                kind=message.kind.value,
                attempt=attempt,
                wait_s=round(wait_s, 3),
                error=self.redact(reply.error),
            )
            await self._sleep(wait_s)
        return reply

    def _backoff_s(self, attempt: int, reply: Reply) -> float | None:
        """The wait before the next try: what the service asked, else exponential with
        jitter; None when the service asks for more than we hold a queue for."""
        s = self.settings
        if reply.retry_after_s is not None:
            return None if reply.retry_after_s > s.max_retry_after_s else reply.retry_after_s
        ceiling = min(s.backoff_max_s, s.backoff_min_s * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self._jitter())

    async def attempt(self, session: aiohttp.ClientSession, message: Message) -> Reply:
        """One POST, within the target's timeout."""
        import aiohttp

        request = self.api.request(message)
        try:
            async with session.post(
                request.url,
                json=request.json,
                headers=request.headers,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                allow_redirects=False,
            ) as response:
                body = await response.content.read(_MAX_BODY)
                return self.api.reply(response.status, response.headers, body)
        except TimeoutError:
            return Reply(
                ok=False, retryable=True, error=f"no answer within {self.settings.timeout_s:g} s"
            )
        except aiohttp.ClientError as e:
            error = f"{type(e).__name__}: {self.redact(str(e))}"
            return Reply(ok=False, retryable=True, error=error)
