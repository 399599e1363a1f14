"""The risk gate: each limit, and the kill switch's trip, latch, effect and reset."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from brokers.orders import OrderSide, SubmitOrder
from portfolio.events import KillSwitchTripped, OrderClipped, OrderDenied, RiskEvent
from portfolio.ledger import Ledger
from portfolio.order_book import OrderBook
from portfolio.risk import RiskGate, RiskSettings
from tests.portfolio.factories import ledger_with, market

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
NS = 1_000_000_000


def utc_ns(year: int, month: int, day: int, hour: int, minute: int) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()) * NS


def gate(fractional: bool = False, **settings: Any) -> RiskGate:
    return RiskGate(RiskSettings(**settings), fractional=fractional)


def check(
    g: RiskGate,
    order: SubmitOrder,
    ledger: Ledger,
    prices: dict[str, float] | None = None,
    open_qty: dict[str, Decimal] | None = None,
) -> tuple[SubmitOrder | None, RiskEvent | None]:
    return g.check(order, ledger, prices or {"SPY": 100.0}, open_qty or {})


def approved(result: tuple[SubmitOrder | None, RiskEvent | None]) -> Decimal | None:
    order, _ = result
    return None if order is None else order.qty


def test_an_order_within_all_limits_passes_unchanged() -> None:
    order = market(BUY, 100)
    assert check(gate(), order, Ledger(D(100_000))) == (order, None)


def test_clip_to_max_order_notional_keeps_the_id() -> None:
    order = market(BUY, 200, cid="keep-me")
    clipped, event = check(gate(max_order_notional=D(10_000)), order, Ledger(D(100_000)))
    assert clipped is not None
    assert (clipped.qty, clipped.client_order_id) == (D(100), "keep-me")
    assert event == OrderClipped(
        client_order_id="keep-me",
        symbol="SPY",
        side=BUY,
        requested_qty=D(200),
        approved_qty=D(100),
        reason="max_order_notional",
        ts=0,
    )


def test_clip_to_max_weight_counts_held_and_open_quantity() -> None:
    assert approved(check(gate(), market(BUY, 300), Ledger(D(100_000)))) == D(250)
    ledger = ledger_with(100_000, SPY=(200, 100.0))  # 20% held, 0.3% more on order
    result = check(gate(), market(BUY, 100), ledger, open_qty={"SPY": D(30)})
    assert approved(result) == D(20)
    assert isinstance(result[1], OrderClipped)
    assert result[1].reason == "max_weight"


def test_max_weight_applies_to_shorts_too() -> None:
    result = check(gate(allow_short=True), market(SELL, 300), Ledger(D(100_000)))
    assert approved(result) == D(250)


def test_clip_to_max_gross_with_other_symbols_as_held() -> None:
    ledger = ledger_with(100_000, AAA=(400, 100.0))
    prices = {"SPY": 100.0, "AAA": 100.0}
    g = gate(max_gross=0.5, max_weight=0.45)
    result = check(g, market(BUY, 200), ledger, prices)  # room: 0.5 - 0.4 = 10,000
    assert approved(result) == D(100)
    assert isinstance(result[1], OrderClipped)
    assert result[1].reason == "max_gross"
    # Other symbols are valued at this slice's prices: AAA at 110 leaves room for 60.
    assert approved(check(g, market(BUY, 200), ledger, {"SPY": 100.0, "AAA": 110.0})) == D(60)


def test_limits_never_block_a_reduction() -> None:
    ledger = ledger_with(100_000, SPY=(300, 100.0))  # 30%, above a 10% limit
    g = gate(max_weight=0.1, max_gross=0.1)
    order = market(SELL, 50)
    assert check(g, order, ledger) == (order, None)
    _, event = check(g, market(BUY, 10), ledger)
    assert isinstance(event, OrderDenied)
    assert event.reason == "max_weight"


def test_no_short_clips_to_the_held_quantity_less_open_sells_or_denies() -> None:
    g = gate()
    _, event = check(g, market(SELL, 10), Ledger(D(100_000)))
    assert event == OrderDenied(
        client_order_id="o1", symbol="SPY", side=SELL, qty=D(10), reason="no_short", ts=0
    )
    ledger = ledger_with(100_000, SPY=(10, 100.0))
    result = check(g, market(SELL, 10), ledger, open_qty={"SPY": D(-4)})
    assert approved(result) == D(6)
    assert isinstance(result[1], OrderClipped)
    assert result[1].reason == "no_short"
    # An open buy may never fill: it does not make more shares sellable.
    assert approved(check(g, market(SELL, 15), ledger, open_qty={"SPY": D(5)})) == D(10)
    order = market(SELL, 10)
    assert check(gate(allow_short=True), order, Ledger(D(100_000))) == (order, None)


def test_a_clip_below_one_share_is_a_denial_unless_fractional() -> None:
    ledger = Ledger(D(100_000))
    prices = {"SPY": 200.0}
    _, event = check(gate(max_order_notional=D(150)), market(BUY, 5), ledger, prices)
    assert isinstance(event, OrderDenied)
    assert event.reason == "max_order_notional"
    result = check(gate(True, max_order_notional=D(150)), market(BUY, 5), ledger, prices)
    assert approved(result) == D("0.75")


def test_whole_share_clips_round_down() -> None:
    result = check(
        gate(max_order_notional=D(1_000)), market(BUY, 50), Ledger(D(100_000)), {"SPY": 30.0}
    )
    assert approved(result) == D(33)  # 1,000 / 30 = 33.3


def test_no_price_is_a_denial() -> None:
    _, event = gate().check(market(BUY, 1), Ledger(D(100_000)), {}, {})
    assert isinstance(event, OrderDenied)
    assert event.reason == "no_price"


# 2024-03-05 10:00 New York.
DAY1 = utc_ns(2024, 3, 5, 15, 0)


def test_kill_switch_trips_at_max_drawdown_latches_and_gates_orders() -> None:
    g = gate(max_drawdown=0.10, daily_loss_limit=0.5, allow_short=True, max_weight=0.9)
    ledger = ledger_with(100_000, SPY=(500, 100.0))
    assert g.on_mark(DAY1, ledger) is None
    ledger.mark({"SPY": 120.0})  # equity 110,000: the high-water mark
    assert g.on_mark(DAY1 + 60 * NS, ledger) is None
    ledger.mark({"SPY": 98.0})  # 99,000: drawdown 11,000 / 110,000 = 0.1 exactly
    event = g.on_mark(DAY1 + 120 * NS, ledger)
    assert event == KillSwitchTripped(
        ts=DAY1 + 120 * NS, reason="max_drawdown", equity=D("99000.0"), value=0.1, limit=0.1
    )
    assert (g.kill_switch, g.kill_reason) == (True, "max_drawdown")
    ledger.mark({"SPY": 90.0})
    assert g.on_mark(DAY1 + 180 * NS, ledger) is None  # latched: no second event
    ledger.mark({"SPY": 130.0})
    g.on_mark(DAY1 + 240 * NS, ledger)
    assert g.kill_switch  # recovery does not unlatch it

    prices = {"SPY": 130.0}
    _, denied = g.check(market(BUY, 1), ledger, prices, {})
    assert isinstance(denied, OrderDenied)
    assert denied.reason == "kill_switch"
    reduce = market(SELL, 100)
    assert g.check(reduce, ledger, prices, {}) == (reduce, None)
    flip, clipped = g.check(market(SELL, 600), ledger, prices, {})  # would cross zero
    assert flip is not None
    assert flip.qty == D(500)
    assert isinstance(clipped, OrderClipped)
    assert clipped.reason == "kill_switch"

    g.reset()
    assert (g.kill_switch, g.kill_reason) == (False, None)
    order = market(BUY, 1)
    assert g.check(order, ledger, prices, {}) == (order, None)


def test_kill_switch_trips_at_the_daily_loss_from_the_days_first_mark() -> None:
    g = gate(daily_loss_limit=0.05, max_drawdown=0.5)
    ledger = ledger_with(100_000, SPY=(500, 100.0))
    assert g.on_mark(DAY1, ledger) is None
    ledger.mark({"SPY": 110.0})  # 105,000 at the day-1 close
    assert g.on_mark(DAY1 + 6 * 3600 * NS, ledger) is None
    day2 = DAY1 + 24 * 3600 * NS
    assert g.on_mark(day2, ledger) is None  # day 2 starts at 105,000
    assert g.day_start_equity == D("105000.0")
    ledger.mark({"SPY": 99.6})  # 99,800: 4.95% down on the day
    assert g.on_mark(day2 + 60 * NS, ledger) is None
    ledger.mark({"SPY": 99.5})  # 99,750: 5,250 / 105,000 = 5% down
    event = g.on_mark(day2 + 120 * NS, ledger)
    assert isinstance(event, KillSwitchTripped)
    assert (event.reason, event.value, event.limit) == ("daily_loss", 0.05, 0.05)
    assert g.kill_reason == "daily_loss"


def test_the_trading_day_rolls_over_at_local_midnight_not_utc() -> None:
    g = gate(daily_loss_limit=0.05, max_drawdown=0.5)
    ledger = ledger_with(100_000, SPY=(500, 100.0))
    g.on_mark(DAY1, ledger)
    ledger.mark({"SPY": 88.0})  # 94,000: 6% down
    # 20:00 New York is 01:00 UTC of the next UTC date: still the same trading day.
    event = g.on_mark(utc_ns(2024, 3, 6, 1, 0), ledger)
    assert isinstance(event, KillSwitchTripped)
    assert event.reason == "daily_loss"

    other = gate(daily_loss_limit=0.05, max_drawdown=0.5, day_timezone="UTC")
    ledger = ledger_with(100_000, SPY=(500, 100.0))
    other.on_mark(DAY1, ledger)
    ledger.mark({"SPY": 88.0})
    assert other.on_mark(utc_ns(2024, 3, 6, 1, 0), ledger) is None  # a new UTC day


@pytest.mark.parametrize(
    "bad",
    [
        {"max_weight": 0},
        {"daily_loss_limit": 1.0},
        {"max_drawdown": 0},
        {"max_order_notional": 0},
        {"on_kill": "panic"},
        {"day_timezone": "Mars/Olympus"},
        {"typo": 1},
    ],
)
def test_settings_reject_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RiskSettings(**bad)


def test_unknown_timezone_message_names_it() -> None:
    with pytest.raises(ValidationError, match="unknown IANA time zone 'Mars/Olympus'"):
        RiskSettings(day_timezone="Mars/Olympus")


def test_three_half_buys_in_one_flat_slice_stay_within_max_gross() -> None:
    """Each approved order is in the order book before the next is checked (as the engine
    does it), so the gate sees the slice's earlier buys in other symbols."""
    g = gate(max_weight=0.6, max_gross=1.0)
    ledger = Ledger(D(100_000))
    prices = {"AAA": 100.0, "BBB": 50.0, "CCC": 20.0}
    book = OrderBook()
    results = []
    for n, (symbol, qty) in enumerate((("AAA", 500), ("BBB", 1000), ("CCC", 2500))):
        order, event = g.check(
            market(BUY, qty, symbol=symbol, cid=f"o{n}"), ledger, prices, book.open_qty()
        )
        results.append((order, event))
        if order is not None:
            book.on_submit(order)
    assert [approved(r) for r in results] == [D(500), D(1000), None]
    _, event = results[2]
    assert isinstance(event, OrderDenied)
    assert event.reason == "max_gross"
    gross = sum(abs(q) * D(repr(prices[s])) for s, q in book.open_qty().items())
    assert gross <= ledger.equity


def test_the_third_half_buy_is_clipped_to_the_gross_room_left() -> None:
    g = gate(max_weight=0.6, max_gross=1.2)
    ledger = Ledger(D(100_000))
    prices = {"AAA": 100.0, "BBB": 100.0, "SPY": 100.0}
    open_qty = {"AAA": D(500), "BBB": D(500)}  # approved earlier in the slice
    result = check(g, market(BUY, 500), ledger, prices, open_qty)
    assert approved(result) == D(200)
    assert isinstance(result[1], OrderClipped)
    assert result[1].reason == "max_gross"


def test_open_orders_of_other_symbols_count_at_their_remaining_quantity() -> None:
    g = gate(max_weight=0.9, max_gross=1.0)
    ledger = ledger_with(100_000, AAA=(200, 100.0))  # 20,000 held
    prices = {"SPY": 100.0, "AAA": 100.0, "BBB": 50.0}
    # AAA: 300 more on order (50,000 held and open); BBB: 400 open, not held (20,000).
    open_qty = {"AAA": D(300), "BBB": D(400)}
    assert approved(check(g, market(BUY, 500), ledger, prices, open_qty)) == D(300)
    # An open sell of a held position frees its room, as if it fills.
    assert approved(check(g, market(BUY, 500), ledger, prices, {"AAA": D(-200)})) == D(500)


def test_an_open_order_without_any_price_limits_to_the_reducing_part() -> None:
    g = gate(max_weight=0.9)
    ledger = ledger_with(100_000, SPY=(100, 100.0))
    open_qty = {"ZZZ": D(10)}  # restored from the journal, no bar seen yet
    result = check(g, market(BUY, 50), ledger, {"SPY": 100.0}, open_qty)
    assert result[0] is None
    assert isinstance(result[1], OrderDenied)
    assert result[1].reason == "no_price"
    order = market(SELL, 50)
    assert check(g, order, ledger, {"SPY": 100.0}, open_qty) == (order, None)
