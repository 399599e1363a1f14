"""Time for the drivers: an injectable clock, drift-free periodic ticks, and conversions
between UTC nanoseconds and dates (outside the per-bar path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from feeds.days import local_midnight_ns

NS = 1_000_000_000


class Clock(Protocol):
    """Wall time (UTC ns) and a monotonic clock (s): a driver reads time only through this."""

    def now_ns(self) -> int: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The process's clocks."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()


async def ticks(
    interval_s: float,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[float]:
    """Yield every `interval_s`, without drift: the n-th tick is due n intervals after the
    start. A wake-up more than one interval late skips the missed ticks instead of bursting.
    Yields how late the tick came (s)."""
    due = monotonic() + interval_s
    while True:
        await sleep(max(due - monotonic(), 0.0))
        now = monotonic()
        yield now - due
        due += interval_s
        if due <= now:
            due = now + interval_s


_EPOCH_DAY = datetime(1970, 1, 1, tzinfo=UTC).date()
_SECONDS_PER_DAY = 86_400


class IsoFormatter:
    """ISO-8601 UTC to the second (`2024-01-02T14:30:00Z`) for many timestamps, fast: the date
    part is cached while timestamps stay on one day, the time part per second of the day (bars
    repeat the same few hundred), and a repeated timestamp costs nothing."""

    __slots__ = ("_day_s", "_prefix", "_text", "_times", "_ts")

    _TIMES_MAX = 4096  # cached times of day; cleared when full (second bars)

    def __init__(self) -> None:
        self._day_s = 2**63  # the cached day's first second: none yet (any ts is before it)
        self._prefix = ""
        self._ts: int | None = None
        self._text = ""
        self._times: dict[int, str] = {}

    def __call__(self, ts_ns: int) -> str:
        if ts_ns == self._ts:
            return self._text
        second = ts_ns // NS - self._day_s
        if not 0 <= second < _SECONDS_PER_DAY:
            day, second = divmod(ts_ns // NS, _SECONDS_PER_DAY)
            self._day_s = day * _SECONDS_PER_DAY
            self._prefix = (_EPOCH_DAY + timedelta(days=day)).isoformat()
        clock = self._times.get(second)
        if clock is None:
            times = self._times
            if len(times) >= self._TIMES_MAX:
                times.clear()
            hour, rest = divmod(second, 3600)
            minute, sec = divmod(rest, 60)
            clock = times[second] = f"T{hour:02d}:{minute:02d}:{sec:02d}Z"
        self._ts = ts_ns
        self._text = text = self._prefix + clock
        return text


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
