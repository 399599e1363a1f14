"""The ledger: average cost, realized P&L through a flip, marks, de-duplication."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.orders import OrderPartiallyFilled, OrderSide
from portfolio.ledger import Ledger, Position
from tests.portfolio.factories import fill

BUY, SELL = OrderSide.BUY, OrderSide.SELL
D = Decimal


def test_increase_partial_close_flip_and_close_by_hand() -> None:
    ledger = Ledger(D(10_000))
    ledger.apply_fill(fill(BUY, 10, 100, commission="1"))
    ledger.apply_fill(fill(BUY, 10, 110, commission="1"))
    assert ledger.positions["SPY"].avg_cost == D(105)
    assert ledger.cash == D(7898)  # 10,000 - 1,000 - 1 - 1,100 - 1

    ledger.apply_fill(fill(SELL, 5, 120, commission="1"))  # realizes 5 * (120 - 105)
    pos = ledger.positions["SPY"]
    assert (pos.qty, pos.avg_cost, pos.realized_pnl) == (D(15), D(105), D(75))
    assert ledger.cash == D(8497)

    ledger.apply_fill(fill(SELL, 25, 100, commission="1"))  # closes 15 at -5 each, opens -10
    pos = ledger.positions["SPY"]
    assert (pos.qty, pos.avg_cost, pos.realized_pnl) == (D(-10), D(100), D(0))
    assert ledger.cash == D(10_996)

    ledger.apply_fill(fill(BUY, 4, 90))  # covers 4 of the short: 4 * (100 - 90)
    assert ledger.positions["SPY"].qty == D(-6)
    assert ledger.realized_pnl == D(40)
    ledger.apply_fill(fill(BUY, 6, 95))  # closes: 6 * (100 - 95)
    assert "SPY" not in ledger.positions
    assert ledger.realized_pnl == D(70)
    assert ledger.commissions == D(4)
    assert ledger.cash == ledger.equity == D(10_066)  # start + realized - commissions


def test_a_repeated_execution_id_is_ignored() -> None:
    ledger = Ledger(D(1_000))
    partial = OrderPartiallyFilled(
        client_order_id="c",
        symbol="SPY",
        side=BUY,
        qty=D(2),
        price=D(100),
        commission=D("0.5"),
        ts=0,
        execution_id="e1",
        leaves_qty=D(3),
    )
    assert ledger.apply_fill(partial) is True
    before = ledger.snapshot()
    assert ledger.apply_fill(partial) is False
    assert ledger.snapshot() == before
    assert ledger.positions["SPY"].qty == D(2)
    assert ledger.cash == D("799.5")


def test_mark_updates_equity_high_water_and_drawdown() -> None:
    ledger = Ledger(D(10_000))
    ledger.apply_fill(fill(BUY, 10, 100))
    ledger.mark({"SPY": 110.5, "QQQ": 1.0})  # QQQ is not held: ignored
    assert set(ledger.positions) == {"SPY"}
    assert ledger.equity == ledger.high_water == D("10105.0")
    assert ledger.unrealized_pnl() == D("105.0")
    ledger.mark({"QQQ": 2.0})  # SPY did not print: it keeps its mark
    assert ledger.equity == D("10105.0")
    ledger.mark({"SPY": 99.45})
    assert ledger.equity == D("9994.50")
    assert ledger.high_water == D("10105.0")
    assert ledger.drawdown == float(D("110.5") / D("10105"))
    assert ledger.weight("SPY") == float(D("994.5") / D("9994.5"))
    assert ledger.weight("QQQ") == 0.0


def test_exposure_and_weights_of_long_and_short() -> None:
    ledger = Ledger(D(10_000))
    ledger.apply_fill(fill(BUY, 10, 100, symbol="AAA"))
    ledger.apply_fill(fill(SELL, 20, 50, symbol="BBB"))
    ledger.mark({"AAA": 100.0, "BBB": 50.0})
    assert ledger.gross_exposure == D(2_000)
    assert ledger.net_exposure == D(0)
    assert ledger.equity == D(10_000)
    assert ledger.weight("AAA") == 0.1
    assert ledger.weight("BBB") == -0.1
    ledger.mark({"BBB": 60.0})  # the short loses 200
    assert ledger.equity == D(9_800)
    assert ledger.unrealized_pnl() == D(-200)


def test_snapshot_is_json_friendly() -> None:
    ledger = Ledger(D(1_000))
    ledger.apply_fill(fill(BUY, 3, "10.25", commission="0.01"))
    snap = ledger.snapshot()
    assert orjson.loads(orjson.dumps(snap)) == snap
    assert snap["cash"] == "969.24"
    assert snap["positions"]["SPY"]["qty"] == "3"
    assert snap["positions"]["SPY"]["avg_cost"] == "10.25"


def test_position_is_a_plain_slotted_record() -> None:
    pos = Position(symbol="X", qty=D(1), avg_cost=D(1), realized_pnl=D(0), last_price=D(1))
    assert not hasattr(pos, "__dict__")


def test_incremental_sums_match_a_naive_recomputation() -> None:
    rng = random.Random(7)
    ledger = Ledger(D(50_000))
    symbols = ["AAA", "BBB", "CCC"]
    for step in range(400):
        symbol = rng.choice(symbols)
        if step % 3:
            side = rng.choice([BUY, SELL])
            price = D(rng.randint(5_000, 15_000)) / 100
            ledger.apply_fill(fill(side, rng.randint(1, 40), str(price), symbol=symbol))
        else:
            ledger.mark(
                {s: rng.randint(5_000, 15_000) / 100 for s in symbols if rng.random() < 0.7}
            )
        values = [p.qty * p.last_price for p in ledger.positions.values()]
        assert ledger.net_exposure == sum(values, start=D(0))
        assert ledger.gross_exposure == sum((abs(v) for v in values), start=D(0))
        assert ledger.equity == ledger.cash + ledger.net_exposure
        assert ledger.high_water >= ledger.equity


def test_float_mirror_tracks_the_exact_values_and_high_water_stays_exact() -> None:
    rng = random.Random(3)
    ledger = Ledger(D(50_000))
    symbols = ["AAA", "BBB", "CCC"]
    high = D(50_000)
    for step in range(600):
        symbol = rng.choice(symbols)
        if step % 4 == 0:
            side = rng.choice([BUY, SELL])
            price = D(rng.randint(5_000, 15_000)) / 100
            ledger.apply_fill(fill(side, rng.randint(1, 40), str(price), symbol=symbol))
        else:
            ledger.mark({s: rng.randint(9_000, 11_000) / 100 for s in symbols})
        # The naive reference: exact Decimal sums from the positions.
        equity = ledger.cash + sum((p.qty * p.last_price for p in ledger.positions.values()), D(0))
        high = max(high, equity)
        assert ledger.equity == equity
        assert ledger.high_water == high
        assert ledger.drawdown == pytest.approx(float((high - equity) / high), abs=1e-12)
        assert ledger.equity_float == pytest.approx(float(equity), rel=1e-12)
        assert ledger.qty_float == {s: float(p.qty) for s, p in ledger.positions.items()}
        for p in ledger.positions.values():
            assert p.last_price == D(repr(float(p.last_price)))  # a fill price or a close


def test_a_repeated_close_after_a_fill_is_still_marked() -> None:
    ledger = Ledger(D(10_000))
    ledger.mark({"SPY": 100.0})
    ledger.apply_fill(fill(BUY, 10, "100.00"))
    ledger.mark({"SPY": 100.0})
    assert str(ledger.positions["SPY"].last_price) == "100.0"  # converted from the close


STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("fill"),
            st.sampled_from(["AAA", "BBB", "CCC", "DDD"]),
            st.sampled_from([BUY, SELL]),
            st.one_of(
                st.integers(min_value=1, max_value=10**6).map(D),
                st.integers(min_value=1, max_value=10**15).map(lambda n: D(n).scaleb(-9)),
            ),
            st.integers(min_value=1, max_value=10**8).map(lambda c: D(c).scaleb(-4)),
        ),
        st.tuples(
            st.just("mark"),
            st.sampled_from(["AAA", "BBB", "CCC", "DDD"]),
            st.floats(min_value=1e-3, max_value=1e5, allow_nan=False),
        ),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12).map(lambda c: D(c).scaleb(-2)), STEPS)
def test_the_float_equity_is_within_its_error_bound(cash: Decimal, steps: list[Any]) -> None:
    """Leveraged, short, fractional, far from the cent grid: the float mirror of equity stays
    within `equity_float_error` of the exact equity (the rebalancer's float check relies on it)."""
    ledger = Ledger(cash)
    for n, step in enumerate(steps):
        if step[0] == "fill":
            _, symbol, side, qty, price = step
            ledger.apply_fill(fill(side, str(qty), str(price), symbol=symbol, execution_id=f"x{n}"))
        else:
            _, symbol, px = step
            ledger.mark({symbol: px})
        error = abs(ledger.equity - Decimal(ledger.equity_float))
        assert error <= Decimal(ledger.equity_float_error())
