"""A stream's outage, told only when it matters: down for longer than a threshold while the
market is open, and then back.

A short reconnect says nothing. An outage that outlasts the target's `stream_down_s` is told
once the market is open (checked again every `poll_s` while it is closed, so an outage that
starts overnight is told at the open); its end is told only if its start was.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from daemon.service.notify.events import EventKind, Stream, StreamDown, StreamRestored
from daemon.service.notify.messages import Message, duration


@dataclass(slots=True)
class _Outage:
    since_s: float
    reason: str
    timer: asyncio.TimerHandle | None = None
    told: bool = False


class StreamWatch:
    """The outages of one target's streams.

    Args:
        threshold_s: how long a stream must be down before it is told.
        market_open: whether the market is open now (the daemon's calendar).
        poll_s: while down past the threshold and the market closed, look again this often.
        emit: takes each message to send (the channel's rate limit and queue).
        wall: the wall clock (UTC ns) the messages are stamped with.
    """

    def __init__(
        self,
        *,
        threshold_s: float,
        market_open: Callable[[], bool],
        poll_s: float,
        emit: Callable[[Message], None],
        wall: Callable[[], int] = time.time_ns,
    ) -> None:
        self.wall = wall
        self.threshold_s = threshold_s
        self.market_open = market_open
        self.poll_s = poll_s
        self.emit = emit
        self._outages: dict[Stream, _Outage] = {}

    def down(self, event: StreamDown) -> None:
        """A stream went down; a repeat while it is down changes nothing."""
        if event.stream in self._outages:
            return
        loop = asyncio.get_running_loop()
        outage = self._outages[event.stream] = _Outage(since_s=loop.time(), reason=event.reason)
        outage.timer = loop.call_later(self.threshold_s, self._check, event.stream)

    def up(self, event: StreamRestored) -> None:
        """A stream is back: told if its outage was."""
        outage = self._outages.pop(event.stream, None)
        if outage is None:
            return
        if outage.timer is not None:
            outage.timer.cancel()
        if outage.told:
            down_s = asyncio.get_running_loop().time() - outage.since_s
            self.emit(
                Message(
                    kind=EventKind.STREAM,
                    event="StreamRestored",
                    text=f"{event.stream} stream back after {duration(down_s)}",
                    data={"stream": event.stream, "down_s": round(down_s, 3)},
                    ts_ns=self.wall(),
                )
            )

    def cancel(self) -> None:
        """Stop every timer (at stop): nothing more is told."""
        for outage in self._outages.values():
            if outage.timer is not None:
                outage.timer.cancel()
        self._outages.clear()

    def _check(self, stream: Stream) -> None:
        outage = self._outages.get(stream)
        if outage is None:
            return
        loop = asyncio.get_running_loop()
        if not self.market_open():
            outage.timer = loop.call_later(self.poll_s, self._check, stream)
            return
        outage.timer = None
        outage.told = True
        down_s = loop.time() - outage.since_s
        reason = f" ({outage.reason})" if outage.reason else ""
        self.emit(
            Message(
                kind=EventKind.STREAM,
                event="StreamDown",
                text=(
                    f"{stream} stream DOWN for {duration(down_s)} while the market is open{reason}"
                ),
                data={"stream": stream, "reason": outage.reason, "down_s": round(down_s, 3)},
                ts_ns=self.wall(),
            )
        )
