"""Market data in: the warm-up from history, the data stream, and backfills after a gap.

The stream's messages go onto the daemon's queue; this module keeps the feed's state (connected,
market open, halted symbols, counters), starts a backfill from the historical endpoint after
every (re)connect, and hands back the merged bars for the daemon to feed in time order.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from brokers.alpaca_rest import AlpacaRest, MarketClock
from brokers.auctions import NEW_YORK
from daemon.engine import Engine
from daemon.live import turns
from daemon.live.buckets import LiveBuckets
from daemon.live.guard import JournalGuard
from daemon.live.slicer import Merged, Slicer
from daemon.live.turns import Turn
from daemon.logs import EventLog
from daemon.service.telemetry import Telemetry
from daemon.settings import LiveSettings
from daemon.timeutil import Clock, iso_utc, ticks
from feeds.alpaca_history import HistoricalBars, time_ordered
from feeds.alpaca_stream import (
    AlpacaDataStream,
    DataEvent,
    StreamConnected,
    StreamDisconnected,
    TradingStatus,
)
from feeds.bar import NS_PER_MINUTE, Bar
from feeds.calendar import build_ahead
from feeds.days import local_midnight_ns
from feeds.errors import TradingdError
from feeds.timeframes import TIMEFRAME_NS

MINUTES_PER_SESSION = 390
_RELEASE_CHUNK = 5_000  # bars freed per turn by `_release` (~1 ms)


@dataclass(frozen=True, slots=True)
class Backfilled:
    """A backfill's result, queued for the daemon's loop."""

    bars: list[Bar]
    error: str | None


@dataclass(slots=True)
class FeedCounters:
    backfills: int = 0
    backfilled_bars: int = 0
    reconnects: int = 0


class MarketData:
    """The data side of the live daemon.

    Args:
        post: puts a stream message or a backfill result on the daemon's queue.
        spawn: starts a task the daemon owns (it is awaited and its failure is loud).
    """

    def __init__(
        self,
        *,
        settings: LiveSettings,
        symbols: list[str],
        credentials: tuple[str, str],
        urls: dict[str, str],
        rest: AlpacaRest,
        engine: Engine,
        guard: JournalGuard,
        slicer: Slicer,
        telemetry: Telemetry,
        log: EventLog,
        clock: Clock,
        post: Callable[[DataEvent | Backfilled], None],
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
    ) -> None:
        self.settings = settings
        self.symbols = symbols
        self.key, self.secret = credentials
        self.urls = urls
        self.rest = rest
        self.engine = engine
        self.guard = guard
        self.slicer = slicer
        self.telemetry = telemetry
        self.log = log
        self.clock = clock
        self.post = post
        self.spawn = spawn
        self.history = HistoricalBars(
            key=self.key,
            secret=self.secret,
            url=urls["data"],
            feed=settings.feed,
            timeout_s=max(settings.request_timeout_s, 30.0),
        )
        self.stream: AlpacaDataStream | None = None
        self.connected = False
        self.market_open = True
        self.counters = FeedCounters()
        self.warmup_bars = 0
        self.buckets: LiveBuckets | None = None  # set when the strategies' bars are coarser
        # The session calendar the checks build at their first bar (~0.4 s of pandas), if any:
        # built ahead on a worker thread when the warm-up starts.
        self.calendar: str | None = None
        self._bar_end_ns = 0  # the end of the latest bar seen: the market's time, as data says
        self._clock_ns = 0  # the market clock's last reading, and when it was read
        self._clock_read_at = 0.0

    # -- health ---------------------------------------------------------------------------------

    def seconds_since_message(self) -> float:
        stream = self.stream
        last = stream.last_message_monotonic if stream is not None else None
        return self.clock.monotonic() - last if last is not None else math.inf

    def fresh(self) -> bool:
        """Connected, and not silent while the market is open."""
        return self.connected and (
            not self.market_open or self.seconds_since_message() < self.settings.silence_s
        )

    def now_ns(self) -> int:
        """The market's time: the end of the latest bar seen, or the clock's last reading moved
        on by the time since, whichever is later (a sandbox's clock may run faster than ours)."""
        since = self.clock.monotonic() - self._clock_read_at
        return max(self._bar_end_ns, self._clock_ns + int(since * 1e9))

    def saw_bar(self, bar: Bar) -> None:
        end = bar.ts + self.slicer.bar_ns
        self._bar_end_ns = max(self._bar_end_ns, end)

    # -- warm-up --------------------------------------------------------------------------------

    async def warm_up(self, clock: MarketClock) -> None:
        """Fill every strategy's lookback with recent bars, through the core, without trading."""
        need = self.engine.composer.warmup_bars
        if self.calendar is not None:
            await asyncio.to_thread(build_ahead, self.calendar, clock.ts)
        if self.buckets is not None:
            await self._warm_up_buckets(clock, need, self.buckets)
            return
        if not self.settings.warmup or need <= 0:
            return
        sessions_back = math.ceil(need / MINUTES_PER_SESSION) + 1
        now_day = datetime.fromtimestamp(clock.ts / 1e9, UTC).date()
        sessions = await self.rest.calendar(
            now_day - timedelta(days=7 * sessions_back + 7), now_day
        )
        past = [s for s in sessions if s.open_ns < clock.ts]
        if not past:
            return
        start_ns = past[max(len(past) - sessions_back, 0)].open_ns
        bars = await self.fetch(start_ns, clock.ts)  # in time order
        self.warmup_bars = len(bars)
        first, last = (bars[0].ts, bars[-1].ts) if bars else (None, None)
        await self._warm_feed(bars)  # empties `bars`
        if last is not None:
            self.slicer.resume_after(last)
        self.log.info(
            "warmup_done",
            bars=self.warmup_bars,
            slices=self.engine.counters.warmup_slices,
            lookback_bars=need,
            first=None if first is None else iso_utc(first),
            last=None if last is None else iso_utc(last),
        )

    async def _warm_up_buckets(self, clock: MarketClock, need: int, buckets: LiveBuckets) -> None:
        """Warm up at the strategies' timeframe, and rebuild the bucket under way.

        Daily strategies read Alpaca's daily bars (one bar a session instead of 390 minutes: a
        200-day lookback is a page per symbol, not 78,000 minutes); intraday timeframes read
        minutes and aggregate them, as the stream is, so their buckets align as configured (and
        Alpaca's hourly bars align to the clock). The latest session's minutes always come as
        minutes: they rebuild its bucket (after a restart too), which the daemon then completes
        and decides by the clock, even when it starts after the close.
        """
        timeframe = buckets.aggregator.timeframe
        daily = timeframe == "1Day"
        per_session = (
            1 if daily else -(-MINUTES_PER_SESSION * NS_PER_MINUTE // TIMEFRAME_NS[timeframe])
        )
        sessions_back = (math.ceil(need / per_session) + 1) if self.settings.warmup else 1
        now_day = datetime.fromtimestamp(clock.ts / 1e9, UTC).date()
        sessions = await self.rest.calendar(
            now_day - timedelta(days=7 * sessions_back // 5 + 14), now_day
        )
        past = [s for s in sessions if s.open_ns < clock.ts]
        if not past:
            return
        first = past[max(len(past) - sessions_back, 0)].open_ns
        completed: list[Bar] = []
        if daily:
            # The latest session (under way, or over and not yet decided: a start after the
            # close decides it) comes as minutes; the days before it are complete daily bars.
            latest = past[-1]
            if self.settings.warmup and need > 0:
                days = await self.fetch(day_start(first), clock.ts, "1Day")
                completed = [b for b in days if b.ts < day_start(latest.open_ns)]
            minutes = await self.fetch(latest.open_ns, clock.ts)
            completed.extend(await _aggregate(minutes, buckets))
        else:
            minutes = await self.fetch(first, clock.ts)
            completed = await _aggregate(minutes, buckets)
            completed.extend(buckets.close_through(clock.ts))
        self.warmup_bars = len(completed)
        await self._warm_feed(completed)  # empties `completed`
        rebuilt = len(minutes)
        if minutes:
            self.slicer.resume_after(minutes[-1].ts)
        await _release(minutes)
        self.log.info(
            "warmup_done",
            bars=self.warmup_bars,
            timeframe=timeframe,
            minutes_rebuilt=rebuilt,
            open_buckets=len(buckets.aggregator.open_symbols()),
            lookback_bars=need,
        )

    async def _warm_feed(self, bars: list[Bar]) -> None:
        """Completed bars through the core, slice by slice, deciding nothing; `bars` is emptied.

        The event loop runs every few ms (a 500-symbol warm-up is seconds of work, a slice
        ~10 ms): the engine is then between two inputs, as in the running daemon.
        """
        engine = self.engine
        journal = self.guard.journal
        # As fetched, whatever the source; sorted on a worker thread, by a sort that lets the
        # event loop run meanwhile (`time_ordered`).
        ordered = await asyncio.to_thread(time_ordered, bars)
        bars.clear()  # `ordered` holds them: `_release` frees them, a slice at a time
        turn = Turn(turns.WARM_UP_S)
        for bar in ordered:
            if engine.slice_ts is not None and bar.ts > engine.slice_ts:
                self._close_warm_slice()
            # After the close: a slice's close (its bars' journal write) never extends a turn
            # already spent.
            if turn.over():
                await turn.next()
            if journal is not None:
                journal.bar(bar, warmup=True)
            engine.on_bar(bar)
        if engine.slice_ts is not None:
            self._close_warm_slice()
        await _release(ordered)

    def _close_warm_slice(self) -> None:
        slice_ts = self.engine.slice_ts
        assert slice_ts is not None
        self.engine.close_slice()  # warming up: decides nothing
        self.guard.write(lambda j: j.close_slice(slice_ts, targets=None, orders=()))

    async def fetch(self, start_ns: int, end_ns: int | None, timeframe: str = "1Min") -> list[Bar]:
        return await asyncio.to_thread(
            self.history.fetch, self.symbols, start_ns, end_ns, timeframe
        )

    # -- the stream -----------------------------------------------------------------------------

    def open_stream(self) -> None:
        """Connect the data stream on a task of the daemon's; its messages go to `post`."""
        live = self.settings
        self.stream = AlpacaDataStream(
            url=self.urls["data_stream"],
            feed=live.feed,
            symbols=["FAKEPACA"] if live.feed == "test" else self.symbols,
            key=self.key,
            secret=self.secret,
            sink=self.post,
            market_open=lambda: self.market_open,
            silence_s=live.silence_s,
            backoff_min_s=live.backoff_min_s,
            backoff_max_s=live.backoff_max_s,
            connection_limit_backoff_s=live.connection_limit_backoff_s,
        )
        self.spawn(self.stream.run(), "data-stream")

    def on_connected(self, event: StreamConnected) -> None:
        self.connected = True
        self.telemetry.feed_connected(True)
        if event.reconnect:
            self.counters.reconnects += 1
            self.telemetry.feed_reconnected()
        self.log.info(
            "feed_connected",
            reconnect=event.reconnect,
            attempt=event.attempt,
            bars=event.subscription.get("bars", []),
        )
        # Whatever the stream missed (before this connect, or while it was down) comes from
        # the historical endpoint before any slice after the gap closes.
        self.backfill(self.engine.slice_ts)

    def backfill(self, open_slice_ts: int | None) -> None:
        """Fetch what the stream missed, from the open slice (or the first timestamp not
        seen) to now; the stream's bars are held meanwhile."""
        start = self.slicer.begin_backfill(open_slice_ts)
        if start is not None:
            self.spawn(self._backfill(start), "backfill")

    def on_disconnected(self, event: StreamDisconnected) -> None:
        self.connected = False
        self.telemetry.feed_connected(False)
        self.log.warning(
            "feed_disconnected", reason=event.reason, retry_in_s=round(event.retry_in_s, 3)
        )

    async def _backfill(self, start_ns: int) -> None:
        error: str | None = None
        bars: list[Bar] = []
        for attempt in range(4):
            try:
                bars = await self.fetch(start_ns, None)
                error = None
                break
            except TradingdError as e:
                error = str(e)
                await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
        self.post(Backfilled(bars=bars, error=error))

    def on_backfilled(self, result: Backfilled) -> Merged:
        """The backfill merged with what the stream delivered meanwhile: feed these in order."""
        engine = self.engine
        if result.error is not None:
            self.log.error("backfill_failed", error=result.error)
        merged = self.slicer.end_backfill(
            result.bars, open_slice_ts=engine.slice_ts, open_symbols=engine.slice_symbols
        )
        self.counters.backfills += 1
        self.counters.backfilled_bars += merged.added
        bars = merged.bars
        self.log.info(
            "backfilled",
            bars=merged.added,
            buffered=merged.buffered,
            first=iso_utc(bars[0].ts) if bars else None,
            last=iso_utc(bars[-1].ts) if bars else None,
        )
        return merged

    def on_status(self, status: TradingStatus, halted_symbols: set[str]) -> None:
        if status.halted and status.symbol not in halted_symbols:
            halted_symbols.add(status.symbol)
            self.log.warning(
                "trading_halted", symbol=status.symbol, code=status.code, reason=status.reason
            )
        elif not status.halted and status.symbol in halted_symbols:
            halted_symbols.discard(status.symbol)
            self.log.info("trading_resumed", symbol=status.symbol, code=status.code)

    def on_clock(self, clock: MarketClock, *, first: bool) -> None:
        if clock.is_open != self.market_open or first:
            self.log.info(
                "market_open" if clock.is_open else "market_closed",
                market_time=iso_utc(clock.ts),
                next_open=iso_utc(clock.next_open),
                next_close=iso_utc(clock.next_close),
            )
        self.market_open = clock.is_open
        self._clock_ns, self._clock_read_at = clock.ts, self.clock.monotonic()
        self.telemetry.market_open(clock.is_open)

    async def poll_clock(self, on_clock: Callable[[MarketClock], None]) -> None:
        """Follow the market clock (open or closed, for the silence check) without spinning."""
        async for _ in ticks(self.settings.clock_poll_s):
            try:
                clock = await self.rest.clock()
            except TradingdError as e:
                self.log.warning("clock_unavailable", error=str(e))
                continue
            on_clock(clock)


async def _aggregate(minutes: list[Bar], buckets: LiveBuckets) -> list[Bar]:
    """The buckets `minutes` complete, fed in turns: an hourly lookback of 500 symbols is
    millions of minutes, seconds of work the event loop (the HTTP server) must not wait for.
    Before the stream opens: nothing else feeds the buckets meanwhile."""
    completed: list[Bar] = []
    add = buckets.add
    turn = Turn(turns.WARM_UP_S)
    for n, minute in enumerate(minutes, 1):
        completed.extend(add(minute))
        if not n % 256 and turn.over():
            await turn.next()
    return completed


async def _release(items: list[Any]) -> None:
    """Empty `items` a slice at a time, letting the event loop run between: freeing 200,000
    bars in one go held it ~50 ms."""
    while items:
        del items[-_RELEASE_CHUNK:]
        await asyncio.sleep(0)


def day_start(ts_ns: int) -> int:
    """New York midnight of the date of `ts_ns` (where daily bars are stamped)."""
    day = datetime.fromtimestamp(ts_ns / 1e9, NEW_YORK).date()
    return local_midnight_ns(day, "America/New_York")
