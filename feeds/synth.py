"""Synthetic 1-minute bars over real NYSE sessions, for samples, tests and benchmarks.

Each symbol is a geometric random walk: about 1% volatility a day, higher near the open and the
close, a small overnight gap, and a slowly varying drift (an AR(1) process across days) so that
trend-following strategies have something to find. OHLC are consistent and in cents; volumes
are integers with a U-shaped intraday profile. A symbol's data depends only on (symbol, seed),
through a seed derived with SHA-256, never on the other symbols or on `hash()`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from feeds.bar import NS_PER_MINUTE
from feeds.calendar import SessionCalendar
from feeds.timestamps import F64Array, I64Array

_MINUTES_PER_DAY = 390
_DAILY_VOL = 0.01
_OVERNIGHT_VOL = 0.004
# Daily drift: AR(1) with a ~40-session memory and a stationary sd of 0.1%/day (~25%/yr).
_DRIFT_PERSISTENCE = float(np.exp(-1.0 / 40.0))
_DRIFT_SD = 0.001


def write_synthetic(
    out: Path,
    *,
    symbols: Sequence[str],
    sessions: int,
    seed: int,
    start: dt.date = dt.date(2024, 1, 2),
    fmt: Literal["csv", "parquet"] = "parquet",
) -> list[Path]:
    """Write one file of 1-minute bars per symbol (``out/SPY.parquet``).

    The bars cover `sessions` regular NYSE sessions from `start` (inclusive); early closes give
    fewer bars. Columns: timestamp (ISO-8601 UTC with ``Z`` in CSV, timestamp[ns, UTC] in
    Parquet), open, high, low, close, volume, trade_count, vwap. The same arguments always
    give byte-identical files.

    Args:
        out: folder to write into (created if missing).
        symbols: one file each.
        sessions: number of sessions (>= 1).
        seed: with the symbol, determines every value.
        start: first date; the first session is on or after it.
        fmt: ``parquet`` or ``csv``.

    Returns:
        The paths written, in the order of `symbols`.

    Raises:
        ValueError: `sessions` < 1, no symbols, or an unknown `fmt`.
    """
    if sessions < 1:
        raise ValueError(f"sessions must be >= 1, got {sessions}")
    if not symbols:
        raise ValueError("no symbols")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    bounds = np.array(SessionCalendar("XNYS").sessions(start, sessions), dtype=np.int64)
    minutes = (bounds[:, 1] - bounds[:, 0]) // NS_PER_MINUTE
    day = np.repeat(np.arange(sessions), minutes)
    first = np.r_[0, np.cumsum(minutes)[:-1]]
    minute = np.arange(len(day)) - first[day]
    ts = bounds[day, 0] + minute * NS_PER_MINUTE
    # Fraction of a regular day elapsed, for the U-shaped volatility and volume profiles.
    x = (minute + 0.5) / _MINUTES_PER_DAY
    u_shape = 1.0 + 3.0 * (2.0 * x - 1.0) ** 4

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for symbol in symbols:
        table = _symbol_table(
            symbol, seed, ts=ts, day=day, minute=minute, u_shape=u_shape, sessions=sessions
        )
        path = out / f"{symbol}.{fmt}"
        if fmt == "parquet":
            pq.write_table(table, path, compression="zstd")
        else:
            iso = np.datetime_as_string(ts.astype("datetime64[ns]"), unit="s")
            table = table.set_column(
                0, "timestamp", pa.array(np.char.add(iso, "Z").tolist(), pa.string())
            )
            pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))
        written.append(path)
    return written


def _symbol_table(
    symbol: str,
    seed: int,
    *,
    ts: I64Array,
    day: I64Array,
    minute: I64Array,
    u_shape: F64Array,
    sessions: int,
) -> pa.Table:
    digest = hashlib.sha256(f"tradingd-synth:{symbol}:{seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    n = len(ts)

    shocks = rng.standard_normal(sessions)
    drift = np.empty(sessions)
    level = rng.standard_normal() * _DRIFT_SD
    innovation_sd = _DRIFT_SD * np.sqrt(1.0 - _DRIFT_PERSISTENCE**2)
    for i in range(sessions):  # one step per day: cheap, and AR(1) is a recurrence
        level = _DRIFT_PERSISTENCE * level + innovation_sd * shocks[i]
        drift[i] = level

    # Per-minute volatility scaled so that a full day has _DAILY_VOL on average.
    minute_vol = _DAILY_VOL / np.sqrt(_MINUTES_PER_DAY) * u_shape / np.sqrt(np.mean(u_shape))
    returns = drift[day] / _MINUTES_PER_DAY + minute_vol * rng.standard_normal(n)
    gaps = _OVERNIGHT_VOL * rng.standard_normal(n) * (minute == 0)
    gaps[0] = 0.0
    start_price = float(np.round(rng.uniform(20.0, 400.0), 2))
    log_close = np.log(start_price) + np.cumsum(returns + gaps)
    log_open = np.r_[np.log(start_price), log_close[:-1]] + gaps

    close = np.round(np.exp(log_close), 2)
    open_ = np.round(np.exp(log_open), 2)
    wick = minute_vol * 0.6
    high = np.round(np.maximum(open_, close) * np.exp(np.abs(rng.standard_normal(n)) * wick), 2)
    low = np.round(np.minimum(open_, close) * np.exp(-np.abs(rng.standard_normal(n)) * wick), 2)
    # Rounding can cross: keep high >= max(open, close) and 0 < low <= min(open, close).
    high = np.maximum(high, np.maximum(open_, close))
    low = np.maximum(np.minimum(low, np.minimum(open_, close)), 0.01)

    base_volume = rng.uniform(2_000.0, 50_000.0)
    volume = np.maximum(np.round(base_volume * u_shape * rng.lognormal(0.0, 0.4, n)), 1.0).astype(
        np.int64
    )
    trade_size = rng.uniform(40.0, 150.0)
    trade_count = np.maximum(np.round(volume / trade_size), 1.0).astype(np.int64)
    vwap = np.clip(np.round((open_ + high + low + close) / 4.0, 4), low, high)

    return pa.table(
        {
            "timestamp": pa.array(ts, pa.timestamp("ns", tz="UTC")),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "trade_count": trade_count,
            "vwap": vwap,
        }
    )
