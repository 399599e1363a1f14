"""The rebalancer: targets to orders, by hand-computed quantities."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from brokers.orders import OrderSide, OrderType, SubmitOrder
from composer.targets import Targets
from feeds.errors import ConfigError, InvariantViolation
from portfolio.ledger import Ledger
from portfolio.rebalance import Rebalancer, RebalanceSettings, base36
from tests.portfolio.factories import ledger_with

D = Decimal
TS = 1_700_000_040 * 1_000_000_000
BUY, SELL = OrderSide.BUY, OrderSide.SELL


def rebalance(
    weights: dict[str, float],
    ledger: Ledger,
    prices: dict[str, float],
    open_qty: dict[str, Decimal] | None = None,
    **settings: Any,
) -> list[SubmitOrder]:
    rebalancer = Rebalancer(RebalanceSettings(**settings), id_prefix="run1")
    return rebalancer.orders(Targets(ts=TS, weights=weights), ledger, prices, open_qty or {}, TS)


def trades(orders: list[SubmitOrder]) -> list[tuple[str, OrderSide, Decimal]]:
    return [(o.symbol, o.side, o.qty) for o in orders]


def test_target_quantity_is_weight_times_equity_over_price() -> None:
    orders = rebalance({"SPY": 0.5}, Ledger(D(100_000)), {"SPY": 100.0})
    assert trades(orders) == [("SPY", BUY, D(500))]
    (order,) = orders
    assert (order.order_type, order.ts, order.limit_price) == (OrderType.MARKET, TS, None)


def test_whole_shares_round_toward_zero_fractional_keeps_nine_decimals() -> None:
    ledger = Ledger(D(100_000))
    assert trades(rebalance({"SPY": 0.5}, ledger, {"SPY": 300.0})) == [("SPY", BUY, D(166))]
    assert trades(rebalance({"SPY": -0.5}, ledger, {"SPY": 300.0})) == [("SPY", SELL, D(166))]
    assert trades(rebalance({"SPY": 0.5}, ledger, {"SPY": 300.0}, fractional=True)) == [
        ("SPY", BUY, D("166.666666666"))
    ]


def test_no_order_within_the_no_trade_band() -> None:
    ledger = ledger_with(100_000, SPY=(100, 100.0))  # weight 0.10
    assert rebalance({"SPY": 0.12}, ledger, {"SPY": 100.0}) == []
    assert rebalance({"SPY": 0.08}, ledger, {"SPY": 100.0}) == []
    assert trades(rebalance({"SPY": 0.13}, ledger, {"SPY": 100.0})) == [("SPY", BUY, D(30))]


def test_open_orders_count_as_current() -> None:
    ledger = Ledger(D(100_000))
    assert rebalance({"SPY": 0.5}, ledger, {"SPY": 100.0}, {"SPY": D(500)}) == []
    assert trades(rebalance({"SPY": 0.5}, ledger, {"SPY": 100.0}, {"SPY": D(200)})) == [
        ("SPY", BUY, D(300))
    ]


def test_no_trade_only_takes_back_part_of_an_open_order() -> None:
    prices = {"SPY": 100.0}
    kw: dict[str, Any] = {"no_trade_band": 0.0, "min_trade_notional": 0}
    # A buy of 500 is still open: a slightly lower target would sell shares not held yet.
    assert rebalance({"SPY": 0.495}, Ledger(D(100_000)), prices, {"SPY": D(500)}, **kw) == []
    held = ledger_with(100_000, SPY=(300, 100.0))
    assert rebalance({"SPY": 0.45}, held, prices, {"SPY": D(200)}, **kw) == []
    assert rebalance({"SPY": 0.3}, held, prices, {"SPY": D(200)}, **kw) == []  # target = held
    # Below what is held the sell trades, and counts the open buy as if it fills.
    assert trades(rebalance({"SPY": 0.25}, held, prices, {"SPY": D(200)}, **kw)) == [
        ("SPY", SELL, D(250))
    ]
    # The same for an open sell and a slightly higher target.
    assert rebalance({"SPY": 0.2}, held, prices, {"SPY": D(-150)}, **kw) == []
    assert trades(rebalance({"SPY": 0.35}, held, prices, {"SPY": D(-150)}, **kw)) == [
        ("SPY", BUY, D(200))
    ]
    # A close (target 0) still nets the open order out.
    assert trades(rebalance({"SPY": 0.0}, Ledger(D(100_000)), prices, {"SPY": D(500)})) == [
        ("SPY", SELL, D(500))
    ]


def test_trades_below_min_notional_are_skipped() -> None:
    ledger = ledger_with(100_000, SPY=(100, 100.0))
    kw: dict[str, Any] = {"no_trade_band": 0.0, "min_trade_notional": D(500)}
    assert rebalance({"SPY": 0.104}, ledger, {"SPY": 100.0}, **kw) == []  # 4 shares = 400
    assert trades(rebalance({"SPY": 0.106}, ledger, {"SPY": 100.0}, **kw)) == [("SPY", BUY, D(6))]


def test_a_zero_target_always_closes_even_small_or_absent_positions() -> None:
    ledger = ledger_with(100_000, SPY=(1, 100.0), QQQ=(-2, 50.0))
    orders = rebalance({"SPY": 0.0}, ledger, {"SPY": 100.0, "QQQ": 50.0}, no_trade_band=0.5)
    assert trades(orders) == [("SPY", SELL, D(1)), ("QQQ", BUY, D(2))]


def test_a_held_symbol_without_a_fresh_price_uses_its_mark() -> None:
    ledger = ledger_with(100_000, SPY=(10, 100.0))
    assert trades(rebalance({}, ledger, {})) == [("SPY", SELL, D(10))]
    # NEW has no price at all: skipped
    assert [o.symbol for o in rebalance({"NEW": 0.5}, ledger, {})] == ["SPY"]


def test_sells_first_then_buys_each_in_symbol_order_with_sequence_numbers() -> None:
    ledger = ledger_with(100_000, DDD=(200, 100.0), BBB=(200, 100.0))
    prices = {"AAA": 100.0, "BBB": 100.0, "CCC": 100.0, "DDD": 100.0}
    orders = rebalance({"AAA": 0.1, "BBB": 0.0, "CCC": 0.1, "DDD": 0.05}, ledger, prices)
    assert trades(orders) == [
        ("BBB", SELL, D(200)),
        ("DDD", SELL, D(150)),
        ("AAA", BUY, D(100)),
        ("CCC", BUY, D(100)),
    ]
    assert [o.client_order_id.rsplit("-", 1)[1] for o in orders] == ["0", "1", "2", "3"]


def test_limit_orders_are_marketable_by_the_offset_on_the_tick() -> None:
    ledger = ledger_with(100_000, SPY=(100, 123.45))
    orders = rebalance(
        {"SPY": 0.0, "QQQ": 0.1}, ledger, {"SPY": 123.45, "QQQ": 100.0}, order_type="limit"
    )
    sell, buy = orders
    assert (sell.order_type, sell.limit_price) == (OrderType.LIMIT, D("123.32"))  # 123.32655
    assert buy.limit_price == D("100.10")


def test_client_order_id_format_and_determinism() -> None:
    rebalancer = Rebalancer(RebalanceSettings(), id_prefix="run1")
    cid = rebalancer.client_order_id(TS, "SPY", 3)
    prefix, stamp, symbol, seq = cid.split("-")
    assert (prefix, symbol, seq) == ("run1", "SPY", "3")
    assert int(stamp, 36) == TS // 1_000_000_000
    assert stamp == base36(1_700_000_040) == np.base_repr(1_700_000_040, 36).lower()
    assert cid == Rebalancer(RebalanceSettings(), id_prefix="run1").client_order_id(TS, "SPY", 3)
    ledger = ledger_with(100_000, SPY=(100, 100.0))
    first = rebalance({"QQQ": 0.3, "SPY": 0.0}, ledger, {"QQQ": 10.0, "SPY": 100.0})
    again = rebalance({"QQQ": 0.3, "SPY": 0.0}, ledger, {"QQQ": 10.0, "SPY": 100.0})
    assert first == again
    assert all(o.client_order_id.isascii() and len(o.client_order_id) <= 48 for o in first)


def test_client_order_id_longer_than_48_is_an_invariant_violation() -> None:
    rebalancer = Rebalancer(RebalanceSettings(), id_prefix="p" * 16)
    assert len(rebalancer.client_order_id(TS, "S" * 22, 9)) == 48
    with pytest.raises(InvariantViolation, match="48"):
        rebalancer.client_order_id(TS, "S" * 23, 9)


@pytest.mark.parametrize("prefix", ["", "p" * 17, "run 1", "r\u00e9un"])
def test_bad_id_prefix_is_a_config_error(prefix: str) -> None:
    with pytest.raises(ConfigError, match="id_prefix"):
        Rebalancer(RebalanceSettings(), id_prefix=prefix)


@pytest.mark.parametrize(
    "bad", [{"no_trade_band": 1.0}, {"min_trade_notional": -1}, {"order_type": "stop"}, {"x": 1}]
)
def test_settings_reject_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RebalanceSettings(**bad)


def test_buys_keep_the_cash_buffer_uninvested() -> None:
    ledger = Ledger(D(100_000))
    # 1.0 of 100,000 at 100 would be 1,000 shares; 0.5% of equity (500) stays as cash.
    assert trades(rebalance({"SPY": 1.0}, ledger, {"SPY": 100.0})) == [("SPY", BUY, D(995))]
    assert trades(rebalance({"SPY": 1.0}, ledger, {"SPY": 100.0}, cash_buffer=0.0)) == [
        ("SPY", BUY, D(1000))
    ]
    # Within the cash, the buffer changes nothing.
    assert trades(rebalance({"SPY": 0.5}, ledger, {"SPY": 100.0})) == [("SPY", BUY, D(500))]


def test_a_margin_account_may_buy_beyond_its_cash() -> None:
    rebalancer = Rebalancer(RebalanceSettings(), id_prefix="run1", cash_limited=False)
    targets = Targets(ts=TS, weights={"SPY": 0.75, "QQQ": 0.75})
    orders = rebalancer.orders(targets, Ledger(D(100_000)), {"SPY": 100.0, "QQQ": 50.0}, {}, TS)
    # 1.5x gross: 75,000 of each, 150,000 in all, on 100,000 of cash
    assert trades(orders) == [("QQQ", BUY, D(1500)), ("SPY", BUY, D(750))]


def test_buys_count_the_proceeds_of_this_rebalances_sells() -> None:
    ledger = ledger_with(100_000, AAA=(500, 100.0))  # cash 50,000, equity 100,000
    orders = rebalance({"AAA": 0.0, "BBB": 1.0}, ledger, {"AAA": 100.0, "BBB": 100.0})
    # 50,000 cash + 50,000 of sells - 500 buffer = 99,500: 995 shares.
    assert trades(orders) == [("AAA", SELL, D(500)), ("BBB", BUY, D(995))]


def test_open_buys_notional_is_not_available_and_buys_scale_by_one_factor() -> None:
    ledger = Ledger(D(100_000))
    prices = {"AAA": 100.0, "BBB": 100.0, "CCC": 50.0}
    # 100,000 - 500 buffer - 200 x 100 open = 79,500 for 45,000 + 40,000 of buys:
    # factor 79,500 / 85,000; 450 x 0.93529 = 420.88 and 800 x 0.93529 = 748.24, rounded down.
    orders = rebalance({"AAA": 0.2, "BBB": 0.45, "CCC": 0.4}, ledger, prices, {"AAA": D(200)})
    assert trades(orders) == [("BBB", BUY, D(420)), ("CCC", BUY, D(748))]


def test_limit_buys_are_fitted_at_their_limit_price() -> None:
    ledger = Ledger(D(100_000))
    orders = rebalance({"SPY": 1.0}, ledger, {"SPY": 100.0}, order_type="limit")
    # 99,500 / (1,000 x 100.10) x 1,000 = 994.0 shares at most.
    assert trades(orders) == [("SPY", BUY, D(994))]
    (order,) = orders
    assert order.limit_price is not None
    assert order.qty * order.limit_price <= D(99_500)


def test_no_buys_when_no_cash_is_left() -> None:
    ledger = ledger_with(1_000, SPY=(10, 100.0))  # all in SPY: cash 0, equity 1,000
    prices = {"SPY": 100.0, "QQQ": 10.0}
    # The sell frees 500; less the 5 buffer, 495 buys 49 of the 50 QQQ.
    assert trades(rebalance({"SPY": 0.5, "QQQ": 0.5}, ledger, prices)) == [
        ("SPY", SELL, D(5)),
        ("QQQ", BUY, D(49)),
    ]
    assert rebalance({"SPY": 1.0, "QQQ": 0.5}, ledger, prices) == []


def test_settings_cash_buffer_must_be_a_fraction() -> None:
    with pytest.raises(ValidationError, match="cash_buffer"):
        RebalanceSettings(cash_buffer=1.0)
    with pytest.raises(ValidationError, match="cash_buffer"):
        RebalanceSettings(cash_buffer=-0.1)
