"""Outbox: where an adapter's parts leave execution events and notices for the daemon to poll.

One per adapter, shared by its parts (the order tracker, the reconciler, the sender), so that
events keep the order they happened in whichever part emitted them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from brokers.base import BrokerNotice, NoticeLevel
from brokers.orders import ExecutionEvent


class Outbox:
    """Events and notices in order, and the wake-up (`ready`) that says some wait."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self._events: list[ExecutionEvent] = []
        self._notices: list[BrokerNotice] = []

    def emit(self, event: ExecutionEvent) -> None:
        """Queue one execution event and wake the daemon."""
        self._events.append(event)
        self.ready.set()

    def notice(self, level: NoticeLevel, event: str, **fields: Any) -> None:
        """Queue one notice; a notice is worth a wake-up too (the daemon logs it now)."""
        self._notices.append(BrokerNotice(level=level, event=event, fields=fields))
        self.ready.set()

    def take_events(self) -> list[ExecutionEvent]:
        """The events queued since the last call, in order; clears `ready`."""
        events, self._events = self._events, []
        self.ready.clear()
        return events

    def take_notices(self) -> list[BrokerNotice]:
        """The notices queued since the last call, in order."""
        notices, self._notices = self._notices, []
        return notices
