"""Bars of the strategies' timeframe from Alpaca's minute stream, and auction orders held until
Alpaca takes them. Pure: no I/O; the loop drives it with the market's time.

Minutes go into a `feeds.aggregator.BarAggregator`; a bucket completes when a later minute of its
symbol arrives or when the market's time passes its end by `slice_grace_s` (`due_ns`,
`close_through`): then its bars go through the engine as one slice, decided at once. For
`next_open`, the orders of the daily decision (after the close) wait in `held` until the opg
window opens (`execution.opg_submit_at`, New York), then leave.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from brokers.auctions import NEW_YORK, OPG_CUTOFF, OPG_WINDOW_OPENS, local_time
from brokers.orders import SubmitOrder, TimeInForce
from daemon.execution import ExecutionSettings
from daemon.settings import Settings
from feeds.aggregator import BarAggregator
from feeds.bar import NS_PER_SECOND, Bar
from feeds.calendar import SessionCalendar
from feeds.timeframes import Timeframe


class LiveBuckets:
    """The aggregation and the auction hold of one daemon.

    Args:
        grace_s: how long after a bucket's end its late minutes are waited for.
    """

    def __init__(
        self,
        *,
        timeframe: Timeframe,
        execution: ExecutionSettings,
        calendar: SessionCalendar,
        grace_s: float,
    ) -> None:
        self.aggregator = BarAggregator(timeframe, calendar, align=execution.align)
        self.execution = execution
        self.grace_ns = int(grace_s * NS_PER_SECOND)
        self.held: list[SubmitOrder] = []
        self._decide_at = execution.decide_at if execution.style == "before_close" else None
        self._decided_day = -1  # the daily bucket decided on its partial bar (before_close)

    def add(self, minute: Bar) -> list[Bar]:
        """A streamed (or backfilled) minute; the buckets of its symbol it completes."""
        return self.aggregator.add(minute)

    def due_ns(self, now_ns: int) -> int | None:
        """The market time at which an open bucket completes by the clock (or a before_close
        decision is due), or None."""
        end = self.aggregator.next_end()
        times = [t + self.grace_ns for t in (end, self.decision_ns(now_ns)) if t is not None]
        return min(times) if times else None

    def close_through(self, now_ns: int) -> list[Bar]:
        """The buckets that ended more than the grace before `now_ns` (not a day already
        decided on its partial bar)."""
        done = self.aggregator.close_through(now_ns - self.grace_ns)
        return [b for b in done if b.ts != self._decided_day]

    def drop_decided(self, bars: list[Bar]) -> list[Bar]:
        """`bars` without those of a day already decided on its partial bar."""
        return [b for b in bars if b.ts != self._decided_day]

    # -- before_close --------------------------------------------------------------------------

    def decision_ns(self, now_ns: int) -> int | None:
        """before_close: today's decision time (New York `decide_at`) if it is still to come or
        pending, else None (decided, no session today, or it closes before decide_at)."""
        if self._decide_at is None:
            return None
        day = dt.datetime.fromtimestamp(now_ns / NS_PER_SECOND, NEW_YORK).date()
        at = int(dt.datetime.combine(day, self._decide_at, NEW_YORK).timestamp()) * NS_PER_SECOND
        bucket = self.aggregator.bucket(at)
        if bucket is None or bucket.ts == self._decided_day:
            return None
        return at

    def partials(self, now_ns: int, *, minute_ts: int | None = None) -> tuple[list[Bar], int]:
        """before_close: the partial daily bars to decide on, and the decision time, once the
        market's time passed decide_at by the grace (or a minute at or after decide_at came:
        `minute_ts`); else ([], 0). The partial bars hold only minutes before decide_at."""
        at = self.decision_ns(now_ns if minute_ts is None else minute_ts)
        if at is None:
            return [], 0
        if now_ns < at + self.grace_ns and (minute_ts is None or minute_ts < at):
            return [], 0
        bucket = self.aggregator.bucket(at)
        assert bucket is not None
        self._decided_day = bucket.ts
        bars = [
            bar
            for symbol in self.aggregator.open_symbols()
            if (bar := self.aggregator.partial(symbol)) is not None and bar.ts == bucket.ts
        ]
        return bars, at

    # -- auction orders ----------------------------------------------------------------------

    def hold(self, orders: list[SubmitOrder], now_ns: int) -> list[SubmitOrder]:
        """The orders to send now; opg orders decided outside the window wait in `held`."""
        if not orders:
            return orders
        if all(o.time_in_force is not TimeInForce.OPG for o in orders):
            return orders
        self.held.extend(orders)
        return self.release(now_ns)

    def release(self, now_ns: int) -> list[SubmitOrder]:
        """The held orders Alpaca takes at `now_ns` (the opg window, from opg_submit_at)."""
        if not self.held or not self._opg_open(now_ns):
            return []
        out, self.held = self.held, []
        return out

    def release_at_ns(self, now_ns: int) -> int | None:
        """When held orders may leave (market time), or None if none are held."""
        if not self.held:
            return None
        if self._opg_open(now_ns):
            return now_ns
        day = dt.datetime.fromtimestamp(now_ns / NS_PER_SECOND, NEW_YORK).date()
        at = dt.datetime.combine(day, self.execution.opg_submit_at, NEW_YORK)
        if at.timestamp() * NS_PER_SECOND <= now_ns:
            at = at + dt.timedelta(days=1)
        return int(at.timestamp()) * NS_PER_SECOND

    def deferring(
        self, market_now: Callable[[], int]
    ) -> Callable[[list[SubmitOrder]], list[SubmitOrder]]:
        """`OrderPath.defer` for this daemon: what to send now of a decision's orders."""
        return lambda orders: self.hold(orders, market_now())

    def _opg_open(self, now_ns: int) -> bool:
        at = local_time(now_ns)
        start = self.execution.opg_submit_at
        if start >= OPG_WINDOW_OPENS:  # an evening start: until the next morning's cut-off
            return at >= start or at < OPG_CUTOFF
        return start <= at < OPG_CUTOFF


def live_buckets(settings: Settings) -> LiveBuckets | None:
    """The aggregation for the strategies' timeframe, or None for 1-minute strategies (the
    stream's bars are theirs)."""
    if settings.data.timeframe == "1Min":
        return None
    return LiveBuckets(
        timeframe=settings.data.timeframe,
        execution=settings.execution,
        calendar=SessionCalendar(settings.sanity.calendar),
        grace_s=settings.live.slice_grace_s,
    )
