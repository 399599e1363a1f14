"""Conversions between UTC nanoseconds and dates, outside the per-bar path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from feeds.days import local_midnight_ns

NS = 1_000_000_000


def iso_utc(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NS, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_utc_array(ts_ns: npt.NDArray[np.int64]) -> list[str]:
    """Vectorized ISO-8601 (seconds, Z) for many timestamps."""
    text = np.datetime_as_string(ts_ns.astype("datetime64[ns]"), unit="s")
    return [f"{t}Z" for t in text.tolist()]


def day_index(ts_ns: npt.NDArray[np.int64], tz: str) -> npt.NDArray[np.int64]:
    """For each timestamp, the index of its local date (0 for the first date in `ts_ns`)."""
    if len(ts_ns) == 0:
        return np.zeros(0, dtype=np.int64)
    zone = ZoneInfo(tz)
    first = datetime.fromtimestamp(int(ts_ns[0]) / NS, tz=zone).date()
    last = datetime.fromtimestamp(int(ts_ns[-1]) / NS, tz=zone).date()
    days = (last - first).days + 2
    bounds = np.array(
        [local_midnight_ns(first + timedelta(days=i), tz) for i in range(days)], dtype=np.int64
    )
    return np.searchsorted(bounds, ts_ns, side="right").astype(np.int64) - 1
