"""A replay of bars finer than the strategies' timeframe: minutes aggregated up to it.

The strategies see bars of `data.timeframe`, built by `feeds.aggregator.BarAggregator` from the
file's bars; the simulated broker sees the file's bars (so a market or `opg` order decided on a
daily bar fills at the next session's first minute, as the live daemon's orders do). A bucket
completes when the first bar after its end arrives (the clock of the replay is the data's), all
symbols at once; then its slice is decided, before that bar reaches the broker.

`before_close` decides once per session, at the first bar at or after `execution.decide_at`, on
the daily bar built so far (`BarAggregator.partial`): the bars that completed the day later are
the same day's and are not shown to the strategies again. A session that closes before
`decide_at` (an early close) decides on its whole bar when it completes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from brokers.auctions import NEW_YORK
from brokers.simulated import SimulatedBroker
from daemon.engine import Engine
from daemon.execution import ExecutionSettings
from daemon.recorder import Recorder
from daemon.timeutil import iso_utc
from feeds.aggregator import BarAggregator
from feeds.bar import NS_PER_SECOND, Bar
from feeds.calendar import SessionCalendar
from feeds.replay import ReplaySource
from feeds.timeframes import Timeframe

Decide = Callable[[Engine, SimulatedBroker, int | None], None]


class BucketFeed:
    """Feeds a source of finer bars to the engine as bars of `timeframe`.

    Args:
        decide: closes the engine's open slice and hands its orders to the broker; the third
            argument is the decision time when it is not the bar's end (before_close).
    """

    def __init__(
        self,
        *,
        timeframe: Timeframe,
        execution: ExecutionSettings,
        calendar: SessionCalendar,
        engine: Engine,
        broker: SimulatedBroker,
        recorder: Recorder,
        decide: Decide,
    ) -> None:
        self.aggregator = BarAggregator(timeframe, calendar, align=execution.align)
        self.engine = engine
        self.broker = broker
        self.recorder = recorder
        self.decide = decide
        self._calendar = calendar
        self._decide_at = execution.decide_at if execution.style == "before_close" else None
        self._decided_day = -1  # the daily bucket (its stamp) decided before its close

    def before(self, ts: int) -> bool:
        """Time has reached `ts` (a bar starts there): complete and decide what ended before.
        Returns whether a slice was decided."""
        decided = False
        for bar in self.aggregator.close_through(ts):
            if bar.ts == self._decided_day:
                continue  # decided before the close on its partial bar
            decided |= self._show(bar)
        if self._decide_at is not None:
            decided |= self._before_close(ts)
        if self.engine.slice_ts is not None:
            self.decide(self.engine, self.broker, None)
            decided = True
        return decided

    def add(self, bar: Bar) -> None:
        """A bar of the source: into its bucket, and to the broker."""
        self.aggregator.add(bar)
        self.broker.on_bar(bar)

    def finish(self) -> None:
        """The source is exhausted: the open buckets complete."""
        self.before(1 << 62)

    def _show(self, bar: Bar) -> bool:
        """A bucket's bar to the engine; a later stamp decides the open slice first."""
        engine = self.engine
        decided = False
        if engine.slice_ts is not None and bar.ts > engine.slice_ts:
            self.decide(engine, self.broker, None)
            decided = True
        reason = engine.on_bar(bar)
        if reason is not None:
            self.recorder.rejected_bar("aggregated", 0, bar.symbol, iso_utc(bar.ts), reason)
        return decided

    def _before_close(self, ts: int) -> bool:
        """At the first bar at or after decide_at: decide on the partial daily bars."""
        assert self._decide_at is not None
        bucket = self.aggregator.bucket(ts)
        if bucket is None or bucket.ts == self._decided_day:
            return False
        day = dt.datetime.fromtimestamp(ts / NS_PER_SECOND, NEW_YORK).date()
        at = int(dt.datetime.combine(day, self._decide_at, NEW_YORK).timestamp()) * NS_PER_SECOND
        if ts < at:
            return False
        decided = False
        self._decided_day = bucket.ts
        for symbol in self.aggregator.open_symbols():
            partial = self.aggregator.partial(symbol)
            if partial is not None and partial.ts == bucket.ts:
                decided |= self._show(partial)
        if self.engine.slice_ts is not None:
            self.decide(self.engine, self.broker, at)
            decided = True
        return decided


def feed_buckets(
    source: ReplaySource,
    feed: BucketFeed,
    *,
    between_slices: Callable[[Engine, SimulatedBroker], bool] | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Every bar of the source, in time order, through `feed`; True from `between_slices`
    stops there (the bucket still open is not decided)."""
    last_ts = -(1 << 62)
    total = len(source)
    step = max(total // 100, 1)
    stopped = False
    for n, (bar, _origin) in enumerate(source, 1):
        if bar.ts > last_ts:
            last_ts = bar.ts
            if (
                feed.before(bar.ts)
                and between_slices is not None
                and between_slices(feed.engine, feed.broker)
            ):
                stopped = True
                break
        feed.add(bar)
        if progress is not None and n % step == 0:
            progress(n, total)
    if not stopped:
        feed.finish()
    feed.engine.on_events(feed.broker.poll_events())
    if progress is not None:
        progress(total, total)
