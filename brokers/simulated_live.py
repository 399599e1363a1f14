"""SimulatedLiveBroker: the simulated broker as a LiveBroker (`tradingd run` with live data and
simulated fills, no trading account).

It wraps a `SimulatedBroker` and adds the live lifecycle, which here is trivial: nothing to
connect, nothing to reconcile, no account but the ledger's own. Its orders live only in this
process: after a restart, every order the journal still had open is ended as
OrderCanceled(reason=NOT_SENT_BEFORE_RESTART) on the first poll after `start`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
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
from feeds.errors import InvariantViolation

_HEALTHY = BrokerHealth(stream_connected=True, reconciled=True, rest_ok=True, in_flight=0)


class SimulatedLiveBroker:
    """A `brokers.base.LiveBroker` around a `SimulatedBroker`: fills against the bars the
    daemon shows it through `on_bar`.

    Every hand-over is synchronous, so nothing is ever in flight and `drain` returns at once.
    `events_ready` is set whenever events (or notices) wait: after `submit`, `cancel`, a bar
    that filled or expired an order, and at `start` after a restore.

    Args:
        simulated: the simulated broker (its fill rules and its own cash and positions).
        now_ns: the clock that stamps cancels this adapter makes itself (restored orders,
            `cancel_open`), UTC ns.
    """

    def __init__(
        self, simulated: SimulatedBroker, *, now_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self._sim = simulated
        self._now_ns = now_ns
        self._events: list[ExecutionEvent] = []
        self._notices: list[BrokerNotice] = []
        self._restored_ids: set[str] = set()
        self._restored_open: list[RestoredOrder] = []
        self._started = False
        self._sent = 0
        self.events_ready = asyncio.Event()
        self.reconciliations = 0
        self.last_reconcile: Reconciliation | None = None

    # -- what the daemon reads ------------------------------------------------------------------

    @property
    def simulated(self) -> SimulatedBroker:
        """The wrapped simulated broker (its cash and positions, for reports)."""
        return self._sim

    @property
    def read_only(self) -> bool:
        """False: orders are filled by the simulation."""
        return False

    @property
    def shares_account(self) -> bool:
        """False: only this daemon's orders exist here."""
        return False

    @property
    def account(self) -> AccountSnapshot | None:
        """None: there is no broker account (the ledger's start cash is the start)."""
        return None

    @property
    def positions(self) -> dict[str, PositionSnapshot]:
        """Empty: with no account, the ledger alone holds the positions."""
        return {}

    @property
    def fatal(self) -> BaseException | None:
        """Always None: nothing here fails on its own."""
        return None

    def health(self) -> BrokerHealth:
        """Always healthy: no stream, no REST, nothing in flight."""
        return dataclasses.replace(_HEALTHY, sent=self._sent)

    # -- lifecycle --------------------------------------------------------------------------------

    def restore(self, orders: Sequence[RestoredOrder]) -> None:
        """Take over a journal's orders. Their ids count as submitted (a later `submit` of one
        is ignored with a notice); every one not terminal ends as
        OrderCanceled(reason=NOT_SENT_BEFORE_RESTART) on the first poll after `start`, since the
        simulated orders died with the last process.

        Raises:
            InvariantViolation: called after `start`, or a client order id given twice.
        """
        if self._started:
            raise InvariantViolation("SimulatedLiveBroker.restore must be called before start")
        for order in orders:
            cid = order.client_order_id
            if cid in self._restored_ids:
                raise InvariantViolation(f"restored order {cid} is known already")
            self._restored_ids.add(cid)
            if not order.terminal:
                self._restored_open.append(order)

    async def start(self, *, since_ns: int | None = None) -> None:
        """Ready at once; queues the cancels of the restored open orders. `since_ns` is
        ignored (there is no history to recover fills from).

        Raises:
            InvariantViolation: called twice.
        """
        if self._started:
            raise InvariantViolation("SimulatedLiveBroker.start called twice")
        self._started = True
        ts = self._now_ns()
        for order in self._restored_open:
            self._events.append(
                OrderCanceled(
                    client_order_id=order.client_order_id,
                    symbol=order.symbol,
                    ts=ts,
                    reason=NOT_SENT_BEFORE_RESTART,
                )
            )
        self._restored_open = []
        if self._events:
            self.events_ready.set()

    async def drain(self, timeout_s: float) -> bool:
        """True at once: a hand-over completes before `submit` returns."""
        return True

    async def close(self) -> None:
        """Nothing to release."""

    # -- orders and events ------------------------------------------------------------------------

    def submit(self, command: SubmitOrder) -> None:
        """Hand one order to the simulation; a restored client order id is ignored (a notice),
        as is one submitted before (the simulated broker's rule)."""
        cid = command.client_order_id
        if cid in self._restored_ids:
            self._notices.append(
                BrokerNotice(
                    level="warning",
                    event="duplicate_submit_ignored",
                    fields={"client_order_id": cid},
                )
            )
        else:
            self._sent += 1
            self._sim.submit(command)
            self._collect()
        self.events_ready.set()

    def cancel(self, command: CancelOrder) -> None:
        """Cancel an open order; an unknown or finished one is left alone (no event)."""
        self._sim.cancel(command)
        self._collect()
        self.events_ready.set()

    def on_bar(self, bar: Bar) -> None:
        """Show the simulation one accepted bar; the fills and expiries it causes are queued."""
        self._sim.on_bar(bar)
        self._collect()

    def poll_events(self) -> list[ExecutionEvent]:
        """Events since the last call, in the order they happened."""
        self._collect()
        events, self._events = self._events, []
        self.events_ready.clear()
        return events

    def poll_notices(self) -> list[BrokerNotice]:
        """Notices since the last call, in order."""
        notices, self._notices = self._notices, []
        return notices

    def limit_age(self, max_age_s: float, market_now: Callable[[], int]) -> None:
        """Nothing to limit: a hand-over is sent before `submit` returns."""

    def withdraw_unsent(self, reason: str) -> int:
        """0: nothing here waits to be sent."""
        return 0

    async def settle(self) -> bool:
        """False: the simulation has no stream to miss fills."""
        return False

    async def cancel_open(self, ours: Callable[[str], bool]) -> list[str]:
        """Cancel every open order whose client order id `ours` accepts; the ids cancelled, in
        the order they were accepted. Their OrderCanceled events follow through `poll_events`."""
        ts = self._now_ns()
        cancelled = [cid for cid in self._sim.open_order_ids() if ours(cid)]
        for cid in cancelled:
            self._sim.cancel(CancelOrder(client_order_id=cid, ts=ts))
        self._collect()
        return cancelled

    def _collect(self) -> None:
        events = self._sim.poll_events()
        if events:
            self._events.extend(events)
            self.events_ready.set()
