"""The order book: the orders this process has sent that are still open at the broker."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
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
    """

    def __init__(self) -> None:
        self.open_orders: dict[str, OpenOrder] = {}

    def on_submit(self, cmd: SubmitOrder) -> None:
        """Record a sent order; a client_order_id already open is kept as it is."""
        if cmd.client_order_id in self.open_orders:
            return
        self.open_orders[cmd.client_order_id] = OpenOrder(
            client_order_id=cmd.client_order_id,
            symbol=cmd.symbol,
            side=cmd.side,
            qty=cmd.qty,
            remaining=cmd.qty,
            ts=cmd.ts,
        )

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
            case OrderFilled() | OrderCanceled() | OrderRejected():
                self.open_orders.pop(ev.client_order_id, None)
            case _:
                assert_never(ev)

    def is_open(self, client_order_id: str) -> bool:
        """Whether the order was sent and has not reached a terminal event."""
        return client_order_id in self.open_orders

    def open_qty(self) -> dict[str, Decimal]:
        """Signed remaining quantity of open orders per symbol: + buy, - sell (no zeros)."""
        out: dict[str, Decimal] = {}
        for order in self.open_orders.values():
            signed = order.remaining if order.side is OrderSide.BUY else -order.remaining
            out[order.symbol] = out.get(order.symbol, Decimal(0)) + signed
        return {symbol: qty for symbol, qty in out.items() if qty}
