"""Builders shared by the portfolio tests."""

from __future__ import annotations

import itertools
from decimal import Decimal

from brokers.orders import OrderFilled, OrderSide, OrderType, SubmitOrder
from portfolio.ledger import Ledger

_ids = itertools.count(1)


def fill(
    side: OrderSide,
    qty: str | int,
    price: str | int,
    *,
    symbol: str = "SPY",
    commission: str = "0",
    execution_id: str | None = None,
    cid: str = "c",
) -> OrderFilled:
    return OrderFilled(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        qty=Decimal(qty),
        price=Decimal(price),
        commission=Decimal(commission),
        ts=0,
        execution_id=execution_id or f"x{next(_ids)}",
    )


def ledger_with(cash: int, **holdings: tuple[int, float]) -> Ledger:
    """A ledger that bought (or shorted) `qty` of each symbol at `price`, marked at that price."""
    ledger = Ledger(Decimal(cash))
    prices: dict[str, float] = {}
    for symbol, (qty, price) in holdings.items():
        side = OrderSide.BUY if qty > 0 else OrderSide.SELL
        ledger.apply_fill(fill(side, abs(qty), repr(price), symbol=symbol))
        prices[symbol] = price
    ledger.mark(prices)
    return ledger


def market(
    side: OrderSide, qty: str | int, *, symbol: str = "SPY", cid: str = "o1", ts: int = 0
) -> SubmitOrder:
    return SubmitOrder(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        qty=Decimal(qty),
        order_type=OrderType.MARKET,
        ts=ts,
    )
