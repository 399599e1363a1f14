"""The order book: open orders and their signed remaining quantities."""

from __future__ import annotations

from decimal import Decimal

from brokers.orders import (
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSide,
)
from portfolio.order_book import OrderBook
from tests.portfolio.factories import market

D = Decimal


def partial(cid: str, qty: int, leaves: int) -> OrderPartiallyFilled:
    return OrderPartiallyFilled(
        client_order_id=cid,
        symbol="SPY",
        side=OrderSide.BUY,
        qty=D(qty),
        price=D(1),
        commission=D(0),
        ts=0,
        execution_id=f"{cid}-{leaves}",
        leaves_qty=D(leaves),
    )


def test_open_qty_is_signed_and_shrinks_with_partial_fills() -> None:
    book = OrderBook()
    book.on_submit(market(OrderSide.BUY, 10, cid="b"))
    book.on_submit(market(OrderSide.SELL, 4, cid="s"))
    book.on_submit(market(OrderSide.SELL, 7, cid="q", symbol="QQQ"))
    assert book.open_qty() == {"SPY": D(6), "QQQ": D(-7)}
    book.on_event(OrderAccepted(client_order_id="b", symbol="SPY", ts=0))
    assert book.open_orders["b"].accepted
    book.on_event(partial("b", 3, 7))
    book.on_event(partial("b", 3, 7))  # a repeated event changes nothing
    assert book.open_orders["b"].remaining == D(7)
    assert book.open_qty() == {"SPY": D(3), "QQQ": D(-7)}


def test_terminal_events_close_orders() -> None:
    book = OrderBook()
    for cid in ("f", "c", "r"):
        book.on_submit(market(OrderSide.BUY, 1, cid=cid))
    book.on_event(
        OrderFilled(
            client_order_id="f",
            symbol="SPY",
            side=OrderSide.BUY,
            qty=D(1),
            price=D(1),
            commission=D(0),
            ts=0,
            execution_id="e",
        )
    )
    book.on_event(OrderCanceled(client_order_id="c", symbol="SPY", ts=0))
    assert [book.is_open(c) for c in ("f", "c", "r")] == [False, False, True]
    book.on_event(OrderRejected(client_order_id="r", symbol="SPY", ts=0, reason="no"))
    assert book.open_orders == {}
    assert book.open_qty() == {}


def test_unknown_events_and_resubmits_are_harmless() -> None:
    book = OrderBook()
    book.on_event(OrderCanceled(client_order_id="zzz", symbol="SPY", ts=0))
    book.on_submit(market(OrderSide.BUY, 5, cid="a"))
    book.on_event(partial("a", 2, 3))
    book.on_submit(market(OrderSide.BUY, 5, cid="a"))  # same id: keeps what remains
    assert book.open_qty() == {"SPY": D(3)}
