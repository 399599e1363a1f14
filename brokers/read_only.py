"""ReadOnlyBroker: the track mode, any LiveBroker with its submit path taken away.

Tracking follows an account without trading it: every fill on the account (a person's, another
program's) is reported as the inner adapter reports it, and every call that would send an
order raises InvariantViolation. Being a wrapper, not a flag inside each adapter, it cannot be
forgotten by one of them.
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

_REFUSAL = "track mode never sends orders"


class ReadOnlyBroker:
    """A `brokers.base.LiveBroker` that delegates everything to `inner` but sending.

    `submit`, `cancel` and `cancel_open` raise InvariantViolation("track mode never sends
    orders") and reach nothing. `shares_account` is False: tracking owns no orders, so every
    order on the account is followed as its own, not set apart as someone else's.
    """

    def __init__(self, inner: LiveBroker) -> None:
        self._inner = inner

    @property
    def inner(self) -> LiveBroker:
        """The adapter being tracked through."""
        return self._inner

    @property
    def events_ready(self) -> asyncio.Event:
        """The inner adapter's wake-up."""
        return self._inner.events_ready

    @property
    def reconciliations(self) -> int:
        """The inner adapter's count of reconciliations."""
        return self._inner.reconciliations

    @property
    def last_reconcile(self) -> Reconciliation | None:
        """What the inner adapter's last reconciliation found."""
        return self._inner.last_reconcile

    @property
    def read_only(self) -> bool:
        """True: no submit path."""
        return True

    @property
    def shares_account(self) -> bool:
        """False: every order on the account is followed."""
        return False

    @property
    def account(self) -> AccountSnapshot | None:
        """The account at the inner adapter's last reconciliation."""
        return self._inner.account

    @property
    def positions(self) -> dict[str, PositionSnapshot]:
        """Positions at the inner adapter's last reconciliation."""
        return self._inner.positions

    @property
    def fatal(self) -> BaseException | None:
        """The error that stopped the inner adapter, if one did."""
        return self._inner.fatal

    def health(self) -> BrokerHealth:
        """The inner adapter's health."""
        return self._inner.health()

    # -- refused -------------------------------------------------------------------------------

    def submit(self, command: SubmitOrder) -> None:
        """Raises InvariantViolation: tracking never sends an order."""
        raise InvariantViolation(f"{_REFUSAL} (submit {command.client_order_id})")

    def cancel(self, command: CancelOrder) -> None:
        """Raises InvariantViolation: tracking never cancels an order."""
        raise InvariantViolation(f"{_REFUSAL} (cancel {command.client_order_id})")

    async def cancel_open(self, ours: Callable[[str], bool]) -> list[str]:
        """Raises InvariantViolation: tracking never cancels an order."""
        raise InvariantViolation(f"{_REFUSAL} (cancel of the open orders)")

    def limit_age(self, max_age_s: float, market_now: Callable[[], int]) -> None:
        """Nothing to limit: nothing is ever sent."""

    def withdraw_unsent(self, reason: str) -> int:
        """0: nothing is ever sent."""
        return 0

    # -- delegated -----------------------------------------------------------------------------

    def restore(self, orders: Sequence[RestoredOrder]) -> None:
        """The inner adapter's `restore`."""
        self._inner.restore(orders)

    async def start(self, *, since_ns: int | None = None) -> None:
        """The inner adapter's `start`."""
        await self._inner.start(since_ns=since_ns)

    def on_bar(self, bar: Bar) -> None:
        """The inner adapter's `on_bar`."""
        self._inner.on_bar(bar)

    def poll_events(self) -> list[ExecutionEvent]:
        """The inner adapter's events."""
        return self._inner.poll_events()

    def poll_notices(self) -> list[BrokerNotice]:
        """The inner adapter's notices."""
        return self._inner.poll_notices()

    async def drain(self, timeout_s: float) -> bool:
        """The inner adapter's `drain` (nothing of this wrapper's is ever in flight)."""
        return await self._inner.drain(timeout_s)

    async def settle(self) -> bool:
        """The inner adapter's `settle`."""
        return await self._inner.settle()

    async def close(self) -> None:
        """The inner adapter's `close`."""
        await self._inner.close()
