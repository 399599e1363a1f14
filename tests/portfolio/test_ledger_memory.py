"""The ledger's memory of execution ids is bounded: months of fills do not all stay in it."""

from __future__ import annotations

from decimal import Decimal

from brokers.orders import OrderFilled, OrderSide
from portfolio.ledger import APPLIED_KEPT, Ledger


def fill(i: int) -> OrderFilled:
    return OrderFilled(
        client_order_id=f"o{i}",
        symbol="AAA",
        side=OrderSide.BUY if i % 2 == 0 else OrderSide.SELL,
        qty=Decimal(1),
        price=Decimal(10),
        commission=Decimal(0),
        ts=i,
        execution_id=f"x{i}",
    )


def test_the_execution_ids_kept_are_the_latest_and_bounded() -> None:
    ledger = Ledger(Decimal(100_000))
    for i in range(APPLIED_KEPT + 100):
        assert ledger.apply_fill(fill(i))
    assert len(ledger._applied) == APPLIED_KEPT
    assert not ledger.apply_fill(fill(APPLIED_KEPT + 99))  # a recent duplicate: refused
    assert ledger.cash == Decimal(100_000)
