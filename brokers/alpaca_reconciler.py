"""Reconciliation of the Alpaca adapter with the account: what REST says, applied to the orders
the adapter tracks, after every (re)connect of the trade stream and at start.

The stream has no replay, so whatever happened while it was down (or the daemon was not
running) is read back here: open orders, orders submitted since the last update seen, every
order still open by the adapter's books (by client order id), positions and the account. Fills
found this way go through the same tracker as the stream's, so none is counted twice.
"""

from __future__ import annotations

from collections.abc import Callable

from brokers.alpaca_rest import AlpacaRest
from brokers.alpaca_retry import RestWatch
from brokers.alpaca_tracker import OrderTracker, TrackedOrder
from brokers.base import NOT_SENT_BEFORE_RESTART, Reconciliation
from brokers.orders import OrderCanceled
from brokers.outbox import Outbox

_SINCE_MARGIN_NS = 2_000_000_000  # `after` is exclusive and clocks differ: look a bit further
# From this many orders to ask about, one listing by time range (500 a page) replaces most of
# the lookups by client order id (one REST call each, under the rate limit).
_BULK_FROM = 8


class Reconciler:
    """One reconciliation per `run`; a transient REST failure raises out of it (retry it)."""

    def __init__(
        self,
        *,
        rest: AlpacaRest,
        watch: RestWatch,
        tracker: OrderTracker,
        outbox: Outbox,
        now_ns: Callable[[], int],
    ) -> None:
        self._rest = rest
        self._watch = watch
        self._tracker = tracker
        self._outbox = outbox
        self._now_ns = now_ns
        self._recovered = 0  # fill events emitted by the reconciliation under way

    async def run(self, *, first: bool) -> Reconciliation:
        """Read the account back and apply it; what it found.

        Args:
            first: the adapter's first reconciliation (no state of its own to compare with).

        Raises:
            TransientBrokerError: a REST call failed; fills it already emitted are counted by
                the run that finishes.
        """
        call, rest, tracker = self._watch.call, self._rest, self._tracker
        if tracker.last_seen_ns is None:
            tracker.last_seen_ns = (await call(rest.clock())).ts
        since = tracker.last_seen_ns - _SINCE_MARGIN_NS
        open_orders = await call(rest.orders(status="open"))
        recent = await call(rest.orders(status="all", after_ns=since))
        listed = {o.client_order_id for o in open_orders} | {o.client_order_id for o in recent}
        # Fills emitted by an attempt that failed later still count for the one that finishes.
        for snap in (*recent, *open_orders):
            self._recovered += tracker.apply(snap)
        tracker.unacked_restored -= listed  # Alpaca has them: `apply` accepted them above
        await self._ask_for_the_unlisted(listed)
        positions = await call(rest.positions())
        account = await call(rest.account())
        fills, self._recovered = self._recovered, 0
        differences = [] if first else tracker.differences(positions, account)
        tracker.adopt(positions, account)
        tracker.prune()
        found = Reconciliation(
            ts=self._now_ns(),
            open_orders=len(open_orders),
            fills_recovered=fills,
            positions={p.symbol: p.qty for p in positions},
            cash=account.cash,
            differences=differences,
        )
        self._outbox.notice(
            "warning" if differences else "info",
            "reconciled",
            open_orders=len(open_orders),
            fills_recovered=fills,
            positions=len(positions),
            cash=str(account.cash),
            differences=differences,
        )
        if account.trading_blocked or account.status.upper() != "ACTIVE":
            self._outbox.notice(
                "error", "account_not_tradable", status=account.status, blocked=True
            )
        return found

    def _unlisted(self, listed: set[str]) -> list[TrackedOrder]:
        tracker = self._tracker
        out = []
        for order in tracker.orders.values():
            restored = order.cid in tracker.unacked_restored and not order.accepted
            if not (order.terminal or order.cid in listed or not (order.accepted or restored)):
                out.append(order)
        return out

    async def _list_in_bulk(self, unlisted: list[TrackedOrder], listed: set[str]) -> None:
        """Many orders to ask about (a restart after a long outage, thousands of intents): list
        the account's orders from the oldest one's intent time, 500 a page, and apply them;
        only those still unlisted are asked for one by one."""
        times = [o.since_ns for o in unlisted]
        if len(unlisted) < _BULK_FROM or any(t is None for t in times):
            return
        since = min(t for t in times if t is not None) - _SINCE_MARGIN_NS
        found = await self._watch.call(self._rest.orders(status="all", after_ns=since))
        for snap in found:
            self._recovered += self._tracker.apply(snap)
            listed.add(snap.client_order_id)
            self._tracker.unacked_restored.discard(snap.client_order_id)

    async def poll_open(self) -> int:
        """One read of our orders still open by the books (one GET of the orders submitted
        since the oldest of them, paged), applied; the fill events it emitted.

        Raises:
            TransientBrokerError: REST did not answer (nothing of this poll was applied).
        """
        tracker = self._tracker
        open_ours = [o for o in tracker.orders.values() if o.ours and o.accepted and not o.terminal]
        if not open_ours:
            return 0
        since = min(o.created_ns for o in open_ours) - _SINCE_MARGIN_NS
        snaps = await self._watch.call(self._rest.orders(status="all", after_ns=since))
        fills = 0
        for snap in snaps:
            if snap.client_order_id in tracker.orders:
                fills += tracker.apply(snap)
        return fills

    async def _ask_for_the_unlisted(self, listed: set[str]) -> None:
        """Orders open by our books but in neither list (filled or canceled while the stream
        was down or the daemon was not running, submitted before `since`): listed in bulk when
        many, then asked for one by one."""
        tracker = self._tracker
        await self._list_in_bulk(self._unlisted(listed), listed)
        for order in self._unlisted(listed):
            restored = order.cid in tracker.unacked_restored and not order.accepted
            found = await self._watch.call(self._rest.order_by_client_id(order.cid))
            tracker.unacked_restored.discard(order.cid)
            if found is not None:
                self._recovered += tracker.apply(found)
            elif restored:
                # A 404 is final: the crash came before the POST reached Alpaca (an id once
                # used stays findable), and it never will now: only this process sends it.
                order.terminal = True
                self._outbox.emit(
                    OrderCanceled(
                        client_order_id=order.cid,
                        symbol=order.symbol,
                        ts=self._now_ns(),
                        reason=NOT_SENT_BEFORE_RESTART,
                    )
                )
                self._outbox.notice("warning", "restored_order_not_sent", client_order_id=order.cid)
            else:
                self._outbox.notice("error", "order_vanished", client_order_id=order.cid)
