"""The simulated broker's fill rules, each on bars where the right answer is known."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from brokers.orders import (
    CancelOrder,
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    SubmitOrder,
    TimeInForce,
)
from brokers.settings import SimulatedBrokerSettings
from brokers.simulated import SimulatedBroker
from brokers.ticks import round_to_tick
from feeds.bar import NS_PER_DAY, NS_PER_MINUTE, Bar

# 2024-03-05 09:30 America/New_York (EST) = 14:30 UTC.
T0 = int(dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
M = NS_PER_MINUTE
D = Decimal


def bar(
    ts: int,
    open_: float = 100.0,
    *,
    high: float | None = None,
    low: float | None = None,
    close: float | None = None,
    volume: float = 1_000_000.0,
    symbol: str = "SPY",
) -> Bar:
    close = open_ if close is None else close
    return Bar(
        symbol=symbol,
        ts=ts,
        open=open_,
        high=max(open_, close) if high is None else high,
        low=min(open_, close) if low is None else low,
        close=close,
        volume=volume,
    )


def order(
    cid: str,
    side: OrderSide = OrderSide.BUY,
    qty: str = "10",
    *,
    ts: int = T0 + M,
    limit: str | None = None,
    tif: TimeInForce = TimeInForce.DAY,
    symbol: str = "SPY",
) -> SubmitOrder:
    return SubmitOrder(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        qty=D(qty),
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        ts=ts,
        limit_price=None if limit is None else D(limit),
        time_in_force=tif,
    )


def broker(cash: str = "1000000", **settings: Any) -> SimulatedBroker:
    defaults: dict[str, Any] = {"slippage_bps": 0.0}
    defaults.update(settings)
    return SimulatedBroker(SimulatedBrokerSettings(**defaults), start_cash=D(cash))


def fills(events: list[ExecutionEvent]) -> list[OrderFilled | OrderPartiallyFilled]:
    return [e for e in events if isinstance(e, OrderFilled | OrderPartiallyFilled)]


def test_market_order_fills_at_next_open_never_at_a_bar_started_before_the_decision() -> None:
    b = broker()
    b.on_bar(bar(T0, 100.0))
    b.submit(order("a", ts=T0 + M))
    assert b.poll_events() == [
        OrderAccepted(client_order_id="a", symbol="SPY", ts=T0 + M, broker_order_id="SIM-00000001")
    ]
    b.on_bar(bar(T0, 50.0))  # a late bar of the decided minute: it must not fill the order
    assert b.poll_events() == []
    b.on_bar(bar(T0 + M, 101.0, close=105.0))
    (fill,) = b.poll_events()
    assert isinstance(fill, OrderFilled)
    assert (fill.price, fill.qty, fill.ts) == (D("101.00"), D(10), T0 + M)
    assert b.positions == {"SPY": D(10)}
    assert b.cash == D(1_000_000) - D("1010.00")


def test_market_order_waits_for_its_own_symbol() -> None:
    b = broker()
    b.on_bar(bar(T0, 100.0))
    b.on_bar(bar(T0, 20.0, symbol="QQQ"))
    b.submit(order("a"))
    b.poll_events()
    b.on_bar(bar(T0 + M, 30.0, symbol="QQQ"))
    assert b.poll_events() == []
    b.on_bar(bar(T0 + 2 * M, 102.0))
    (fill,) = b.poll_events()
    assert isinstance(fill, OrderFilled)
    assert fill.price == D("102.00")


@pytest.mark.parametrize(
    ("side", "expected"), [(OrderSide.BUY, D("100.10")), (OrderSide.SELL, D("99.90"))]
)
def test_slippage_moves_the_price_against_the_trader(side: OrderSide, expected: Decimal) -> None:
    b = broker(slippage_bps=10.0, account="margin")
    b.on_bar(bar(T0, 100.0))
    b.submit(order("a", side))
    b.on_bar(bar(T0 + M, 100.0))
    (fill,) = fills(b.poll_events())
    assert fill.price == expected


def test_fill_at_close_fills_at_submit_at_the_deciding_bars_close() -> None:
    b = broker(fill_at="close", slippage_bps=10.0)
    b.on_bar(bar(T0, 99.0, close=100.0))
    b.submit(order("a", ts=T0 + M))
    accepted, fill = b.poll_events()
    assert isinstance(accepted, OrderAccepted)
    assert isinstance(fill, OrderFilled)
    assert (fill.price, fill.ts) == (D("100.10"), T0 + M)


def test_no_price_yet_is_rejected() -> None:
    b = broker()
    b.submit(order("a", symbol="XYZ"))
    assert b.poll_events() == [
        OrderRejected(client_order_id="a", symbol="XYZ", ts=T0 + M, reason="no price for XYZ")
    ]


def test_a_seen_client_order_id_is_ignored_and_counted() -> None:
    b = broker()
    b.submit(order("r", symbol="XYZ"))  # rejected, but its id is used
    b.on_bar(bar(T0, 100.0))
    b.submit(order("a"))
    b.poll_events()
    b.submit(order("a", qty="99"))
    b.submit(order("r"))
    assert b.poll_events() == []
    assert b.duplicates_ignored == 2
    b.on_bar(bar(T0 + M, 100.0))
    (fill,) = fills(b.poll_events())
    assert fill.qty == D(10)


def test_limit_buy_fills_only_when_the_low_trades_below_at_the_better_of_open_and_limit() -> None:
    b = broker()
    b.on_bar(bar(T0, 100.0))
    b.submit(order("a", limit="99.50", tif=TimeInForce.GTC))
    b.submit(order("b", limit="99.50", tif=TimeInForce.GTC))
    b.poll_events()
    b.on_bar(bar(T0 + M, 100.0, low=99.50))  # touching is not trading through
    assert b.poll_events() == []
    b.on_bar(bar(T0 + 2 * M, 100.0, low=99.0))
    first, second = fills(b.poll_events())
    assert first.price == second.price == D("99.50")
    b.submit(order("c", limit="99.50", ts=T0 + 3 * M))
    b.on_bar(bar(T0 + 3 * M, 98.0, high=98.5))  # gapped below: fills at the open
    (fill,) = fills(b.poll_events())
    assert fill.price == D("98.00")


def test_limit_sell_fills_when_the_high_trades_above_at_the_better_of_open_and_limit() -> None:
    b = broker(account="margin", slippage_bps=50.0)  # no slippage on limit orders
    b.on_bar(bar(T0, 100.0))
    b.submit(order("a", OrderSide.SELL, limit="100.50"))
    b.on_bar(bar(T0 + M, 100.0, high=100.5))
    assert fills(b.poll_events()) == []
    b.on_bar(bar(T0 + 2 * M, 100.0, high=101.0))
    (fill,) = fills(b.poll_events())
    assert fill.price == D("100.50")
    b.submit(order("b", OrderSide.SELL, limit="100.50", ts=T0 + 3 * M))
    b.on_bar(bar(T0 + 3 * M, 102.0))
    (fill,) = fills(b.poll_events())
    assert fill.price == D("102.00")


def test_day_limit_expires_at_the_first_bar_of_a_later_new_york_date_gtc_stays() -> None:
    b = broker()
    b.on_bar(bar(T0, 100.0))
    b.submit(order("day", limit="90"))
    b.submit(order("gtc", limit="90", tif=TimeInForce.GTC))
    b.poll_events()
    # 19:59 New York is 00:59 UTC the next day: still the same New York date.
    late_same_day = T0 + (10 * 60 + 29) * M
    b.on_bar(bar(late_same_day, 100.0))
    assert b.poll_events() == []
    b.on_bar(bar(T0 + NS_PER_DAY, 100.0))
    assert b.poll_events() == [
        OrderCanceled(client_order_id="day", symbol="SPY", ts=T0 + NS_PER_DAY, reason="expired")
    ]
    b.on_bar(bar(T0 + NS_PER_DAY + M, 89.0))
    (fill,) = fills(b.poll_events())
    assert (fill.client_order_id, fill.price) == ("gtc", D("89.00"))


@pytest.mark.parametrize(
    ("price", "expected"),
    [(D("100.125"), D("100.13")), (D("1.00004"), D("1.00")), (D("0.51236"), D("0.5124"))],
)
def test_prices_round_to_the_tick(price: Decimal, expected: Decimal) -> None:
    assert round_to_tick(price) == expected


def test_sub_dollar_fill_uses_the_hundredth_of_a_cent_tick() -> None:
    b = broker()
    b.on_bar(bar(T0, 0.5, symbol="PNY"))
    b.submit(order("a", qty="100", symbol="PNY"))
    b.on_bar(bar(T0 + M, 0.51236, symbol="PNY"))
    (fill,) = fills(b.poll_events())
    assert fill.price == D("0.5124")


@pytest.mark.parametrize(
    ("settings", "qty", "expected"),
    [
        ({"commission_per_share": D("0.005"), "commission_min": D("1")}, "100", D("1.00")),
        ({"commission_per_share": D("0.005"), "commission_min": D("1")}, "1000", D("5.00")),
        ({"commission_bps": 2.0}, "100", D("2.00")),  # 10,000 notional * 2 bps
        ({"commission_bps": 2.5}, "3", D("0.08")),  # 300 * 2.5 bps = 0.075, rounded up
        (
            {"commission_per_share": D("0.01"), "commission_min": D("1"), "commission_bps": 1.0},
            "200",
            D("4.00"),  # 2.00 per share + 20,000 * 1 bp
        ),
        ({}, "100", D("0.00")),
    ],
)
def test_commission_models(settings: dict[str, Any], qty: str, expected: Decimal) -> None:
    b = broker(**settings)
    b.on_bar(bar(T0, 100.0))
    b.submit(order("a", qty=qty))
    b.on_bar(bar(T0 + M, 100.0))
    (fill,) = fills(b.poll_events())
    assert fill.commission == expected
    assert b.cash == D(1_000_000) - D(qty) * 100 - expected


def test_cash_account_rejects_a_buy_beyond_buying_power_at_fill_time() -> None:
    b = broker(cash="1000", commission_bps=10.0)
    b.on_bar(bar(T0, 100.0))
    b.submit(order("a", qty="10"))  # 1,000 at 100, but it fills at 100 plus 1.00 commission
    b.on_bar(bar(T0 + M, 100.0))
    accepted, rejected = b.poll_events()
    assert isinstance(accepted, OrderAccepted)
    assert rejected == OrderRejected(
        client_order_id="a",
        symbol="SPY",
        ts=T0 + M,
        reason="insufficient buying power: need 1001.00, have 1000",
    )
    assert (b.cash, b.positions) == (D(1000), {})


def test_cash_account_buy_waits_for_the_proceeds_of_a_due_sell_of_another_symbol() -> None:
    b = broker(cash="100")
    b.on_bar(bar(T0, 100.0, symbol="AAA"))
    b.on_bar(bar(T0, 50.0, symbol="ZZZ"))
    b.submit(order("z0", qty="20", symbol="ZZZ", ts=T0))  # own 20 ZZZ (needs 1,000)
    b.on_bar(bar(T0, 50.0, symbol="ZZZ"))
    assert b.poll_events()[-1] == OrderRejected(
        client_order_id="z0",
        symbol="ZZZ",
        ts=T0,
        reason="insufficient buying power: need 1000.00, have 100",
    )
    b = broker(cash="1000")
    b.on_bar(bar(T0, 100.0, symbol="AAA"))
    b.on_bar(bar(T0, 50.0, symbol="ZZZ"))
    b.submit(order("z0", qty="20", symbol="ZZZ", ts=T0))
    b.on_bar(bar(T0, 50.0, symbol="ZZZ"))
    assert (b.cash, b.positions) == (D(0), {"ZZZ": D(20)})
    # One rebalance: sell ZZZ, buy AAA. AAA's bar comes first: the buy waits for the sell.
    b.submit(order("s", OrderSide.SELL, qty="20", symbol="ZZZ"))
    b.submit(order("b", qty="9", symbol="AAA"))
    b.on_bar(bar(T0 + M, 100.0, symbol="AAA"))
    b.on_bar(bar(T0 + M, 50.0, symbol="ZZZ"))
    b.on_bar(bar(T0 + 2 * M, 101.0, symbol="AAA"))
    done = [e for e in b.poll_events() if not isinstance(e, OrderAccepted)]
    assert [(type(e).__name__, e.client_order_id, e.ts) for e in done] == [
        ("OrderFilled", "z0", T0),
        ("OrderFilled", "s", T0 + M),
        ("OrderFilled", "b", T0 + 2 * M),
    ]
    assert (b.cash, b.positions) == (D(91), {"AAA": D(9)})
    # With no sell due, a buy beyond the cash is still rejected at once.
    b.submit(order("c", qty="1", symbol="AAA", ts=T0 + 2 * M))
    b.on_bar(bar(T0 + 3 * M, 100.0, symbol="AAA"))
    assert isinstance(b.poll_events()[-1], OrderRejected)


def test_cash_account_cannot_sell_short_margin_can() -> None:
    cash = broker()
    cash.on_bar(bar(T0, 100.0))
    cash.submit(order("a", OrderSide.SELL))
    cash.on_bar(bar(T0 + M, 100.0))
    rejected = cash.poll_events()[-1]
    assert isinstance(rejected, OrderRejected)
    assert rejected.reason == "cash account cannot sell short"

    margin = broker(cash="100", account="margin")
    margin.on_bar(bar(T0, 100.0))
    margin.submit(order("s", OrderSide.SELL))
    margin.submit(order("b", OrderSide.BUY, qty="20", symbol="SPY"))
    margin.on_bar(bar(T0 + M, 100.0))
    assert len(fills(margin.poll_events())) == 2
    assert margin.positions == {"SPY": D(10)}
    assert margin.cash == D(100) + D(1000) - D(2000)


def test_volume_participation_splits_an_order_into_partial_fills() -> None:
    b = broker(max_volume_participation=0.1)
    b.on_bar(bar(T0, 100.0))
    b.submit(order("a", qty="12"))
    b.poll_events()
    b.on_bar(bar(T0 + M, 100.0, volume=50))
    b.on_bar(bar(T0 + 2 * M, 101.0, volume=59))
    b.on_bar(bar(T0 + 3 * M, 102.0, volume=1000))
    events = b.poll_events()
    assert [type(e) for e in events] == [OrderPartiallyFilled, OrderPartiallyFilled, OrderFilled]
    assert [(e.qty, e.price) for e in fills(events)] == [
        (D(5), D("100.00")),
        (D(5), D("101.00")),
        (D(2), D("102.00")),
    ]
    assert [e.leaves_qty for e in events if isinstance(e, OrderPartiallyFilled)] == [D(7), D(2)]
    assert len({e.execution_id for e in fills(events)}) == 3
    assert b.positions == {"SPY": D(12)}


def test_volume_participation_is_shared_by_the_orders_of_one_bar() -> None:
    b = broker(max_volume_participation=0.5)
    b.on_bar(bar(T0, 100.0))
    b.submit(order("a", qty="8"))
    b.submit(order("b", qty="8"))
    b.poll_events()
    b.on_bar(bar(T0 + M, 100.0, volume=10))
    events = b.poll_events()
    assert [(e.client_order_id, e.qty) for e in fills(events)] == [("a", D(5))]


def test_cancel_of_an_open_order_and_of_unknown_or_done_orders() -> None:
    b = broker()
    b.on_bar(bar(T0, 100.0))
    b.submit(order("a", limit="50"))
    b.submit(order("m"))
    b.poll_events()
    b.on_bar(bar(T0 + M, 100.0))
    b.poll_events()
    b.cancel(CancelOrder(client_order_id="a", ts=T0 + 2 * M))
    b.cancel(CancelOrder(client_order_id="a", ts=T0 + 2 * M))
    b.cancel(CancelOrder(client_order_id="m", ts=T0 + 2 * M))  # already filled
    b.cancel(CancelOrder(client_order_id="nope", ts=T0 + 2 * M))
    assert b.poll_events() == [
        OrderCanceled(client_order_id="a", symbol="SPY", ts=T0 + 2 * M, reason="canceled")
    ]
    b.on_bar(bar(T0 + 2 * M, 40.0))
    assert b.poll_events() == []


def test_same_inputs_give_the_same_events_and_ids() -> None:
    def run() -> list[ExecutionEvent]:
        b = broker(max_volume_participation=0.2)
        b.on_bar(bar(T0, 100.0))
        b.submit(order("a", qty="30"))
        b.submit(order("b", qty="5", limit="99.9"))
        for i in range(1, 4):
            b.on_bar(bar(T0 + i * M, 100.0, low=99.0, volume=100))
        return b.poll_events()

    assert run() == run()


@pytest.mark.parametrize(
    "bad",
    [
        {"slippage_bps": -1.0},
        {"commission_per_share": "-0.01"},
        {"max_volume_participation": 0.0},
        {"max_volume_participation": 1.5},
        {"fill_at": "mid"},
        {"typo": 1},
    ],
)
def test_settings_reject_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SimulatedBrokerSettings(**bad)


def test_past_client_order_ids_are_kept_up_to_a_bound() -> None:
    b = SimulatedBroker(
        SimulatedBrokerSettings(slippage_bps=0.0), start_cash=D(1_000_000), remember_ids=2
    )
    b.on_bar(bar(T0, 100.0))
    for cid in ("a", "b", "c"):
        b.submit(order(cid))
    b.on_bar(bar(T0 + M, 100.0))
    assert len(fills(b.poll_events())) == 3
    b.submit(order("c"))  # among the last two: a repeat
    b.submit(order("a"))  # forgotten: a new order
    assert b.duplicates_ignored == 1
    assert [e.client_order_id for e in b.poll_events()] == ["a"]
    b.submit(order("a"))  # open: a repeat whatever the bound
    assert b.duplicates_ignored == 2
