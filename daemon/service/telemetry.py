"""Prometheus metrics of one daemon: its own registry, fed by the driver and the engine.

The driver calls the cheap synchronous methods (`bar_received`, `order_submitted`, ...) and fans
the engine's callbacks here (`Telemetry` is an `EngineListener`). Values that change without an
event (seconds since the last bar, the ledger's equity and positions, the kill switch) are read
at scrape time by a collector (`daemon.service.collectors`), so a quiet daemon still reports the
truth. The families and their bounded labels are in `daemon.service.metric_families`.

Call `exposition()` from the event loop's thread (it reads the ledger), or have the thread
that owns the ledger `publish()` it, after which scrapes serve the published text. A daemon's
HTTP server awaits `render()`, which reads the loop's state on the loop and does the rest on a
worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

from brokers.base import NOT_SENT_STALE, NOT_SENT_STOPPED, NOT_SENT_SUPERSEDED
from brokers.orders import (
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
)
from daemon.service.collectors import ScrapeTimeCollector, WithoutCreated
from daemon.service.metric_families import (
    BAR_REJECT_REASONS,
    OTHER,
    order_reject_reason,
    register_families,
)
from daemon.service.notify_metrics import NotifyCollector

if TYPE_CHECKING:  # types only: importing the engine's stack would slow `tradingd --help`
    from composer.targets import Targets
    from daemon.engine import Decision
    from daemon.service.notify.counters import NotifyCounters
    from portfolio.events import KillSwitchTripped
    from portfolio.ledger import Ledger
    from portfolio.risk import RiskGate

# The longest a render waits at one pause for a decision to end.
_PAUSE_LIMIT_S = 1.0
# Round-trip clocks of orders never resolved (a lost event) must not grow without end.
_MAX_OPEN_CLOCKS = 10_000
_NOT_SENT = {
    NOT_SENT_SUPERSEDED: "superseded",
    NOT_SENT_STALE: "stale",
    NOT_SENT_STOPPED: "stopped",
}


class Telemetry:
    """The metrics of one daemon (an `EngineListener` too).

    Args:
        mode: the daemon's mode (replay, sim, paper, live, track): the `tradingd_info` label.
        symbols: the universe; per-symbol series exist for these from the start.
        strategies: the strategy ids; per-strategy series exist for these from the start.
        monotonic: the clock of "seconds since the last bar" and of the order round trips.

    Attributes:
        registry: the registry to scrape (never prometheus-client's global one).
    """

    def __init__(
        self,
        *,
        mode: str,
        symbols: Sequence[str],
        strategies: Sequence[str],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mode = mode
        self.symbols = tuple(symbols)
        self.strategies = tuple(strategies)
        self._monotonic = monotonic
        self._scraped = ScrapeTimeCollector(self.symbols, monotonic)
        # client_order_id -> [submitted at (monotonic), acknowledged yet]
        self._clocks: dict[str, list[float | bool]] = {}
        self._published: bytes | None = None
        self._rendering = asyncio.Lock()  # one scrape rendered at a time (`render`)
        # Clear while the event loop decides a slice: a render on a worker thread waits then
        # (`deciding`), rather than share the interpreter with the decision.
        self._loop_free = threading.Event()
        self._loop_free.set()
        self._targets: Targets | None = None  # composed, not yet on the weight gauges
        self.registry = _ReadHook(self._set_weights)
        families = register_families(
            self.registry, mode=mode, symbols=self.symbols, strategies=self.strategies
        )
        self._feed = families.feed
        self._decisions = families.decisions
        self._orders = families.orders
        self._daemon = families.daemon
        self.registry.register(self._scraped)

    # -- scraping -----------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of the registry and its content type (format 0.0.4).

        Once `publish()` was called, the text it rendered (never waits). Otherwise rendered now.
        """
        published = self._published
        if published is not None:
            return published, CONTENT_TYPE_PLAIN_0_0_4
        return generate_latest(WithoutCreated(self.registry)), CONTENT_TYPE_PLAIN_0_0_4

    async def render(self) -> tuple[bytes, str]:
        """`exposition()`, without holding the event loop for it.

        At 500 symbols the text has ~12,000 samples, ~130 ms of collecting and formatting:
        each scrape held the loop that long. Here the state only the loop's thread may read
        (the ledger, the freshness clocks, the composed weights) is read on it, in a few ms;
        prometheus-client's own metrics, whose reads take their locks, are collected and the
        text formatted on a worker thread while the loop runs. Call it on the loop's thread.
        """
        published = self._published
        if published is not None:
            return published, CONTENT_TYPE_PLAIN_0_0_4
        async with self._rendering:
            self._set_weights()
            self._scraped.hold()
            self.registry.hooked = False  # the weights are set: the worker must not touch them
            try:
                body = await asyncio.to_thread(
                    generate_latest, WithoutCreated(self.registry, pause=self._wait_for_loop)
                )
            finally:
                self.registry.hooked = True
                self._scraped.release()
        return body, CONTENT_TYPE_PLAIN_0_0_4

    def publish(self) -> None:
        """Render the exposition now, for every scrape until the next `publish()`.

        For a driver whose engine runs on another thread (the paced replay): that thread calls
        it between slices, so a scrape reads a finished text and never waits for the engine.
        """
        self._published = generate_latest(WithoutCreated(self.registry))

    def attach(self, *, ledger: Ledger | None = None, risk: RiskGate | None = None) -> None:
        """Read the ledger's gauges and the kill switch from these at scrape time.

        `on_slice` attaches its ledger too; attach at start-up so equity shows before the
        first slice (after the account was adopted, say). With `risk` attached the kill-switch
        gauge follows `risk.kill_switch`, resets included.
        """
        if ledger is not None:
            self._scraped.ledger = ledger
        if risk is not None:
            self._scraped.risk = risk

    def count_notifications(self, counters: NotifyCounters) -> None:
        """Expose the notifier's counts (`tradingd_notifications_*_total{target}`)."""
        self.registry.register(NotifyCollector(counters))

    # -- driver calls -------------------------------------------------------------------------

    def bar_received(self, symbol: str) -> None:
        self._feed.bars_received[symbol].inc()

    def bar_accepted(self, symbol: str, ts: int) -> None:
        """An accepted bar (`ts`: its start, UTC ns); restarts the symbol's freshness clock."""
        accepted = self._feed.bars_accepted
        accepted[symbol].inc()
        if symbol in accepted:
            scraped = self._scraped
            scraped.last_bar[symbol] = self._monotonic()
            if ts > scraped.last_bar_ts.get(symbol, -(2**63)):
                scraped.last_bar_ts[symbol] = ts

    def bar_rejected(self, symbol: str, reason: str) -> None:
        feed = self._feed
        child = feed.bar_reject_children.get((symbol, reason))
        if child is None:
            label_symbol = symbol if symbol in feed.bars_accepted else OTHER
            label_reason = reason if reason in BAR_REJECT_REASONS else OTHER
            child = feed.bars_rejected.labels(label_symbol, label_reason)
        child.inc()

    def bar_late(self, symbol: str) -> None:
        self._feed.bars_late[symbol].inc()

    def bar_updated(self, symbol: str) -> None:
        self._feed.bars_updated[symbol].inc()

    @contextlib.contextmanager
    def deciding(self) -> Iterator[None]:
        """Around a decision on the event loop's thread: a scrape rendering on a worker thread
        waits at its next pause (a family or `PAUSE_EVERY` samples on) until it ends. At 500
        symbols a render is ~150 ms of interpreter time; a decision it overlapped shared the
        interpreter with it and took several times as long. A family's collection is not
        interrupted (`bars_rejected_total`, 5,500 series at 500 symbols: ~40 ms)."""
        self._loop_free.clear()
        try:
            yield
        finally:
            self._loop_free.set()

    def _wait_for_loop(self) -> None:
        # Bounded: a decision is ms; a render must not stall behind a loop that never says.
        self._loop_free.wait(_PAUSE_LIMIT_S)

    def slice_decided(self, decision_latency_s: float) -> None:
        """A slice was decided and its orders handed over, `decision_latency_s` after its close."""
        self._decisions.slices.inc()
        self._decisions.decision_latency.observe(max(decision_latency_s, 0.0))

    def feed_connected(self, connected: bool) -> None:
        self._feed.feed_connected.set(1 if connected else 0)

    def feed_reconnected(self) -> None:
        self._feed.feed_reconnects.inc()

    def market_open(self, is_open: bool) -> None:
        self._feed.market_open.set(1 if is_open else 0)

    def order_submitted(self, symbol: str, client_order_id: str) -> None:
        """An order was handed to the broker: starts its acknowledgement and fill clocks."""
        self._orders.submitted[symbol].inc()
        clocks = self._clocks
        if len(clocks) >= _MAX_OPEN_CLOCKS:
            del clocks[next(iter(clocks))]  # the oldest: its events were lost
        clocks[client_order_id] = [self._monotonic(), False]

    def broker_stream(self, up: bool) -> None:
        self._daemon.broker_stream.set(1 if up else 0)

    def reconciliation(self, differences: int) -> None:
        """A reconciliation ran and found `differences` differences (0: the books agree)."""
        self._daemon.reconciliations.inc()
        if differences > 0:
            self._daemon.differences.inc(differences)

    def task_failed(self, task: str) -> None:
        """One of the daemon's tasks ended on an unexpected error (`TASKS` names them)."""
        self._daemon.task_failures[task].inc()

    def halted(self, on: bool) -> None:
        self._daemon.halted.set(1 if on else 0)

    def ready(self, ok: bool) -> None:
        self._daemon.ready.set(1 if ok else 0)

    def kill_switch_reset(self) -> None:
        """The kill switch was reset (only needed when no RiskGate is attached)."""
        self._scraped.kill = False

    def loop_lag(self, seconds: float) -> None:
        self._daemon.loop_lag.observe(max(seconds, 0.0))

    async def measure_loop_lag(
        self,
        interval_s: float = 0.5,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """Observe how late the loop wakes a timer due every `interval_s` on average; runs
        until cancelled.

        Each deadline follows the last by a random 0.5 to 1.5 intervals. At a fixed period the
        timer kept one phase against the daemon's own periodic work (a minute's bars, then its
        decision): it fell inside that work at every wake-up or never, and the histogram said
        so depending on when the daemon started. A wake-up more than one interval late skips
        the missed deadlines instead of bursting.
        """
        draw = (rng or random.Random()).uniform

        def gap() -> float:
            return interval_s * draw(0.5, 1.5)

        loop = asyncio.get_running_loop()
        due = loop.time() + gap()
        while True:
            await sleep(max(due - loop.time(), 0.0))
            now = loop.time()
            self.loop_lag(now - due)
            due += gap()
            if due <= now:
                due = now + gap()

    # -- EngineListener -----------------------------------------------------------------------

    def on_slice(self, ts: int, ledger: Ledger) -> None:
        self._scraped.ledger = ledger
        self._scraped.last_slice_ts = ts

    def on_targets(self, targets: Targets) -> None:
        # The gauges take the weights when the registry is read: a rebalance of 500 symbols
        # set 500 gauges (~0.2 ms of the decision) for a scrape every 15 s or so.
        self._targets = targets

    def _set_weights(self) -> None:
        targets = self._targets
        if targets is None:
            return
        self._targets = None
        weights = targets.weights
        for symbol, child in self._decisions.target_weight.items():
            child.set(weights.get(symbol, 0.0))
        strategy_weights = targets.strategy_weights
        for strategy, child in self._decisions.strategy_weight.items():
            child.set(strategy_weights.get(strategy, 0.0))

    def on_decision(self, decision: Decision) -> None:
        event = decision.risk_event
        if event is None:
            return
        if decision.risk == "denied":
            self._orders.denied[event.reason].inc()
        elif decision.risk == "clipped":
            for reason in event.reason.split(","):
                self._orders.clipped[reason.strip()].inc()

    def on_kill_switch(self, event: KillSwitchTripped) -> None:
        self._scraped.kill = True

    def on_execution(self, event: ExecutionEvent, applied: bool) -> None:
        clocks = self._clocks
        orders = self._orders
        match event:
            case OrderAccepted():
                clock = clocks.get(event.client_order_id)
                if clock is not None and not clock[1]:
                    clock[1] = True
                    orders.ack.observe(max(self._monotonic() - float(clock[0]), 0.0))
            case OrderFilled():
                if not applied:
                    return  # a duplicate of a fill already counted
                orders.filled[event.symbol].inc()
                clock = clocks.pop(event.client_order_id, None)
                if clock is not None:
                    orders.fill.observe(max(self._monotonic() - float(clock[0]), 0.0))
            case OrderPartiallyFilled():
                pass
            case OrderRejected():
                orders.rejected[order_reject_reason(event.reason)].inc()
                clocks.pop(event.client_order_id, None)
            case OrderCanceled():
                label = _NOT_SENT.get(event.reason)
                if label is not None:
                    orders.not_sent[label].inc()
                else:
                    orders.canceled[event.symbol].inc()
                clocks.pop(event.client_order_id, None)

    def on_stale(self, symbol: str, ts: int, stale: bool) -> None:
        self._feed.stale[symbol].set(1 if stale else 0)


class _ReadHook(CollectorRegistry):
    """A registry that calls `before` each time it is read (scraped, or a sample looked up),
    while `hooked`."""

    def __init__(self, before: Callable[[], None]) -> None:
        super().__init__(auto_describe=True)
        self._before = before
        self.hooked = True

    def collect(self) -> Iterator[Metric]:
        if self.hooked:
            self._before()
        yield from super().collect()
