"""A broker without a submit path: tracking an account's positions and P&L, read-only.

`live.mode: track` wraps the account's broker in this. Every fill on the account is followed
(none of its orders are this daemon's), and nothing can be sent: `submit`, `cancel` and
`cancel_open` raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from brokers.base import (
    AccountSnapshot,
    BrokerHealth,
    BrokerNotice,
    LiveBroker,
    PositionSnapshot,
    Reconciliation,
    RestoredOrder,
)
from brokers.orders import CancelOrder, ExecutionEvent, SubmitOrder
from feeds.bar import Bar
from feeds.errors import InvariantViolation


class ReadOnlyBroker:
    """`inner` with every way to send taken away."""

    read_only = True
    shares_account = False  # every order on the account is followed, none is foreign

    def __init__(self, inner: LiveBroker) -> None:
        self.inner = inner

    @property
    def events_ready(self) -> asyncio.Event:
        return self.inner.events_ready

    @property
    def reconciliations(self) -> int:
        return self.inner.reconciliations

    @property
    def last_reconcile(self) -> Reconciliation | None:
        return self.inner.last_reconcile

    @property
    def account(self) -> AccountSnapshot | None:
        return self.inner.account

    @property
    def positions(self) -> dict[str, PositionSnapshot]:
        return self.inner.positions

    @property
    def fatal(self) -> BaseException | None:
        return self.inner.fatal

    def health(self) -> BrokerHealth:
        return self.inner.health()

    def restore(self, orders: Sequence[RestoredOrder]) -> None:
        self.inner.restore(orders)

    async def start(self, *, since_ns: int | None = None) -> None:
        await self.inner.start(since_ns=since_ns)

    def on_bar(self, bar: Bar) -> None:
        self.inner.on_bar(bar)

    def submit(self, command: SubmitOrder) -> None:
        raise InvariantViolation(f"read-only broker: {command.client_order_id} not sent")

    def cancel(self, command: CancelOrder) -> None:
        raise InvariantViolation(f"read-only broker: {command.client_order_id} not cancelled")

    def poll_events(self) -> list[ExecutionEvent]:
        return self.inner.poll_events()

    def poll_notices(self) -> list[BrokerNotice]:
        return self.inner.poll_notices()

    async def drain(self, timeout_s: float) -> bool:
        return await self.inner.drain(timeout_s)

    async def cancel_open(self, ours: Callable[[str], bool]) -> list[str]:
        raise InvariantViolation("read-only broker: nothing is cancelled")

    async def close(self) -> None:
        await self.inner.close()
