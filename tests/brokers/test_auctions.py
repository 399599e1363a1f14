"""The simulated broker's auction orders: `opg` fills at the next session's open, `cls` at the
session's close, on minute bars and on daily bars; what it cannot fill that way it rejects."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from brokers.orders import (
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
from feeds.bar import NS_PER_DAY, NS_PER_MINUTE, Bar
from feeds.calendar import SessionCalendar

NY = ZoneInfo("America/New_York")
M = NS_PER_MINUTE
D = Decimal
OPG = TimeInForce.OPG
CLS = TimeInForce.CLS


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=NY).timestamp()) * 10**9


@pytest.fixture(scope="module")
def calendar() -> SessionCalendar:
    return SessionCalendar()


def bar(
    ts: int,
    open_: float,
    close: float | None = None,
    *,
    symbol: str = "SPY",
    volume: float = 1_000_000.0,
) -> Bar:
    close = open_ if close is None else close
    return Bar(symbol, ts, open_, max(open_, close), min(open_, close), close, volume)


def order(
    cid: str,
    tif: TimeInForce,
    ts: int,
    *,
    side: OrderSide = OrderSide.BUY,
    qty: str = "10",
    symbol: str = "SPY",
    limit: str | None = None,
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


def broker(
    calendar: SessionCalendar | None,
    bar_ns: int | None = M,
    cash: str = "1000000",
    **settings: Any,
) -> SimulatedBroker:
    defaults: dict[str, Any] = {"slippage_bps": 0.0}
    defaults.update(settings)
    return SimulatedBroker(
        SimulatedBrokerSettings(**defaults), start_cash=D(cash), calendar=calendar, bar_ns=bar_ns
    )


def done(events: list[ExecutionEvent]) -> list[ExecutionEvent]:
    return [e for e in events if not isinstance(e, OrderAccepted)]


def test_alpaca_values() -> None:
    assert (TimeInForce("opg"), TimeInForce("cls")) == (OPG, CLS)


# -- opg ---------------------------------------------------------------------------------------


def test_opg_on_minutes_fills_at_the_next_sessions_first_minute_open(
    calendar: SessionCalendar,
) -> None:
    b = broker(calendar, slippage_bps=10.0, commission_per_share=D("0.01"))
    b.on_bar(bar(ny(2024, 3, 5, 15, 59), 100.0))
    # Decided after the close: the next session is Wednesday's.
    b.submit(order("o", OPG, ny(2024, 3, 5, 16)))
    assert isinstance(b.poll_events()[0], OrderAccepted)
    b.on_bar(bar(ny(2024, 3, 5, 16, 30), 101.0))  # after-hours: not the auction
    b.on_bar(bar(ny(2024, 3, 6, 9, 0), 102.0))  # pre-market: not the auction either
    assert b.poll_events() == []
    b.on_bar(bar(ny(2024, 3, 6, 9, 30), 103.0, close=110.0))
    b.on_bar(bar(ny(2024, 3, 6, 9, 31), 120.0))
    assert b.poll_events() == [
        OrderFilled(
            client_order_id="o",
            symbol="SPY",
            side=OrderSide.BUY,
            qty=D(10),
            price=D("103.10"),  # the open, 10 bps against the buyer
            commission=D("0.10"),
            ts=ny(2024, 3, 6, 9, 30),
            execution_id="SIM-00000001-1",
        )
    ]


def test_opg_decided_before_the_open_fills_at_that_days_open(calendar: SessionCalendar) -> None:
    b = broker(calendar)
    b.on_bar(bar(ny(2024, 3, 5, 15, 59), 100.0))
    b.submit(order("o", OPG, ny(2024, 3, 6, 8, 0)))
    b.on_bar(bar(ny(2024, 3, 6, 9, 30), 104.0))
    (fill,) = done(b.poll_events())
    assert isinstance(fill, OrderFilled)
    assert (fill.price, fill.ts) == (D("104.00"), ny(2024, 3, 6, 9, 30))


def test_opg_without_a_first_minute_at_the_open_fills_at_the_symbols_first_minute(
    calendar: SessionCalendar,
) -> None:
    b = broker(calendar)
    b.on_bar(bar(ny(2024, 3, 5, 15, 59), 100.0))
    b.submit(order("o", OPG, ny(2024, 3, 5, 16)))
    b.on_bar(bar(ny(2024, 3, 6, 9, 41), 99.0))
    (fill,) = done(b.poll_events())
    assert isinstance(fill, OrderFilled)
    assert (fill.price, fill.ts) == (D("99.00"), ny(2024, 3, 6, 9, 41))


def test_opg_on_daily_bars_fills_at_the_next_daily_bars_open(calendar: SessionCalendar) -> None:
    b = broker(calendar, NS_PER_DAY)
    b.on_bar(bar(ny(2024, 3, 5), 100.0, close=101.0))
    # The daily replay decides on Tuesday's bar at its end, Wednesday 00:00 New York.
    b.submit(order("o", OPG, ny(2024, 3, 6)))
    b.on_bar(bar(ny(2024, 3, 6), 102.0, close=107.0))
    (fill,) = done(b.poll_events())
    assert isinstance(fill, OrderFilled)
    assert (fill.price, fill.ts) == (D("102.00"), ny(2024, 3, 6))


def test_opg_skips_a_holiday(calendar: SessionCalendar) -> None:
    b = broker(calendar, NS_PER_DAY)
    b.on_bar(bar(ny(2024, 11, 27), 100.0))
    b.submit(order("o", OPG, ny(2024, 11, 28)))  # Thanksgiving: the next session is Friday
    b.on_bar(bar(ny(2024, 11, 29), 98.0))
    (fill,) = done(b.poll_events())
    assert isinstance(fill, OrderFilled)
    assert (fill.price, fill.ts) == (D("98.00"), ny(2024, 11, 29))


def test_opg_with_no_print_in_its_session_expires(calendar: SessionCalendar) -> None:
    b = broker(calendar)
    b.on_bar(bar(ny(2024, 3, 5, 15, 59), 100.0))
    b.submit(order("o", OPG, ny(2024, 3, 5, 16)))
    b.on_bar(bar(ny(2024, 3, 7, 9, 30), 100.0))  # halted all Wednesday
    assert done(b.poll_events()) == [
        OrderCanceled(
            client_order_id="o",
            symbol="SPY",
            ts=ny(2024, 3, 7, 9, 30),
            reason="expired: no opening auction print",
        )
    ]
    assert b.positions == {}


# -- cls ---------------------------------------------------------------------------------------


def test_cls_on_minutes_fills_at_the_last_minutes_close(calendar: SessionCalendar) -> None:
    b = broker(calendar, slippage_bps=10.0, account="margin")
    b.on_bar(bar(ny(2024, 3, 5, 15, 44), 100.0))
    b.submit(order("c", CLS, ny(2024, 3, 5, 15, 45), side=OrderSide.SELL))
    b.on_bar(bar(ny(2024, 3, 5, 15, 45), 100.0, close=101.0))
    b.on_bar(bar(ny(2024, 3, 5, 15, 58), 100.0, close=102.0))
    assert done(b.poll_events()) == []
    b.on_bar(bar(ny(2024, 3, 5, 15, 59), 103.0, close=104.0))
    (fill,) = done(b.poll_events())
    assert isinstance(fill, OrderFilled)
    assert (fill.side, fill.price, fill.ts) == (
        OrderSide.SELL,
        D("103.90"),  # the close, 10 bps against the seller
        ny(2024, 3, 5, 15, 59),
    )
    assert b.positions == {"SPY": D(-10)}


def test_cls_on_an_early_close_fills_at_13_00(calendar: SessionCalendar) -> None:
    b = broker(calendar)
    b.on_bar(bar(ny(2024, 11, 29, 12, 0), 100.0))
    b.submit(order("c", CLS, ny(2024, 11, 29, 12, 30)))
    b.on_bar(bar(ny(2024, 11, 29, 12, 59), 100.0, close=99.0))
    (fill,) = done(b.poll_events())
    assert isinstance(fill, OrderFilled)
    assert (fill.price, fill.ts) == (D("99.00"), ny(2024, 11, 29, 12, 59))


def test_cls_when_the_last_minute_comes_early_fills_once_the_session_is_over(
    calendar: SessionCalendar,
) -> None:
    b = broker(calendar)
    b.on_bar(bar(ny(2024, 3, 5, 15, 40), 100.0))
    b.submit(order("c", CLS, ny(2024, 3, 5, 15, 45)))
    b.on_bar(bar(ny(2024, 3, 5, 15, 57), 100.0, close=98.0))  # the symbol's last trade
    assert done(b.poll_events()) == []
    b.on_bar(bar(ny(2024, 3, 6, 9, 30), 90.0))
    (fill,) = done(b.poll_events())
    assert isinstance(fill, OrderFilled)
    assert (fill.price, fill.ts) == (D("98.00"), ny(2024, 3, 6, 9, 30))


def test_cls_after_the_close_is_for_the_next_session(calendar: SessionCalendar) -> None:
    b = broker(calendar)
    b.on_bar(bar(ny(2024, 3, 5, 15, 59), 100.0))
    b.submit(order("c", CLS, ny(2024, 3, 5, 16)))
    b.on_bar(bar(ny(2024, 3, 6, 9, 30), 101.0))
    assert done(b.poll_events()) == []
    b.on_bar(bar(ny(2024, 3, 6, 15, 59), 102.0, close=103.0))
    (fill,) = done(b.poll_events())
    assert isinstance(fill, OrderFilled)
    assert fill.price == D("103.00")


def test_cls_on_daily_bars_fills_at_the_daily_bars_close(calendar: SessionCalendar) -> None:
    b = broker(calendar, NS_PER_DAY)
    b.on_bar(bar(ny(2024, 3, 5), 100.0, close=101.0))
    # Decided on Tuesday's bar at Wednesday 00:00: Wednesday's close.
    b.submit(order("c", CLS, ny(2024, 3, 6)))
    assert done(b.poll_events()) == []
    b.on_bar(bar(ny(2024, 3, 6), 102.0, close=107.0))
    (fill,) = done(b.poll_events())
    assert isinstance(fill, OrderFilled)
    assert (fill.price, fill.ts) == (D("107.00"), ny(2024, 3, 6))
    # Decided within Wednesday's session after its daily bar: that bar holds the close.
    b.submit(order("d", CLS, ny(2024, 3, 6, 15, 45)))
    (fill,) = done(b.poll_events())
    assert isinstance(fill, OrderFilled)
    assert (fill.price, fill.ts) == (D("107.00"), ny(2024, 3, 6, 15, 45))


def test_cls_with_no_print_in_its_session_expires(calendar: SessionCalendar) -> None:
    b = broker(calendar, NS_PER_DAY)
    b.on_bar(bar(ny(2024, 3, 5), 100.0))
    b.submit(order("c", CLS, ny(2024, 3, 6)))
    b.on_bar(bar(ny(2024, 3, 7), 100.0))
    (canceled,) = done(b.poll_events())
    assert canceled == OrderCanceled(
        client_order_id="c",
        symbol="SPY",
        ts=ny(2024, 3, 7),
        reason="expired: no closing auction print",
    )


# -- what the broker cannot fill as an auction fills -------------------------------------------


@pytest.mark.parametrize(
    ("tif", "kwargs", "reason"),
    [
        (
            OPG,
            {"limit": "99"},
            "time_in_force opg needs a market order: the simulated broker fills only market"
            " orders in the opening auction",
        ),
        (
            CLS,
            {"limit": "99"},
            "time_in_force cls needs a market order: the simulated broker fills only market"
            " orders in the closing auction",
        ),
        (
            OPG,
            {"qty": "1.5"},
            "time_in_force opg needs a whole qty (Alpaca: fractional orders are day)",
        ),
    ],
)
def test_an_auction_order_it_cannot_fill_is_rejected(
    calendar: SessionCalendar, tif: TimeInForce, kwargs: dict[str, Any], reason: str
) -> None:
    b = broker(calendar)
    b.on_bar(bar(ny(2024, 3, 5, 15, 0), 100.0))
    b.submit(order("x", tif, ny(2024, 3, 5, 15, 1), **kwargs))
    assert b.poll_events() == [
        OrderRejected(client_order_id="x", symbol="SPY", ts=ny(2024, 3, 5, 15, 1), reason=reason)
    ]


def test_an_auction_order_needs_the_calendar_and_the_bar_length(
    calendar: SessionCalendar,
) -> None:
    for b in (broker(None), broker(calendar, None)):
        b.on_bar(bar(ny(2024, 3, 5, 15, 0), 100.0))
        b.submit(order("x", OPG, ny(2024, 3, 5, 16)))
        (rejected,) = b.poll_events()
        assert isinstance(rejected, OrderRejected)
        assert rejected.reason == (
            "time_in_force opg needs the simulated broker's calendar and bar length"
        )
    # Day orders do not need them.
    b = broker(None, None)
    b.on_bar(bar(ny(2024, 3, 5, 15, 0), 100.0))
    b.submit(order("d", TimeInForce.DAY, ny(2024, 3, 5, 15, 1)))
    b.on_bar(bar(ny(2024, 3, 5, 15, 1), 100.0))
    assert isinstance(b.poll_events()[-1], OrderFilled)


# -- cash and volume ---------------------------------------------------------------------------


def test_a_cash_opg_buy_fills_at_its_opening_price_once_the_sells_proceeds_arrive(
    calendar: SessionCalendar,
) -> None:
    b = broker(calendar, cash="1000")
    b.on_bar(bar(ny(2024, 3, 5, 15, 59), 100.0, symbol="AAA"))
    b.on_bar(bar(ny(2024, 3, 5, 15, 59), 50.0, symbol="ZZZ"))
    b.submit(order("z0", TimeInForce.DAY, ny(2024, 3, 5, 15, 59), qty="20", symbol="ZZZ"))
    b.on_bar(bar(ny(2024, 3, 5, 15, 59), 50.0, symbol="ZZZ"))
    assert (b.cash, b.positions) == (D(0), {"ZZZ": D(20)})
    # One rebalance at the next open: sell ZZZ, buy AAA; AAA's opening minute comes first.
    b.submit(order("s", OPG, ny(2024, 3, 5, 16), side=OrderSide.SELL, qty="20", symbol="ZZZ"))
    b.submit(order("b", OPG, ny(2024, 3, 5, 16), qty="9", symbol="AAA"))
    b.on_bar(bar(ny(2024, 3, 6, 9, 30), 100.0, close=140.0, symbol="AAA"))
    b.on_bar(bar(ny(2024, 3, 6, 9, 30), 50.0, symbol="ZZZ"))
    fills = [e for e in b.poll_events() if isinstance(e, OrderFilled)]
    assert [(e.client_order_id, e.price, e.ts) for e in fills] == [
        ("z0", D(50), ny(2024, 3, 5, 15, 59)),
        ("s", D(50), ny(2024, 3, 6, 9, 30)),
        ("b", D(100), ny(2024, 3, 6, 9, 30)),  # AAA's open, not its later prices
    ]
    assert (b.cash, b.positions) == (D(100), {"AAA": D(9)})


def test_a_cash_opg_buy_with_no_sell_due_is_rejected(calendar: SessionCalendar) -> None:
    b = broker(calendar, cash="100")
    b.on_bar(bar(ny(2024, 3, 5, 15, 59), 100.0))
    b.submit(order("b", OPG, ny(2024, 3, 5, 16), qty="2"))
    b.on_bar(bar(ny(2024, 3, 6, 9, 30), 100.0))
    (rejected,) = done(b.poll_events())
    assert rejected == OrderRejected(
        client_order_id="b",
        symbol="SPY",
        ts=ny(2024, 3, 6, 9, 30),
        reason="insufficient buying power: need 200.00, have 100",
    )


def test_what_the_volume_cap_leaves_of_an_auction_order_is_canceled(
    calendar: SessionCalendar,
) -> None:
    b = broker(calendar, max_volume_participation=0.1)
    b.on_bar(bar(ny(2024, 3, 5, 15, 59), 100.0))
    b.submit(order("o", OPG, ny(2024, 3, 5, 16), qty="12"))
    b.on_bar(bar(ny(2024, 3, 6, 9, 30), 100.0, volume=50))
    b.on_bar(bar(ny(2024, 3, 6, 9, 31), 100.0, volume=1000))
    partial, canceled = done(b.poll_events())
    assert isinstance(partial, OrderPartiallyFilled)
    assert (partial.qty, partial.leaves_qty) == (D(5), D(7))
    assert canceled == OrderCanceled(
        client_order_id="o",
        symbol="SPY",
        ts=ny(2024, 3, 6, 9, 30),
        reason="not filled in the opening auction (volume)",
    )
    assert b.positions == {"SPY": D(5)}


def test_auction_orders_ignore_fill_at_close(calendar: SessionCalendar) -> None:
    b = broker(calendar, fill_at="close")
    b.on_bar(bar(ny(2024, 3, 5, 15, 59), 100.0, close=101.0))
    b.submit(order("o", OPG, ny(2024, 3, 5, 16)))
    assert done(b.poll_events()) == []  # not filled at submit at the last close
    b.on_bar(bar(ny(2024, 3, 6, 9, 30), 105.0, close=106.0))
    (fill,) = done(b.poll_events())
    assert isinstance(fill, OrderFilled)
    assert fill.price == D("105.00")
