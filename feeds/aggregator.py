"""Bars of the strategies' timeframe built from 1-minute bars. Pure: no I/O, no clock.

Buckets. Only minutes of the regular session (`feeds.calendar.SessionCalendar`) are
aggregated; a minute outside it (pre-market, after-hours, a holiday, a weekend) is counted in
`outside_session` and left out. Intraday buckets (5Min, 15Min, 30Min, 1Hour) align either:

    session  to the session open: hourly buckets 09:30-10:29, 10:30-11:29, ..., 15:30-15:59
             (New York); each bar is stamped at its bucket's start.
    clock    to the clock, as Alpaca's own intraday bars: hourly buckets 09:00, 10:00, ...;
             the first holds only 09:30-09:59 but is stamped 09:00, as Alpaca stamps it.

5-, 15- and 30-minute buckets are the same either way (the open is on the half hour). The last
bucket of a session ends at the close, so on an early close (2024-11-29, 13:00) it is shorter.
A daily bucket is the session's minutes, stamped at New York midnight of its date, as Alpaca
stamps daily bars and as daily files are read.

OHLCV of a bucket: the open of its first minute, the highest high, the lowest low, the close
of its last minute, the sums of volume and trade_count, and the volume-weighted vwap. A
trade_count (or vwap) is given only if every minute has one (and, for vwap, the volume is
positive). The bar is computed from the bucket's minutes in time order whatever order they
came in, so it depends only on the minutes (the last version of each), not on their arrival.

No trade, no bar: a bucket in which a symbol has no minute gives no bar for that symbol (Alpaca
sends no minute bar for a minute without a trade). A halt is only a gap between minutes: the
bucket is built from the minutes it has.

Completion. A symbol's bucket completes when a minute of that symbol at or after the bucket's
end arrives (`add`), or when the caller says the bucket's time has passed (`close_through`,
driven by the caller's clock and its grace for late minutes). A completed bar is returned once.

Late minutes and corrections. A minute whose bucket has completed for its symbol (`is_closed`)
can no longer change a bar: `add` counts it in `late_minutes`, `correct` returns None and counts
it in `closed_corrections`; the caller uses it only to mark positions. A correction (Alpaca's
`updatedBars`, the same `t` as the bar it replaces) of a minute whose bucket is still open
replaces that minute, so the decision at the bucket's close sees the corrected bar.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, TypeAlias

from pydantic import BaseModel, ConfigDict

from feeds.bar import Bar
from feeds.calendar import SessionCalendar
from feeds.timeframes import TIMEFRAME_NS, Timeframe

Alignment: TypeAlias = Literal["session", "clock"]

_NEVER = -(1 << 62)
_FOREVER = 1 << 62


class AggregatorSettings(BaseModel):
    """How intraday buckets align (see the module docstring): ``session`` or ``clock``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    align: Alignment = "session"


class Bucket(NamedTuple):
    """One bucket of a timeframe, the same for every symbol.

    Attributes:
        ts: the stamp of its bar (the bucket's start; New York midnight for a daily bucket;
            for clock alignment, possibly before the open: 09:00 for the first hourly bucket).
        start: the first instant a minute of the bucket can start (never before the open).
        end: the end of the bucket, exclusive (never after the close).
    """

    ts: int
    start: int
    end: int


class _Open:
    """The minutes of one symbol's open bucket, sorted by time."""

    __slots__ = ("bars", "bucket", "times")

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.times: list[int] = []
        self.bars: list[Bar] = []

    def put(self, bar: Bar) -> None:
        """Add a minute, or replace the minute with the same time."""
        ts = bar.ts
        times = self.times
        if not times or ts > times[-1]:
            times.append(ts)
            self.bars.append(bar)
            return
        lo, hi = 0, len(times)
        while lo < hi:
            mid = (lo + hi) // 2
            if times[mid] < ts:
                lo = mid + 1
            else:
                hi = mid
        if times[lo] == ts:
            self.bars[lo] = bar
        else:
            times.insert(lo, ts)
            self.bars.insert(lo, bar)


class BarAggregator:
    """Builds bars of `timeframe` from one symbol's or many symbols' 1-minute bars.

    Deterministic and I/O-free: the same calls give the same bars. Bars returned by one call
    are sorted by (ts, symbol).

    Args:
        timeframe: the bars to build (``1Min`` gives each session minute back as it completes).
        calendar: the exchange's sessions (holidays, early closes).
        align: ``session`` or ``clock`` (intraday buckets only; see the module docstring).

    Attributes:
        late_minutes: minutes passed to `add` after their bucket had completed.
        outside_session: minutes passed to `add` or `correct` outside the regular session.
        closed_corrections: corrections of a minute whose bucket had completed.
    """

    def __init__(
        self, timeframe: Timeframe, calendar: SessionCalendar, *, align: Alignment = "session"
    ) -> None:
        self.timeframe: Timeframe = timeframe
        self.align: Alignment = align
        self.late_minutes = 0
        self.outside_session = 0
        self.closed_corrections = 0
        self._calendar = calendar
        self._ns = TIMEFRAME_NS[timeframe]
        self._daily = timeframe == "1Day"
        self._clock_aligned = align == "clock"
        # symbol -> its open buckets, oldest first (more than one only when a correction
        # opened a later bucket before a minute closed the earlier one).
        self._open: dict[str, list[_Open]] = {}
        # Buckets ending at or before these times are complete: per symbol (its latest
        # minute), and for all symbols (the latest close_through).
        self._seen_until: dict[str, int] = {}
        self._clock = _NEVER
        # A lower bound of the ends of all open buckets: close_through is a no-op below it.
        self._next_end = _FOREVER
        # The last bucket looked up: minutes arrive in runs of the same bucket.
        self._cached = Bucket(0, 0, 0)

    # -- buckets -------------------------------------------------------------------------------

    def bucket(self, ts_ns: int) -> Bucket | None:
        """The bucket of the minute starting at `ts_ns`, or None outside the regular session."""
        cached = self._cached
        if cached.start <= ts_ns < cached.end:
            return cached
        bounds = self._calendar.bounds(ts_ns)
        if bounds is None:
            return None
        open_ns, close_ns = bounds
        if not open_ns <= ts_ns < close_ns:
            return None
        if self._daily:
            found = Bucket(self._calendar.day_window(ts_ns)[0], open_ns, close_ns)
        else:
            n = self._ns
            if self._clock_aligned:
                midnight = self._calendar.day_window(ts_ns)[0]
                stamp = ts_ns - (ts_ns - midnight) % n
            else:
                stamp = ts_ns - (ts_ns - open_ns) % n
            found = Bucket(stamp, max(stamp, open_ns), min(stamp + n, close_ns))
        self._cached = found
        return found

    def is_closed(self, symbol: str, ts_ns: int) -> bool:
        """Whether the bucket of `symbol`'s minute at `ts_ns` has completed (or there is none):
        such a minute can only mark positions."""
        bucket = self.bucket(ts_ns)
        return bucket is None or self._completed(symbol, bucket)

    # -- minutes in ----------------------------------------------------------------------------

    def add(self, bar: Bar) -> list[Bar]:
        """Take one minute bar; return the buckets of its symbol that it completes.

        A minute at or after the end of the symbol's open bucket completes that bucket (also a
        minute outside the session: an after-hours minute completes the day). A minute whose
        bucket has completed is counted in `late_minutes` and left out. A minute already in
        its open bucket (same `ts`) is replaced, as by `correct`.
        """
        symbol = bar.symbol
        ts = bar.ts
        done: list[Bar] = []
        opens = self._open.get(symbol)
        if opens and opens[0].bucket.end <= ts:
            while opens and opens[0].bucket.end <= ts:
                done.append(_build(symbol, opens.pop(0)))
            if not opens:
                del self._open[symbol]
        if ts > self._seen_until.get(symbol, _NEVER):
            self._seen_until[symbol] = ts
        bucket = self.bucket(ts)
        if bucket is None:
            self.outside_session += 1
        elif self._completed(symbol, bucket):
            self.late_minutes += 1
        else:
            self._slot(symbol, bucket).put(bar)
        return done

    def correct(self, bar: Bar) -> Bar | None:
        """Take a correction of a minute (Alpaca's `updatedBars`): the minute with the same
        `ts` is replaced (or added, if its bar never came).

        Returns:
            The corrected bucket built so far, or None if the bucket has completed (counted in
            `closed_corrections`) or the minute is outside the session: the caller then uses
            the correction only to mark positions. A correction never completes a bucket.
        """
        bucket = self.bucket(bar.ts)
        if bucket is None:
            self.outside_session += 1
            return None
        if self._completed(bar.symbol, bucket):
            self.closed_corrections += 1
            return None
        slot = self._slot(bar.symbol, bucket)
        slot.put(bar)
        return _build(bar.symbol, slot)

    # -- bars out ------------------------------------------------------------------------------

    def close_through(self, ts_ns: int) -> list[Bar]:
        """Complete every open bucket (of every symbol) that ends at or before `ts_ns`.

        The caller's clock: call it once a bucket's end plus the grace for late minutes has
        passed. Later minutes of those buckets are late. Returns the completed bars sorted by
        (ts, symbol).
        """
        self._clock = max(self._clock, ts_ns)
        if ts_ns < self._next_end:
            return []
        done: list[Bar] = []
        next_end = _FOREVER
        for symbol in sorted(self._open):
            opens = self._open[symbol]
            while opens and opens[0].bucket.end <= ts_ns:
                done.append(_build(symbol, opens.pop(0)))
            if opens:
                next_end = min(next_end, opens[0].bucket.end)
            else:
                del self._open[symbol]
        self._next_end = next_end
        done.sort(key=lambda b: (b.ts, b.symbol))
        return done

    def partial(self, symbol: str) -> Bar | None:
        """The symbol's latest open bucket built so far (the daily bar up to now, for a
        decision before the close), or None if it has no open bucket."""
        opens = self._open.get(symbol)
        return _build(symbol, opens[-1]) if opens else None

    def next_end(self) -> int | None:
        """The earliest end of an open bucket of any symbol, or None when none is open."""
        ends = [opens[0].bucket.end for opens in self._open.values() if opens]
        return min(ends) if ends else None

    def open_symbols(self) -> list[str]:
        """The symbols with an open bucket, sorted."""
        return sorted(self._open)

    # -- internals -----------------------------------------------------------------------------

    def _completed(self, symbol: str, bucket: Bucket) -> bool:
        end = bucket.end
        return end <= self._clock or end <= self._seen_until.get(symbol, _NEVER)

    def _slot(self, symbol: str, bucket: Bucket) -> _Open:
        """The symbol's open bucket `bucket`, opened if needed (kept oldest first)."""
        opens = self._open.get(symbol)
        if opens is None:
            opens = self._open[symbol] = []
        elif opens[-1].bucket.ts == bucket.ts:
            return opens[-1]
        else:
            for slot in opens:
                if slot.bucket.ts == bucket.ts:
                    return slot
        slot = _Open(bucket)
        opens.append(slot)
        opens.sort(key=lambda s: s.bucket.ts)
        self._next_end = min(self._next_end, bucket.end)
        return slot


def _build(symbol: str, slot: _Open) -> Bar:
    """The bar of a bucket's minutes (at least one, sorted by time)."""
    bars = slot.bars
    high = bars[0].high
    low = bars[0].low
    volume = 0.0
    count: int | None = 0
    weighted: float | None = 0.0
    for b in bars:
        high = max(high, b.high)
        low = min(low, b.low)
        volume += b.volume
        if count is not None:
            count = None if b.trade_count is None else count + b.trade_count
        if weighted is not None:
            weighted = None if b.vwap is None else weighted + b.vwap * b.volume
    vwap = weighted / volume if weighted is not None and volume > 0 else None
    return Bar(
        symbol=symbol,
        ts=slot.bucket.ts,
        open=bars[0].open,
        high=high,
        low=low,
        close=bars[-1].close,
        volume=volume,
        trade_count=count,
        vwap=vwap,
    )
