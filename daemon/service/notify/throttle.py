"""Repeated events of one kind, held back and summarized.

A window opens at the first event of a kind. The first `burst` events of the window go out at
once; the rest are counted, and when the window closes one summary goes out instead of them:
`... and 12 more order rejections in the last 5 minutes; the last: <its text>`. The last one's
text is kept because it is the freshest state (the stream that came back, the latest
rejection). The next event after a close opens a new window.

Pure bookkeeping: the channel owns the timer that closes a window.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.service.notify.events import EventKind
from daemon.service.notify.messages import NOUNS, Message, duration
from daemon.service.notify.settings import RateLimit


@dataclass(slots=True)
class _Window:
    opened_s: float
    sent: int = 0
    held: int = 0
    last: Message | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    """What to do with one message.

    Attributes:
        send: send it now (else it is held for the summary).
        opened: it opened a window: close it `window_s` from now.
    """

    send: bool
    opened: bool


class Throttle:
    """The rate limit of one target, per kind of event."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._windows: dict[EventKind, _Window] = {}

    def admit(self, message: Message, now_s: float) -> Admission:
        """Count `message` in its kind's window; say whether it goes out now."""
        window = self._windows.get(message.kind)
        opened = window is None
        if window is None:
            window = self._windows[message.kind] = _Window(opened_s=now_s)
        if window.sent < self.limit.burst:
            window.sent += 1
            return Admission(send=True, opened=opened)
        window.held += 1
        window.last = message
        return Admission(send=False, opened=opened)

    def close(self, kind: EventKind, now_s: float, wall_ns: int = 0) -> Message | None:
        """End the window of `kind` at `now_s` (monotonic; `wall_ns` the wall clock): its
        summary, if anything was held back."""
        window = self._windows.pop(kind, None)
        if window is None or window.held == 0 or window.last is None:
            return None
        span = duration(max(now_s - window.opened_s, 0.0))
        return Message(
            kind=kind,
            event="Summary",
            text=(
                f"... and {window.held} more {NOUNS[kind]} in the last {span}; the last: "
                f"{window.last.text}"
            ),
            data={
                "held": window.held,
                "window_s": round(now_s - window.opened_s, 3),
                "last": {"event": window.last.event, "text": window.last.text},
            },
            ts_ns=wall_ns,
        )

    def close_all(self, now_s: float, wall_ns: int = 0) -> list[Message]:
        """End every window (at stop): the summaries due."""
        summaries = [self.close(kind, now_s, wall_ns) for kind in list(self._windows)]
        return [s for s in summaries if s is not None]
