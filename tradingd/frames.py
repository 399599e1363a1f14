"""A run's CSV files as pandas DataFrames indexed by time (UTC, tz-aware).

The files keep exact decimals (money to the cent, quantities as written); the frames hold
floats, which is what analysis wants. Times are parsed from the ISO-8601 text the files hold.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import pandas as pd

# file -> (its time column, the columns read as numbers)
_LAYOUT: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "equity.csv": ("time", ("cash", "equity", "gross_exposure", "drawdown")),
    "orders.csv": ("time", ("qty", "limit_price", "filled_qty", "avg_fill_price")),
    "fills.csv": ("time", ("qty", "price", "commission")),
    "targets.csv": ("time", ("weight",)),
    "risk_events.csv": ("time", ("requested_qty", "approved_qty")),
    "rejected_bars.csv": ("time", ("row",)),
    # A walk-forward's joined out-of-sample curve.
    "walkforward-equity.csv": ("time", ("fold", "equity", "drawdown")),
}
_WHOLE = frozenset({"row", "fold"})
_OTHER_TIMES = {"orders.csv": ("slice_time",)}


def frame(name: str, text: str) -> pd.DataFrame:
    """The DataFrame of one of a run's files (`name` as in the run's folder)."""
    time_column, numbers = _LAYOUT[name]
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    for column in numbers:
        if column in df.columns:
            values = pd.to_numeric(df[column].replace("", None), errors="coerce")
            # Counts stay whole numbers; every amount is a float, fractional or not.
            df[column] = values.astype("Int64" if column in _WHOLE else "float64")
    for column in _OTHER_TIMES.get(name, ()):
        df[column] = _times(df[column])
    df.index = pd.DatetimeIndex(_times(df.pop(time_column)), name=time_column)
    return df


def _times(column: pd.Series) -> pd.Series:
    # A quarantined bar's time may be unreadable text: it becomes NaT, the row stays.
    return pd.to_datetime(column.replace("", None), utc=True, format="ISO8601", errors="coerce")
