"""A fully invested cash account through the simulated broker: targets summing to 1.0 invest
nearly all the cash and are never rejected for slippage and commission."""

from __future__ import annotations

import random
from decimal import Decimal

from brokers.orders import OrderFilled, OrderPartiallyFilled, OrderRejected
from brokers.settings import SimulatedBrokerSettings
from brokers.simulated import SimulatedBroker
from composer.targets import Targets
from feeds.bar import NS_PER_MINUTE, Bar
from portfolio.ledger import Ledger
from portfolio.order_book import OrderBook
from portfolio.rebalance import Rebalancer, RebalanceSettings

START = 1_709_650_800 * 1_000_000_000  # 2024-03-05 15:00 UTC, 10:00 New York
SYMBOLS = ("AAA", "BBB", "CCC")


def replay(cash_buffer: float, slices: int = 300) -> tuple[list[str], Ledger, SimulatedBroker]:
    """Bars on a cent grid, slice by slice; rebalance to 1/3 each at every slice's close."""
    rng = random.Random(11)
    broker = SimulatedBroker(
        SimulatedBrokerSettings(
            slippage_bps=5.0, commission_per_share=Decimal("0.005"), commission_min=Decimal(1)
        ),
        start_cash=Decimal(1_000_000),
    )
    ledger = Ledger(Decimal(1_000_000))
    book = OrderBook()
    rebalancer = Rebalancer(RebalanceSettings(cash_buffer=cash_buffer), id_prefix="t")
    targets = Targets(ts=START, weights=dict.fromkeys(SYMBOLS, 1 / 3))
    closes = {"AAA": 100.0, "BBB": 50.0, "CCC": 20.0}
    rejections: list[str] = []

    def drain() -> None:
        for event in broker.poll_events():
            book.on_event(event)
            if isinstance(event, OrderFilled | OrderPartiallyFilled):
                ledger.apply_fill(event)
            elif isinstance(event, OrderRejected):
                rejections.append(event.reason)

    for i in range(slices):
        ts = START + i * NS_PER_MINUTE
        for symbol in SYMBOLS:
            prev = closes[symbol]
            # Big moves, so the book drifts out of the band and trades often.
            o = round(prev * (1 + rng.gauss(0, 0.004)), 2)
            c = round(o * (1 + rng.gauss(0, 0.01)), 2)
            closes[symbol] = c
            broker.on_bar(Bar(symbol, ts, o, max(o, c), min(o, c), c, 1e6))
        drain()
        ledger.mark(closes)
        for order in rebalancer.orders(
            targets, ledger, closes, book.open_qty(), ts + NS_PER_MINUTE
        ):
            book.on_submit(order)
            broker.submit(order)
        drain()
    return rejections, ledger, broker


def test_target_one_in_a_cash_account_is_never_rejected_and_nearly_all_invested() -> None:
    rejections, ledger, broker = replay(cash_buffer=0.005)
    assert rejections == []
    assert ledger.cash == broker.cash >= 0
    assert {s: p.qty for s, p in ledger.positions.items()} == broker.positions
    assert ledger.commissions > 30  # it traded many times (at least $1 an order)


def test_the_first_rebalance_invests_all_but_about_the_buffer() -> None:
    rejections, ledger, _ = replay(cash_buffer=0.005, slices=2)
    assert rejections == []
    assert len(ledger.positions) == 3
    # Kept: the 0.5% buffer less slippage and commission, plus whole-share rounding.
    assert 0 <= ledger.cash / ledger.equity < Decimal("0.006")


def test_without_the_buffer_slippage_and_commission_get_buys_rejected() -> None:
    rejections, _, _ = replay(cash_buffer=0.0)
    assert rejections
    assert all(r.startswith("insufficient buying power") for r in rejections)
