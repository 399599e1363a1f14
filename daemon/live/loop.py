"""The one task that owns the engine: every input of the live daemon, in order.

Stream messages, broker wake-ups and backfill results arrive on one queue; this loop hands each
to the engine (bars, through the slice rule of `slicer`) or to the room that deals with it, and
decides a slice when it is complete or its grace period has passed. The core stays synchronous
and single-threaded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, assert_never

from brokers.base import LiveBroker
from composer.targets import Targets
from daemon.engine import Engine
from daemon.live import turns
from daemon.live.buckets import LiveBuckets
from daemon.live.guard import JournalGuard
from daemon.live.market import Backfilled, MarketData
from daemon.live.orders import OrderPath
from daemon.live.recovery import Recovery
from daemon.live.slicer import Slicer
from daemon.live.turns import Turn
from daemon.logs import EventLog
from daemon.recorder import Recorder
from daemon.service.telemetry import Telemetry
from daemon.timeutil import Clock, iso_utc
from feeds.alpaca_stream import (
    DataEvent,
    StreamBar,
    StreamConnected,
    StreamDisconnected,
    StreamNotice,
    TradingStatus,
)
from feeds.bar import Bar
from portfolio.journal import Journal


@dataclass(frozen=True, slots=True)
class BrokerWake:
    """The broker has events or notices to poll."""


@dataclass(frozen=True, slots=True)
class Fatal:
    """A task of the daemon failed: the loop raises it, and the daemon stops.

    Attributes:
        task: the task's name (`failures.TASKS` for the metric's label).
    """

    error: BaseException
    task: str


Item = DataEvent | BrokerWake | Backfilled | Fatal


class EngineLoop:
    """Feeds the engine from the queue.

    Args:
        follow_account: reconciliations replace the ledger's account (a read-only daemon)
            instead of being checked against it.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        broker: LiveBroker,
        market: MarketData,
        orders: OrderPath,
        recovery: Recovery,
        guard: JournalGuard,
        telemetry: Telemetry,
        recorder: Recorder,
        slicer: Slicer,
        log: EventLog,
        clock: Clock,
        follow_account: bool,
        buckets: LiveBuckets | None = None,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.market = market
        self.orders = orders
        self.recovery = recovery
        self.guard = guard
        self.telemetry = telemetry
        self.recorder = recorder
        self.slicer = slicer
        self.log = log
        self.clock = clock
        self.buckets = buckets  # minutes aggregated to the strategies' timeframe, if coarser
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.stopping = asyncio.Event()
        self.progress = asyncio.Event()
        self.reconciliations = 0
        self._catching_up = False
        # Backfilled bars not fed yet: fed in turns, before any queued input (which came later).
        self._backlog: deque[Bar] = deque()
        self.failed_task = "engine"  # whose error `run` raised: this loop's own, or a task's
        self._bar_arrived_at = clock.monotonic()
        self._after_reconcile: Callable[[], None] = (
            self._follow_account if follow_account else self._check_positions
        )

    @property
    def catching_up(self) -> bool:
        """A backfill's bars are still being fed (in turns, before any queued input)."""
        return bool(self._backlog)

    def post(self, item: Item) -> None:
        self.queue.put_nowait(item)

    async def run(self) -> None:
        """Handle queued items until a stop is requested."""
        queue = self.queue
        slicer = self.slicer
        self.recorder.defer_targets = True  # written by `_decided`
        self.orders.journal_behind = True  # written by `_decided`
        stop = asyncio.ensure_future(self.stopping.wait())
        get: asyncio.Future[Any] = asyncio.ensure_future(queue.get())
        try:
            while not self.stopping.is_set():
                if self._backlog:
                    self._catch_up()
                    self.progress.set()
                    await asyncio.sleep(0)
                    continue
                timeout = None
                if slicer.grace_at is not None and self._can_close():
                    timeout = max(slicer.grace_at - self.clock.monotonic(), 0.0)
                if self.buckets is not None:
                    timeout = self._bucket_timeout(timeout)
                done, _ = await asyncio.wait(
                    {get, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if get in done:
                    item = get.result()
                    get = asyncio.ensure_future(queue.get())
                    self._handle(item)
                    # Take what is already queued before deciding on the clock, in turns of
                    # a few ms (a minute's bars of 500 symbols take ~10): the other tasks
                    # (timers, the HTTP server) run between them.
                    turn = Turn(turns.INPUT_S)
                    while not queue.empty() and not self.stopping.is_set() and not self._backlog:
                        self._handle(queue.get_nowait())
                        if turn.over():
                            break
                    self._write_bars()
                if queue.empty() and self._can_close() and slicer.due(self.clock.monotonic()):
                    self._decide()
                if self.buckets is not None and queue.empty():
                    self.on_market_time()
                self.progress.set()
        finally:
            get.cancel()
            stop.cancel()

    def _write_bars(self) -> None:
        """The bars handled so far go to the journal now, while their slice is open, not all
        with its close: the decision writes only the bars of its last turn (500 symbols' bars
        are ~1 ms of inserts). The order of the journal's inputs is the same either way."""
        guard = self.guard
        if guard.journal is not None and guard.failed is None and self.engine.slice_ts is not None:
            guard.write(_flush_bars)

    def _can_close(self) -> bool:
        return self.market.connected and not self.slicer.backfilling and not self._backlog

    def _handle(self, item: Item) -> None:
        match item:
            case StreamBar():
                if item.updated:
                    self._on_updated_bar(item.bar)
                    return
                self._bar_arrived_at = self.clock.monotonic()
                next_ts = self.slicer.next_ts
                if not self.slicer.backfilling and next_ts is not None and item.bar.ts > next_ts:
                    # A whole timestamp is missing for the universe (a quiet socket that came
                    # back, say): fetch it before anything after it is decided.
                    self.log.warning("feed_gap", first_missing=iso_utc(next_ts))
                    self.market.backfill(self.engine.slice_ts)
                if not self.slicer.hold(item.bar):
                    self._on_bar(item.bar)
            case BrokerWake():
                self.on_broker()
            case Backfilled():
                # Fed by `_catch_up`, in turns (an outage's backfill may be thousands of bars).
                self._backlog.extend(self.market.on_backfilled(item).bars)
                if not self._backlog:
                    self._caught_up()
            case TradingStatus():
                self.market.on_status(item, self.orders.halted_symbols)
            case StreamConnected():
                self.market.on_connected(item)
            case StreamDisconnected():
                self.market.on_disconnected(item)
            case StreamNotice():
                self.log.log(item.level, item.event, **item.fields)
            case Fatal():
                self.failed_task = item.task
                raise item.error
            case _:
                assert_never(item)

    def _catch_up(self) -> None:
        """One turn of backfilled bars. Every slice they complete is history: it feeds the
        strategies and sends nothing; the slice left open is the latest, and trades what is
        owed once the last backfilled bar is in."""
        backlog = self._backlog
        turn = Turn(turns.INPUT_S)
        self._catching_up = True
        try:
            while backlog:
                self._on_bar(backlog.popleft())
                if turn.over():
                    break
        finally:
            self._catching_up = False
        self._write_bars()
        if not backlog:
            self._caught_up()

    def _caught_up(self) -> None:
        if self.engine.slice_complete and self._can_close():
            self._decide()

    def _on_bar(self, bar: Bar) -> None:
        buckets = self.buckets
        if buckets is None:
            self._engine_bar(bar)
            return
        # A minute: into its bucket (and to a simulated broker, which fills on minutes); the
        # buckets it completes go through the engine as bars of the strategies' timeframe.
        self.market.saw_bar(bar)
        self.slicer.seen(bar.ts)
        self.broker.on_bar(bar)
        # The feed's freshness is the minutes' (a daily bar comes once a day): the metrics and
        # the no-data alert see each minute taken into its bucket.
        self.telemetry.bar_received(bar.symbol)
        self.telemetry.bar_accepted(bar.symbol, bar.ts)
        if buckets.decision_ns(bar.ts) is not None:
            # before_close: a minute at or after decide_at first closes the day's decision.
            self._decide_partials(buckets.partials(self.market.now_ns(), minute_ts=bar.ts))
        for done in buckets.drop_decided(buckets.add(bar)):
            self._engine_bar(done, to_broker=False)

    def on_market_time(self) -> None:
        """Buckets whose end (plus the grace) the market's time has passed complete and are
        decided; held auction orders whose window opened leave."""
        buckets = self.buckets
        if buckets is None or not self._can_close():
            return
        now = self.market.now_ns()
        done = buckets.close_through(now)
        for bar in done:
            self._engine_bar(bar, to_broker=False)
        if done and self.engine.slice_ts is not None and not self._catching_up:
            self._decide()
        self._decide_partials(buckets.partials(now))
        released = buckets.release(now)
        if released:
            self.log.info("auction_orders_released", orders=len(released))
            self.orders.send(released)

    def _decide_partials(self, due: tuple[list[Bar], int]) -> None:
        """before_close: the day's bars so far through the engine, decided at decide_at."""
        bars, decided_at = due
        if not bars:
            return
        engine = self.engine
        if engine.slice_ts is not None:
            self._decide()
        for bar in bars:
            self._engine_bar(bar, to_broker=False, complete_decides=False)
        if engine.slice_ts is not None and not self._catching_up:
            self.slicer.closed()
            replaced = engine.last_targets
            self.orders.decide(decided_at=decided_at)
            self._decided(replaced)

    def _bucket_timeout(self, timeout: float | None) -> float | None:
        buckets = self.buckets
        assert buckets is not None
        now = self.market.now_ns()
        wake = [t for t in (buckets.due_ns(now), buckets.release_at_ns(now)) if t is not None]
        if not wake:
            return timeout
        wait = max((min(wake) - now) / 1e9, 0.0) + 0.01
        return wait if timeout is None else min(timeout, wait)

    def _engine_bar(
        self, bar: Bar, *, to_broker: bool = True, complete_decides: bool = True
    ) -> None:
        engine = self.engine
        telemetry = self.telemetry
        symbol = bar.symbol
        telemetry.bar_received(symbol)
        self.market.saw_bar(bar)
        open_ts = engine.slice_ts
        if open_ts is not None and bar.ts > open_ts:
            self._decide()
        journal = self.guard.journal
        if journal is not None:
            journal.bar(bar)  # buffered; written with the slice's close (the audit's input)
        late = engine.counters.bars_late
        reason = engine.on_bar(bar)
        if reason is not None:
            telemetry.bar_rejected(symbol, reason)
            self.recorder.rejected_bar("stream", 0, symbol, iso_utc(bar.ts), reason)
            return
        telemetry.bar_accepted(symbol, bar.ts)
        if engine.counters.bars_late != late:
            telemetry.bar_late(symbol)
            return
        self.slicer.seen(bar.ts)
        if to_broker and engine.slice_ts == bar.ts:
            self.broker.on_bar(bar)
        if engine.slice_complete:
            if self._can_close() and not self._catching_up and complete_decides:
                self._decide()
        elif engine.slice_ts is not None:
            self.slicer.arm(self.clock.monotonic())

    def check_quiet(self) -> None:
        """No bar for longer than two bars while the market is open and the socket is up:
        fetch what the stream may have missed (the socket may be quiet, not closed)."""
        quiet_s = self.clock.monotonic() - self._bar_arrived_at
        if (
            self.market.market_open
            and self.market.connected
            and not self.slicer.backfilling
            and not self._backlog
            and quiet_s > 2 * self.slicer.bar_ns / 1e9
        ):
            self.log.info("feed_quiet", seconds=round(quiet_s, 1))
            self._bar_arrived_at = self.clock.monotonic()
            self.market.backfill(self.engine.slice_ts)

    def _on_updated_bar(self, bar: Bar) -> None:
        journal = self.guard.journal
        if journal is not None:
            journal.updated_bar(bar)
        if self.engine.on_updated_bar(bar):  # counted by the engine when late
            self.telemetry.bar_updated(bar.symbol)

    def _decide(self) -> None:
        self.slicer.closed()
        replaced = self.engine.last_targets
        self.orders.decide(catch_up=self._catching_up)
        self._decided(replaced)

    def _decided(self, replaced: Targets | None) -> None:
        # At the loop's next turn, after the tasks the hand-over woke (the broker's sender):
        # the journal's records of a slice that sent nothing (closed behind), the recorder's
        # rows of the slice's targets, and the end of the targets the slice replaced. Holding
        # them here makes that callback the last holder of their dicts, so the decision does
        # not pay for freeing them (at 500 symbols, ~0.15 ms when the telemetry let the last
        # reference go).
        loop = asyncio.get_running_loop()
        loop.call_soon(self._write_behind)
        loop.call_soon(self.recorder.write_due_targets)
        loop.call_soon(_release, replaced)

    def _write_behind(self) -> None:
        # A failed write breaks the guard (the engine halts), as a failed close would have.
        if self.guard.failed is None:
            self.guard.write(Journal.write_behind)

    # -- the broker -----------------------------------------------------------------------------

    async def pump_broker(self) -> None:
        """Turn the broker's wake-ups into queue items (runs until cancelled)."""
        ready = self.broker.events_ready
        while True:
            await ready.wait()
            ready.clear()
            self.queue.put_nowait(BrokerWake())

    def on_broker(self) -> None:
        broker = self.broker
        self.drain_broker_notices()
        events = broker.poll_events()  # raises the adapter's fatal error once drained
        if events:
            self.orders.apply_events(events)
        if broker.reconciliations != self.reconciliations:
            self.reconciliations = broker.reconciliations
            last = broker.last_reconcile
            self.telemetry.reconciliation(len(last.differences) if last else 0)
            self._after_reconcile()

    def _follow_account(self) -> None:
        # Read-only: the account is the truth, whatever the stream missed.
        self.recovery.adopt_account(self.broker, restart=False, policy="adopt")

    def _check_positions(self) -> None:
        self.recovery.check_positions(self.broker, self.clock.now_ns())

    def drain_broker_notices(self) -> None:
        for notice in self.broker.poll_notices():
            self.log.log(notice.level, notice.event, **notice.fields)
            if notice.event in ("trade_stream_up", "trade_stream_down"):
                self.telemetry.broker_stream(notice.event == "trade_stream_up")


def _flush_bars(journal: Journal) -> None:
    journal.flush()


def _release(_: object) -> None:
    """Nothing: its callback's handle holds the object until the callback has run."""
