"""The order book: open orders and their signed remaining quantities."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

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


def rebuilt(book: OrderBook) -> list[tuple[str, str]]:
    """open_qty as it was computed before it was kept incrementally: a rebuild per call."""
    out: dict[str, Decimal] = {}
    for order in book.open_orders.values():
        signed = order.remaining if order.side is OrderSide.BUY else -order.remaining
        out[order.symbol] = out.get(order.symbol, Decimal(0)) + signed
    return [(symbol, str(qty)) for symbol, qty in out.items() if qty]


QTYS = st.sampled_from(["1", "2", "3", "5", "5.0", "2.50", "0.000000001", "1E+1", "7"])
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["submit", "partial", "fill", "cancel", "resubmit"]),
        st.sampled_from(["AAA", "BBB", "CCC"]),
        st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
        QTYS,
        st.integers(min_value=0, max_value=30),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_open_qty_kept_incrementally_equals_a_rebuild(
    steps: list[tuple[str, str, OrderSide, str, int]],
) -> None:
    """Same symbols, same order, same Decimals (exponents too) as a rebuild, after any mix of
    submits, partial fills, fills, cancels and repeated submits."""
    book = OrderBook()
    view = book.open_qty()
    sent: list[str] = []
    for n, (action, symbol, side, qty, pick) in enumerate(steps):
        if action == "submit" or not sent:
            cid = f"c{n}"
            book.on_submit(market(side, qty, symbol=symbol, cid=cid))
            sent.append(cid)
        else:
            cid = sent[pick % len(sent)]
            order = book.open_orders.get(cid)
            if action == "resubmit":
                book.on_submit(market(side, qty, symbol=symbol, cid=cid))
            elif action == "partial" and order is not None:
                book.on_event(
                    OrderPartiallyFilled(
                        client_order_id=cid,
                        symbol=order.symbol,
                        side=order.side,
                        qty=D(1),
                        price=D(1),
                        commission=D(0),
                        ts=0,
                        execution_id=f"{cid}-{n}",
                        leaves_qty=min(order.remaining, D(qty)),
                    )
                )
            elif action == "fill" and order is not None:
                book.on_event(
                    OrderFilled(
                        client_order_id=cid,
                        symbol=order.symbol,
                        side=order.side,
                        qty=order.remaining,
                        price=D(1),
                        commission=D(0),
                        ts=0,
                        execution_id=f"{cid}-{n}",
                    )
                )
            elif action == "cancel":
                book.on_event(OrderCanceled(client_order_id=cid, symbol=symbol, ts=0))
        assert [(s, str(q)) for s, q in view.items()] == rebuilt(book)
