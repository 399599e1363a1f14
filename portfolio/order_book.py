"""The order book: the orders this process has sent that are still open at the broker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import assert_never

from brokers.orders import (
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSide,
    SubmitOrder,
)

_ZERO = Decimal(0)


@dataclass(slots=True, kw_only=True)
class OpenOrder:
    """An open order and how much of it remains.

    Attributes:
        remaining: quantity not yet filled (positive).
        accepted: whether the broker has acknowledged it.
    """

    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    remaining: Decimal
    ts: int
    accepted: bool = False


class OrderBook:
    """Tracks open orders from the commands sent and the execution events received.

    Terminal events (filled, canceled, rejected) close an order; partial fills reduce what
    remains. Events of unknown orders are ignored, so replaying events is harmless.

    The signed open quantity per symbol (`open_qty`) is kept up to date as orders come and go,
    not rebuilt per call: the engine reads it every slice and after every approved order.
    """

    def __init__(self) -> None:
        self.open_orders: dict[str, OpenOrder] = {}
        # Per symbol, its open orders' ids in the order they were sent.
        self._ids: dict[str, dict[str, None]] = {}
        # Symbol -> signed remaining quantity, no zeros; in the order of each symbol's oldest
        # open order (what a rebuild from `open_orders` gives), each sum taken in send order.
        self._net: dict[str, Decimal] = {}
        self._view: Mapping[str, Decimal] = MappingProxyType(self._net)

    def on_submit(self, cmd: SubmitOrder) -> None:
        """Record a sent order; a client_order_id already open is kept as it is."""
        cid = cmd.client_order_id
        if cid in self.open_orders:
            return
        self.open_orders[cid] = OpenOrder(
            client_order_id=cid,
            symbol=cmd.symbol,
            side=cmd.side,
            qty=cmd.qty,
            remaining=cmd.qty,
            ts=cmd.ts,
        )
        symbol = cmd.symbol
        ids = self._ids.get(symbol)
        if ids is None:
            self._ids[symbol] = {cid: None}
            # The newest order: its symbol goes last, as a rebuild would put it.
            total = _ZERO + _signed(self.open_orders[cid])
            if total:
                self._net[symbol] = total
            return
        ids[cid] = None
        self._resum(symbol, reordered=False)

    def on_event(self, ev: ExecutionEvent) -> None:
        """Apply one execution event."""
        match ev:
            case OrderAccepted():
                order = self.open_orders.get(ev.client_order_id)
                if order is not None:
                    order.accepted = True
            case OrderPartiallyFilled():
                order = self.open_orders.get(ev.client_order_id)
                if order is not None:
                    # leaves_qty is absolute, so a repeated event changes nothing.
                    order.remaining = ev.leaves_qty
                    self._resum(order.symbol, reordered=False)
            case OrderFilled() | OrderCanceled() | OrderRejected():
                order = self.open_orders.pop(ev.client_order_id, None)
                if order is not None:
                    self._close(order)
            case _:
                assert_never(ev)

    def is_open(self, client_order_id: str) -> bool:
        """Whether the order was sent and has not reached a terminal event."""
        return client_order_id in self.open_orders

    def open_qty(self) -> Mapping[str, Decimal]:
        """Signed remaining quantity of open orders per symbol: + buy, - sell (no zeros).

        A read-only live view, kept up to date by `on_submit` and `on_event`: O(1), and a
        caller that holds it sees every later change.
        """
        return self._view

    def _close(self, order: OpenOrder) -> None:
        symbol = order.symbol
        ids = self._ids[symbol]
        oldest = next(iter(ids)) == order.client_order_id
        del ids[order.client_order_id]
        if not ids:
            del self._ids[symbol]
            self._net.pop(symbol, None)
            return
        # The symbol's place is its oldest open order's: it moves when that one closes.
        self._resum(symbol, reordered=oldest)

    def _resum(self, symbol: str, *, reordered: bool) -> None:
        """Recompute one symbol's sum from its open orders, in send order (so the Decimal is
        the one a rebuild gives, exponent included); re-sort the symbols if its place moved."""
        total = _ZERO
        orders = self.open_orders
        for cid in self._ids[symbol]:
            total += _signed(orders[cid])
        net = self._net
        if not total:
            net.pop(symbol, None)
        elif symbol in net and not reordered:
            net[symbol] = total
        else:
            net[symbol] = total
            self._reorder()

    def _reorder(self) -> None:
        """Put the symbols in the order of their oldest open order (rare: an older order of
        a symbol closed while newer ones remain, or a symbol's sum came back from zero)."""
        net = self._net
        ordered = {o.symbol: net[o.symbol] for o in self.open_orders.values() if o.symbol in net}
        net.clear()
        net.update(ordered)


def _signed(order: OpenOrder) -> Decimal:
    return order.remaining if order.side is OrderSide.BUY else -order.remaining
