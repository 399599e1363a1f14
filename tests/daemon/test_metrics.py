"""Performance metrics against values computed by hand on small series."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from daemon.research.metrics import (
    F64,
    I64,
    Fill,
    benchmark_equity,
    cagr,
    calmar,
    compute_metrics,
    daily_returns,
    load_closes,
    max_drawdown,
    max_drawdown_days,
    parse_iso_ns,
    round_trip_pnls,
    sharpe,
    sortino,
    time_in_market,
    turnover,
    volatility,
    win_rate,
)
from feeds.bar import Bar
from feeds.errors import SourceError

DAY = 86_400 * 10**9


def arr(*values: float) -> F64:
    return np.array(values, dtype=np.float64)


def days(*offsets: float) -> I64:
    return np.array([int(d * DAY) for d in offsets], dtype=np.int64)


def test_cagr_over_two_years_of_365_25_days() -> None:
    # 100 -> 121 over 730.5 days = 2 years: (1.21) ** (1/2) - 1 = 0.1
    assert cagr(days(0, 100, 730.5), arr(100, 50, 121)) == pytest.approx(0.1)


def test_daily_returns_use_the_last_equity_of_each_new_york_date() -> None:
    times = parse_iso_ns(
        [
            "2024-01-02T15:00:00Z",  # Jan 2 NY
            "2024-01-02T20:00:00Z",  # Jan 2 NY
            "2024-01-03T02:00:00Z",  # still Jan 2 in New York (21:00): the day's last
            "2024-01-03T20:00:00Z",  # Jan 3 NY
            "2024-01-04T20:00:00Z",  # Jan 4 NY
        ]
    )
    returns = daily_returns(times, arr(1, 2, 100, 110, 99))
    # 110/100 - 1 = 0.1, 99/110 - 1 = -0.1
    assert returns == pytest.approx([0.1, -0.1])


def test_volatility_sharpe_and_sortino_of_daily_returns() -> None:
    r = arr(0.01, -0.02, 0.03)
    mean = (0.01 - 0.02 + 0.03) / 3  # 0.0066667
    std = math.sqrt(((0.01 - mean) ** 2 + (-0.02 - mean) ** 2 + (0.03 - mean) ** 2) / 2)
    downside = math.sqrt((0 + 0.02**2 + 0) / 3)
    assert volatility(r) == pytest.approx(std * math.sqrt(252))
    assert volatility(r) == pytest.approx(0.025166 * 15.874508, rel=1e-4)
    assert sharpe(r) == pytest.approx(mean / std * math.sqrt(252))
    assert sharpe(r) == pytest.approx(4.2053, rel=1e-4)
    assert sortino(r) == pytest.approx(mean / downside * math.sqrt(252))
    assert sortino(r) == pytest.approx(0.0066667 / 0.0115470 * 15.874508, rel=1e-4)


def test_sharpe_is_nan_without_variation() -> None:
    assert math.isnan(sharpe(arr(0.01, 0.01, 0.01)))
    assert math.isnan(sortino(arr(0.01, 0.02)))


def test_max_drawdown_and_its_duration_to_recovery() -> None:
    equity = arr(100, 120, 90, 110, 130, 117)
    # Worst fall: 120 -> 90 = 25%. High at day 1, back above 120 at day 4: 3 days;
    # the later fall from 130 (day 4) lasts to the end, 1 day.
    assert max_drawdown(equity) == pytest.approx(0.25)
    assert max_drawdown_days(days(0, 1, 2, 3, 4, 5), equity) == pytest.approx(3.0)


def test_drawdown_duration_runs_to_the_end_when_not_recovered() -> None:
    # High at day 0 (100), never regained: day 0 -> day 7 = 7 days.
    assert max_drawdown_days(days(0, 2, 7), arr(100, 90, 99)) == pytest.approx(7.0)
    assert max_drawdown_days(days(0, 1, 2), arr(100, 101, 102)) == 0.0


def test_calmar_is_cagr_over_max_drawdown() -> None:
    assert calmar(0.1, 0.25) == pytest.approx(0.4)
    assert math.isnan(calmar(0.1, 0.0))


def fill(symbol: str, side: str, qty: float, price: float) -> Fill:
    return Fill(ts=0, symbol=symbol, side=side, qty=qty, price=price, commission=1.0)


def test_turnover_is_traded_notional_over_mean_equity_per_year() -> None:
    fills = [fill("A", "buy", 10, 100), fill("A", "sell", 5, 100)]
    # (1000 + 500) / mean(50, 150) = 15, over 2 years = 7.5
    assert turnover(fills, arr(50, 150), 2.0) == pytest.approx(7.5)


def test_round_trips_are_matched_first_in_first_out_per_symbol() -> None:
    fills = [
        fill("A", "buy", 10, 10),
        fill("B", "sell", 5, 20),  # a short
        fill("A", "buy", 10, 12),
        fill("A", "sell", 15, 11),  # 10 * (11 - 10) + 5 * (11 - 12) = +5
        fill("B", "buy", 5, 18),  # short covered: 5 * (20 - 18) = +10
        fill("A", "sell", 5, 11),  # 5 * (11 - 12) = -5
        fill("Z", "buy", 3, 10),
        fill("Z", "sell", 5, 12),  # 3 * (12 - 10) = +6, then short 2 @ 12
        fill("Z", "buy", 2, 13),  # 2 * (12 - 13) = -2
    ]
    pnls = round_trip_pnls(fills)
    assert pnls == pytest.approx([5.0, 10.0, -5.0, 6.0, -2.0])
    assert win_rate(pnls) == pytest.approx(3 / 5)
    assert math.isnan(win_rate([]))


def test_time_in_market_counts_slices_with_gross_exposure() -> None:
    assert time_in_market(arr(0, 100, 0, 50)) == pytest.approx(0.5)


def test_benchmark_buys_equal_weights_at_the_first_slice_and_holds() -> None:
    prices = {
        "A": (np.array([1, 2, 3], dtype=np.int64), arr(10, 11, 12)),
        "B": (np.array([1, 3], dtype=np.int64), arr(20, 30)),  # no bar at 2: last close holds
    }
    # 500 in each: 50 A, 25 B. t2: 50*11 + 25*20 = 1050; t3: 50*12 + 25*30 = 1350.
    equity = benchmark_equity(prices, np.array([1, 2, 3], dtype=np.int64), 1000.0)
    assert equity == pytest.approx([1000, 1050, 1350])


def test_benchmark_needs_a_price_at_the_first_slice() -> None:
    prices = {"A": (np.array([5], dtype=np.int64), arr(10))}
    with pytest.raises(ValueError, match="first slice"):
        benchmark_equity(prices, np.array([1, 5], dtype=np.int64), 1000.0)


def test_load_closes_sorts_by_time_and_drops_nan() -> None:
    def bar(symbol: str, ts: int, close: float) -> tuple[Bar, int]:
        return Bar(symbol, ts, close, close, close, close, 1.0), 0

    closes = load_closes([bar("A", 2, 11.0), bar("B", 1, 5.0), bar("A", 1, 10.0),
                          bar("A", 3, math.nan)])  # fmt: skip
    assert closes["A"][0].tolist() == [1, 2]
    assert closes["A"][1].tolist() == [10.0, 11.0]
    assert closes["B"][1].tolist() == [5.0]


def write_folder(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "equity.csv").write_text(
        "time,cash,equity,gross_exposure,drawdown\n"
        "2024-01-01T00:00:00Z,100.00,100.00,0.00,0.0\n"
        "2024-06-01T00:00:00Z,30.00,80.00,50.00,0.2\n"
        "2025-12-31T12:00:00Z,121.00,121.00,0.00,0.0\n"
    )
    (out / "fills.csv").write_text(
        "time,client_order_id,symbol,side,qty,price,commission,execution_id\n"
        "2024-01-01T00:00:00Z,c1,A,buy,10,10,1.00,e1\n"
        "2024-06-01T00:00:00Z,c2,A,sell,10,12,1.00,e2\n"
    )


def test_compute_metrics_reads_the_replay_files(tmp_path: Path) -> None:
    write_folder(tmp_path)
    result = compute_metrics(tmp_path)
    m = result["strategy"]
    assert result["benchmark"] is None
    # 2024-01-01 -> 2025-12-31T12:00 = 366 + 364.5 = 730.5 days = 2 years; 1.21 ** 0.5 - 1
    assert m["cagr"] == pytest.approx(0.1)
    assert m["total_return"] == pytest.approx(0.21)
    assert m["max_drawdown"] == pytest.approx(0.2)
    assert m["max_drawdown_days"] == pytest.approx(730.5)
    assert m["calmar"] == pytest.approx(0.1 / 0.2)
    # daily returns: 80/100 - 1 = -0.2, 121/80 - 1 = 0.5125
    mean = (-0.2 + 0.5125) / 2
    std = math.sqrt(((-0.2 - mean) ** 2 + (0.5125 - mean) ** 2) / 1)
    assert m["sharpe"] == pytest.approx(mean / std * math.sqrt(252))
    # (100 + 120) / mean(100, 80, 121) / 2 years
    assert m["turnover"] == pytest.approx(220 / (301 / 3) / 2)
    assert m["win_rate"] == pytest.approx(1.0)
    assert m["time_in_market"] == pytest.approx(1 / 3)


def test_compute_metrics_names_a_missing_file(tmp_path: Path) -> None:
    write_folder(tmp_path)
    (tmp_path / "fills.csv").unlink()
    with pytest.raises(SourceError, match=re.escape("fills.csv")):
        compute_metrics(tmp_path)
