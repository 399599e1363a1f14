"""Performance metrics of a replay, computed from its output folder.

Pure functions on numpy arrays (times are UTC ns, equity in account currency), and
`compute_metrics`, which reads a replay's `equity.csv` and `fills.csv` and returns them all, for
the strategy and for a buy-and-hold benchmark of the same universe.

The one place where Sharpe, volatility and drawdown are computed: the replay's summary (through
`sharpe_of_daily`), the walk-forward's figures and the report all call these.

Conventions: daily returns use the last equity of each America/New_York date; annualization uses
252 trading days for returns and 365.25 calendar days for elapsed time; the risk-free rate is 0.
Metrics that are undefined on the data (fewer than two daily returns, a flat series: no
variation, no drawdown) are NaN: `summary.json` writes them as null, the report as n/a, and a
walk-forward ranks them below every number (a grid point that never trades does not outrank a
losing one).
"""

from __future__ import annotations

import csv
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import orjson

from daemon.timeutil import NS, day_index
from feeds.bar import Bar
from feeds.days import next_local_midnight_ns
from feeds.errors import SourceError

F64: TypeAlias = npt.NDArray[np.float64]
I64: TypeAlias = npt.NDArray[np.int64]
Prices: TypeAlias = dict[str, tuple[I64, F64]]

DAY_TZ = "America/New_York"
_DAY_ZONE = ZoneInfo(DAY_TZ)
TRADING_DAYS = 252
NS_PER_YEAR = 365.25 * 86_400 * NS
NS_PER_DAY_F = 86_400.0 * NS

METRIC_NAMES: tuple[str, ...] = (
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_days",
    "calmar",
    "turnover",
    "win_rate",
    "round_trips",
    "time_in_market",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One row of `fills.csv`, as floats (metrics need no cent-exact arithmetic)."""

    ts: int
    symbol: str
    side: str  # "buy" or "sell"
    qty: float
    price: float
    commission: float


def parse_iso_ns(texts: Sequence[str]) -> I64:
    """UTC ns of ISO times as the recorder writes them (``2024-01-02T05:00:00Z``)."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    seconds = np.array([t.rstrip("Z") for t in texts], dtype="datetime64[s]")
    return seconds.astype(np.int64) * NS


def years_between(start_ns: int, end_ns: int) -> float:
    """Elapsed calendar time in years of 365.25 days."""
    return (end_ns - start_ns) / NS_PER_YEAR


def total_return(equity: F64) -> float:
    """Last equity over first, minus one."""
    if len(equity) < 1 or equity[0] <= 0:
        return math.nan
    return float(equity[-1] / equity[0] - 1.0)


def cagr(times: I64, equity: F64) -> float:
    """Compound annual growth from the first to the last equity over the elapsed time."""
    if len(equity) < 2 or equity[0] <= 0:
        return math.nan
    years = years_between(int(times[0]), int(times[-1]))
    if years <= 0:
        return math.nan
    return float((equity[-1] / equity[0]) ** (1.0 / years) - 1.0)


def daily_equity(times: I64, equity: F64, tz: str = DAY_TZ) -> tuple[I64, F64]:
    """The last (time, equity) of each local date in `tz`."""
    if len(times) == 0:
        return times, equity
    days = day_index(times, tz)
    last = np.flatnonzero(np.diff(days, append=days[-1] + 1))
    return times[last], equity[last]


def daily_returns(times: I64, equity: F64) -> F64:
    """Simple returns between the last equities of consecutive New York dates."""
    _, daily = daily_equity(times, equity)
    if len(daily) < 2:
        return np.zeros(0, dtype=np.float64)
    return daily[1:] / daily[:-1] - 1.0


def volatility(returns: F64) -> float:
    """Annualized standard deviation (ddof=1) of daily returns."""
    if len(returns) < 2:
        return math.nan
    return float(returns.std(ddof=1)) * math.sqrt(TRADING_DAYS)


def sharpe(returns: F64) -> float:
    """Annualized Sharpe of daily returns, rf = 0: mean / std(ddof=1) * sqrt(252)."""
    if len(returns) < 2:
        return math.nan
    std = float(returns.std(ddof=1))
    if std == 0.0 or not math.isfinite(std):
        return math.nan
    return float(returns.mean()) / std * math.sqrt(TRADING_DAYS)


def sharpe_of_daily(daily_equity: Sequence[float]) -> float:
    """The summary's Sharpe: `sharpe` of the returns between the last equities of consecutive
    New York dates; NaN below three dates or for a flat series."""
    daily = np.asarray(daily_equity, dtype=np.float64)
    if len(daily) < 3:
        return math.nan
    return sharpe(daily[1:] / daily[:-1] - 1.0)


def figure(value: float, places: int) -> float | None:
    """A metric for JSON, rounded to `places`: None (null) when undefined (NaN, infinite)."""
    return round(value, places) if math.isfinite(value) else None


def sortino(returns: F64) -> float:
    """Annualized Sortino: mean / sqrt(mean(min(r, 0)^2)) * sqrt(252), target 0."""
    if len(returns) < 2:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if downside == 0.0:
        return math.nan
    return float(returns.mean()) / downside * math.sqrt(TRADING_DAYS)


def drawdown_series(equity: F64) -> F64:
    """Fractional drawdown from the running high-water mark at each point (>= 0)."""
    if len(equity) == 0:
        return equity
    peak = np.maximum.accumulate(equity)
    return 1.0 - equity / peak


def max_drawdown(equity: F64) -> float:
    """Largest fractional fall from a high-water mark (0.2 is a 20% drawdown)."""
    if len(equity) == 0:
        return math.nan
    return float(drawdown_series(equity).max())


def max_drawdown_days(times: I64, equity: F64) -> float:
    """Longest time, in days, from a high-water mark to the first point back at or above it,
    or to the last point when it never recovered."""
    n = len(equity)
    if n < 2:
        return 0.0
    peak = np.maximum.accumulate(equity)
    under = equity < peak
    # Index of the latest high-water point at or before each point.
    peak_idx = np.maximum.accumulate(np.where(under, 0, np.arange(n)))
    # Point i ends (or continues) a drawdown when it or its predecessor is under water; the
    # drawdown began at the high-water point that stood at i - 1.
    span = under[1:] | under[:-1]
    if not span.any():
        return 0.0
    lengths = times[1:][span] - times[peak_idx[:-1][span]]
    return float(lengths.max()) / NS_PER_DAY_F


def calmar(cagr_value: float, max_dd: float) -> float:
    """CAGR over max drawdown (NaN without a drawdown)."""
    if not max_dd > 0:
        return math.nan
    return cagr_value / max_dd


def turnover(fills: Iterable[Fill], equity: F64, years: float) -> float:
    """Sum of fill notional over mean equity, per year."""
    if len(equity) == 0 or years <= 0:
        return math.nan
    traded = sum(f.qty * f.price for f in fills)
    return traded / float(equity.mean()) / years


def round_trip_pnls(fills: Iterable[Fill]) -> list[float]:
    """P&L of each closing fill against the open lots of its symbol, first in first out.

    A fill that reduces a position closes one round trip; its P&L is the price difference
    times quantity over the lots it consumed (before commissions). A fill that goes through
    zero closes the old position and opens a new lot with the rest.
    """
    lots: dict[str, deque[list[float]]] = {}  # symbol -> [signed qty, price], oldest first
    pnls: list[float] = []
    for fill in fills:
        signed = fill.qty if fill.side == "buy" else -fill.qty
        book = lots.setdefault(fill.symbol, deque())
        pnl = 0.0
        closed = False
        while book and signed != 0 and (book[0][0] > 0) != (signed > 0):
            lot = book[0]
            take = min(abs(lot[0]), abs(signed))
            direction = 1.0 if lot[0] > 0 else -1.0
            pnl += (fill.price - lot[1]) * take * direction
            closed = True
            lot[0] -= take * direction
            signed += take * direction
            if lot[0] == 0:
                book.popleft()
        if closed:
            pnls.append(pnl)
        if signed != 0:
            book.append([signed, fill.price])
    return pnls


def win_rate(pnls: Sequence[float]) -> float:
    """Share of closed round trips with positive P&L (NaN when none closed)."""
    if not pnls:
        return math.nan
    return sum(1 for p in pnls if p > 0) / len(pnls)


def time_in_market(gross: F64) -> float:
    """Share of slices with gross exposure > 0."""
    if len(gross) == 0:
        return math.nan
    return float(np.mean(gross > 0))


def benchmark_equity(prices: Prices, times: I64, start_equity: float) -> F64:
    """Equity of buy and hold: equal weights bought at `times[0]`, never rebalanced.

    Each symbol's price at a time is its last close at or before it. Symbols with no price
    yet at the first time are left out; no costs, fractional shares.

    Raises:
        ValueError: no symbol has a price at the first time.
    """
    if len(times) == 0:
        return np.zeros(0, dtype=np.float64)
    marks: list[F64] = []
    for ts, close in prices.values():
        at = np.searchsorted(ts, times, side="right") - 1
        if len(at) == 0 or at[0] < 0:
            continue
        marks.append(close[at] / close[at[0]])
    if not marks:
        raise ValueError("no benchmark symbol has a price at the first slice")
    equity: F64 = start_equity * np.vstack(marks).mean(axis=0)
    return equity


def load_closes(source: Iterable[tuple[Bar, int]]) -> Prices:
    """Closes per symbol from a `feeds.replay.ReplaySource` (or any (bar, origin) stream),
    sorted by time; non-finite closes are dropped."""
    by_symbol: dict[str, tuple[list[int], list[float]]] = {}
    for bar, _origin in source:
        close = bar.close
        if not math.isfinite(close):
            continue
        ts_list, close_list = by_symbol.setdefault(bar.symbol, ([], []))
        ts_list.append(bar.ts)
        close_list.append(close)
    out: Prices = {}
    for symbol, (ts_list, close_list) in by_symbol.items():
        ts = np.asarray(ts_list, dtype=np.int64)
        order = np.argsort(ts, kind="stable")
        out[symbol] = (ts[order], np.asarray(close_list, dtype=np.float64)[order])
    return out


def series_metrics(times: I64, equity: F64) -> dict[str, float]:
    """The return and drawdown metrics of one equity series."""
    returns = daily_returns(times, equity)
    growth = cagr(times, equity)
    mdd = max_drawdown(equity)
    return {
        "total_return": total_return(equity),
        "cagr": growth,
        "volatility": volatility(returns),
        "sharpe": sharpe(returns),
        "sortino": sortino(returns),
        "max_drawdown": mdd,
        "max_drawdown_days": max_drawdown_days(times, equity),
        "calmar": calmar(growth, mdd),
    }


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a replay CSV.

    Raises:
        SourceError: the file is missing or unreadable; the message names it.
    """
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        raise SourceError(f"{path}: cannot read replay output ({e.strerror or e})") from e


def read_summary(out_dir: Path) -> dict[str, Any]:
    """The replay's `summary.json`.

    Raises:
        SourceError: missing or not JSON; the message names the file.
    """
    path = out_dir / "summary.json"
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as e:
        raise SourceError(f"{path}: cannot read replay output ({e.strerror or e})") from e
    except orjson.JSONDecodeError as e:
        raise SourceError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise SourceError(f"{path}: expected a JSON object")
    return data


def read_equity(out_dir: Path) -> tuple[I64, F64, F64]:
    """(times, equity, gross exposure in currency) from `equity.csv`.

    Raises:
        SourceError: missing file or a missing column.
    """
    path = out_dir / "equity.csv"
    rows = read_csv_rows(path)
    try:
        times = parse_iso_ns([r["time"] for r in rows])
        equity = np.array([float(r["equity"]) for r in rows], dtype=np.float64)
        gross = np.array([float(r["gross_exposure"]) for r in rows], dtype=np.float64)
    except (KeyError, ValueError) as e:
        raise SourceError(f"{path}: bad or missing column ({e})") from e
    return times, equity, gross


def read_fills(out_dir: Path) -> list[Fill]:
    """The rows of `fills.csv`.

    Raises:
        SourceError: missing file or a missing column.
    """
    path = out_dir / "fills.csv"
    rows = read_csv_rows(path)
    try:
        times = parse_iso_ns([r["time"] for r in rows])
        return [
            Fill(
                ts=int(t),
                symbol=r["symbol"],
                side=r["side"],
                qty=float(r["qty"]),
                price=float(r["price"]),
                commission=float(r["commission"]),
            )
            for t, r in zip(times, rows, strict=True)
        ]
    except (KeyError, ValueError) as e:
        raise SourceError(f"{path}: bad or missing column ({e})") from e


def compute_metrics(out_dir: Path, prices: Prices | None = None) -> dict[str, Any]:
    """All metrics of the replay in `out_dir`, and of its buy-and-hold benchmark.

    Args:
        out_dir: a replay's output folder (reads `equity.csv` and `fills.csv`).
        prices: closes per symbol (see `load_closes`) for the benchmark; None: no benchmark.

    Returns:
        ``{"strategy": {name: value}, "benchmark": {name: value} | None}`` with the names of
        `METRIC_NAMES` (the benchmark has the return metrics, `time_in_market` 1 and no
        turnover or win rate). Undefined values are NaN.

    Raises:
        SourceError: a file is missing or malformed; the message names it.
    """
    times, equity, gross = read_equity(out_dir)
    fills = read_fills(out_dir)
    strategy: dict[str, float] = series_metrics(times, equity)
    years = years_between(int(times[0]), int(times[-1])) if len(times) else 0.0
    pnls = round_trip_pnls(fills)
    strategy["turnover"] = turnover(fills, equity, years)
    strategy["win_rate"] = win_rate(pnls)
    strategy["round_trips"] = float(len(pnls))
    strategy["time_in_market"] = time_in_market(gross)
    benchmark: dict[str, float] | None = None
    if prices and len(times):
        bench = benchmark_equity(prices, times, float(equity[0]))
        benchmark = series_metrics(times, bench)
        benchmark.update(
            turnover=math.nan, win_rate=math.nan, round_trips=math.nan, time_in_market=1.0
        )
    return {"strategy": strategy, "benchmark": benchmark}


class SeriesFigures:
    """What the summary needs of the equity series, kept as slices stream by."""

    def __init__(self) -> None:
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.slices = 0
        self.max_drawdown = 0.0
        self.daily: list[float] = []  # the last equity of each New York date, in order
        self._day_end = -(2**63)  # first instant of the date after the current one
        self._last_equity = 0.0

    def add(self, ts: int, equity: float, drawdown: float) -> None:
        if self.first_ts is None:
            self.first_ts = ts
        if ts >= self._day_end:
            if self.slices:
                self.daily.append(self._last_equity)
            self._day_end = next_local_midnight_ns(ts, _DAY_ZONE)
        self.last_ts = ts
        self.slices += 1
        self._last_equity = equity
        self.max_drawdown = max(self.max_drawdown, drawdown)

    def sharpe(self) -> float:
        """Annualized Sharpe of daily returns (see `sharpe_of_daily`)."""
        daily = [*self.daily, self._last_equity] if self.slices else []
        return sharpe_of_daily(daily)
