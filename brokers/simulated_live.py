"""The simulated broker as a live broker: Alpaca's live data, simulated fills, no account.

`tradingd run` with `broker.type: simulated` (mode sim) trades through this: nothing reaches a
trading account. Fills come from the bars the daemon shows it (`on_bar`), exactly as in a replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from brokers.base import (
    NOT_SENT_BEFORE_RESTART,
    AccountSnapshot,
    BrokerHealth,
    BrokerNotice,
    PositionSnapshot,
    Reconciliation,
    RestoredOrder,
)
from brokers.orders import CancelOrder, ExecutionEvent, OrderCanceled, SubmitOrder
from brokers.simulated import SimulatedBroker
from feeds.bar import Bar


class SimulatedLiveBroker:
    """A `LiveBroker` around a `SimulatedBroker`.

    Its open orders live in memory only: after a restart every order the journal still had
    open ends as OrderCanceled("not sent before restart"), reported on the first poll.
    """

    read_only = False
    shares_account = False

    def __init__(self, sim: SimulatedBroker, *, now_ns: Callable[[], int] | None = None) -> None:
        self.sim = sim
        self.events_ready = asyncio.Event()
        self.reconciliations = 0
        self.last_reconcile: Reconciliation | None = None
        self._restored: list[ExecutionEvent] = []
        self._now_ns = now_ns

    @property
    def account(self) -> AccountSnapshot | None:
        return None  # no account of its own: the ledger's start cash is the start

    @property
    def positions(self) -> dict[str, PositionSnapshot]:
        return {}

    @property
    def fatal(self) -> BaseException | None:
        return None

    def health(self) -> BrokerHealth:
        return BrokerHealth(stream_connected=True, reconciled=True, rest_ok=True, in_flight=0)

    def restore(self, orders: Sequence[RestoredOrder]) -> None:
        ts = self._now_ns() if self._now_ns is not None else 0
        self._restored = [
            OrderCanceled(
                client_order_id=o.client_order_id,
                symbol=o.symbol,
                ts=ts,
                reason=NOT_SENT_BEFORE_RESTART,
            )
            for o in orders
            if not o.terminal and o.filled_qty < o.qty
        ]

    async def start(self, *, since_ns: int | None = None) -> None:
        if self._restored:
            self.events_ready.set()

    def on_bar(self, bar: Bar) -> None:
        self.sim.on_bar(bar)
        if self.sim.has_events:
            self.events_ready.set()

    def submit(self, command: SubmitOrder) -> None:
        self.sim.submit(command)
        self.events_ready.set()

    def cancel(self, command: CancelOrder) -> None:
        self.sim.cancel(command)
        self.events_ready.set()

    def poll_events(self) -> list[ExecutionEvent]:
        restored, self._restored = self._restored, []
        self.events_ready.clear()
        return [*restored, *self.sim.poll_events()]

    def poll_notices(self) -> list[BrokerNotice]:
        return []

    async def drain(self, timeout_s: float) -> bool:
        return True

    async def cancel_open(self, ours: Callable[[str], bool]) -> list[str]:
        ts = self._now_ns() if self._now_ns is not None else 0
        cancelled = [cid for cid in self.sim.open_order_ids() if ours(cid)]
        for cid in cancelled:
            self.sim.cancel(CancelOrder(client_order_id=cid, ts=ts))
        if cancelled:
            self.events_ready.set()
        return cancelled

    async def close(self) -> None:
        return None
