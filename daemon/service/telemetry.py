"""Prometheus metrics of one daemon: its own registry, fed by the driver and the engine.

The driver calls the cheap synchronous methods (`bar_received`, `order_submitted`, ...) and fans
the engine's callbacks here (`Telemetry` is an `EngineListener`). Values that change without an
event (seconds since the last bar, the ledger's equity and positions, the kill switch) are read
at scrape time by a collector, so a quiet daemon still reports the truth.

Label values come only from the configured universe, the strategy ids and fixed sets of reasons:
anything else is counted under "other", so the number of series stays bounded whatever a broker
or a feed sends. Call `exposition()` from the event loop's thread (it reads the ledger).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.registry import Collector

from brokers.orders import (
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
)
from feeds.sanity import Reason
from portfolio.risk import DENY_REASONS

if TYPE_CHECKING:  # types only: importing the engine's stack would slow `tradingd --help`
    from composer.targets import Targets
    from daemon.engine import Decision
    from portfolio.events import KillSwitchTripped
    from portfolio.ledger import Ledger
    from portfolio.risk import RiskGate

OTHER: Final = "other"
"""The label value for anything outside the known set (a symbol, a reason)."""

BAR_REJECT_REASONS: Final = (*(reason.value for reason in Reason), "unknown_symbol")
"""The sanity checks' reasons, and the engine's own for a symbol outside the universe."""
ORDER_REJECT_REASONS: Final = ("rejected", "not_sent", "halted", "insufficient_buying_power")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ACK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Market orders fill at the next bar's open: about a minute after the decision, or much later.
_FILL_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 90.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Round-trip clocks of orders never resolved (a lost event) must not grow without end.
_MAX_OPEN_CLOCKS = 10_000
_M = TypeVar("_M", Counter, Gauge)


def order_reject_reason(reason: str) -> str:
    """Map a rejection's free text (Alpaca's message, a driver's note) to a bounded label."""
    text = reason.lower()
    if "halted" in text:
        return "halted"
    if text.startswith("not sent"):
        return "not_sent"
    if "insufficient" in text and ("buying power" in text or "funds" in text):
        return "insufficient_buying_power"
    return "rejected"


def _tradingd_version() -> str:
    try:
        return version("tradingd")
    except PackageNotFoundError:
        return "unknown"


class _Bounded(Generic[_M]):
    """A family with one label whose children exist for a fixed set of values, plus "other"."""

    __slots__ = ("_children", "_family", "_other")

    def __init__(self, family: _M, values: Iterable[str]) -> None:
        self._family: _M = family
        self._children: dict[str, _M] = {v: family.labels(v) for v in values}
        self._other: _M | None = None

    def __getitem__(self, value: str) -> _M:
        child = self._children.get(value)
        if child is not None:
            return child
        if self._other is None:
            self._other = self._family.labels(OTHER)
        return self._other

    def __contains__(self, value: str) -> bool:
        return value in self._children

    def items(self) -> Iterator[tuple[str, _M]]:
        return iter(self._children.items())


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
        self._started = monotonic()
        self._last_bar: dict[str, float] = {}
        self._last_bar_ts: dict[str, int] = {}
        # client_order_id -> [submitted at (monotonic), acknowledged yet]
        self._clocks: dict[str, list[float | bool]] = {}
        self._ledger: Ledger | None = None
        self._risk: RiskGate | None = None
        self._kill = False
        self._last_slice_ts: int | None = None
        self.guard: AbstractContextManager[Any] = contextlib.nullcontext()

        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        syms = self.symbols

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, doc, labelnames=labels, registry=r)

        def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, doc, labelnames=labels, registry=r)

        def histogram(name: str, doc: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(name, doc, buckets=buckets, registry=r)

        info = gauge(
            "tradingd_info", "The daemon's mode and version (always 1).", ("mode", "version")
        )
        info.labels(mode, _tradingd_version()).set(1)

        # Market data.
        self._bars_received = _Bounded(
            counter("tradingd_bars_received", "Bars received from the feed.", ("symbol",)), syms
        )
        self._bars_accepted = _Bounded(
            counter("tradingd_bars_accepted", "Bars that passed the sanity checks.", ("symbol",)),
            syms,
        )
        rejected = counter(
            "tradingd_bars_rejected", "Bars quarantined, by reason.", ("symbol", "reason")
        )
        self._bars_rejected = rejected
        self._bar_reject_children = {
            (s, reason): rejected.labels(s, reason) for s in syms for reason in BAR_REJECT_REASONS
        }
        self._bars_late = _Bounded(
            counter(
                "tradingd_bars_late",
                "Bars that arrived after their slice was decided (they only mark positions).",
                ("symbol",),
            ),
            syms,
        )
        self._bars_updated = _Bounded(
            counter(
                "tradingd_bars_updated",
                "Corrected bars (updatedBars) that came after their slice was decided.",
                ("symbol",),
            ),
            syms,
        )
        self._stale = _Bounded(
            gauge(
                "tradingd_symbol_stale",
                "1 while the symbol has had no bar for stale_after_slices slices.",
                ("symbol",),
            ),
            syms,
        )
        self._feed_connected = gauge(
            "tradingd_feed_connected", "1 while the market-data stream is connected."
        )
        self._feed_reconnects = counter(
            "tradingd_feed_reconnects", "Reconnects of the market-data stream."
        )
        self._market_open = gauge(
            "tradingd_market_open", "1 while the market is open (the broker's clock)."
        )

        # Decisions.
        self._slices = counter("tradingd_slices_decided", "Slices decided (warm-up excluded).")
        self._decision_latency = histogram(
            "tradingd_decision_latency_seconds",
            "From a slice's close to its orders handed to the broker.",
            _LATENCY_BUCKETS,
        )
        self._target_weight = _Bounded(
            gauge(
                "tradingd_target_weight",
                "The composed target weight per symbol (fraction of equity, signed).",
                ("symbol",),
            ),
            syms,
        )
        self._strategy_weight = _Bounded(
            gauge(
                "tradingd_strategy_weight",
                "The capital weight the composer gives each strategy.",
                ("strategy",),
            ),
            self.strategies,
        )

        # Orders.
        self._submitted = _Bounded(
            counter("tradingd_orders_submitted", "Orders handed to the broker.", ("symbol",)),
            syms,
        )
        self._filled = _Bounded(
            counter("tradingd_orders_filled", "Orders filled completely.", ("symbol",)), syms
        )
        self._canceled = _Bounded(
            counter(
                "tradingd_orders_canceled",
                "Orders canceled or expired at the broker.",
                ("symbol",),
            ),
            syms,
        )
        self._rejected = _Bounded(
            counter(
                "tradingd_orders_rejected",
                "Orders rejected by the broker or not sent (halted, unreachable), by reason.",
                ("reason",),
            ),
            ORDER_REJECT_REASONS,
        )
        self._denied = _Bounded(
            counter(
                "tradingd_orders_denied", "Orders the risk gate refused, by rule.", ("reason",)
            ),
            DENY_REASONS,
        )
        self._clipped = _Bounded(
            counter(
                "tradingd_orders_clipped",
                "Orders the risk gate reduced, by rule (an order clipped by two rules counts in "
                "both).",
                ("reason",),
            ),
            DENY_REASONS,
        )
        self._ack = histogram(
            "tradingd_order_ack_seconds",
            "From an order's submission to the broker's acknowledgement.",
            _ACK_BUCKETS,
        )
        self._fill = histogram(
            "tradingd_order_fill_seconds",
            "From an order's submission to its final fill.",
            _FILL_BUCKETS,
        )

        # The broker and the daemon.
        self._halted = gauge("tradingd_halted", "1 while an operator halted new orders.")
        self._broker_stream = gauge(
            "tradingd_broker_stream_up", "1 while the broker's trade-update stream is up."
        )
        self._reconciliations = counter(
            "tradingd_reconciliations", "Reconciliations with the broker's account."
        )
        self._differences = counter(
            "tradingd_reconciliation_differences",
            "Differences reconciliations found between the ledger and the broker.",
        )
        self._ready = gauge("tradingd_ready", "1 while every readiness check passes (/readyz).")
        self._loop_lag = histogram(
            "tradingd_event_loop_lag_seconds",
            "How late the event loop woke a periodic timer.",
            _LAG_BUCKETS,
        )
        r.register(_ScrapeTimeCollector(self))

    # -- scraping -----------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of the registry and its content type (format 0.0.4).

        Taken under `guard`: a driver whose engine runs on another thread (the paced replay)
        sets it to the lock that thread holds while it touches the ledger.
        """
        with self.guard:
            body = generate_latest(_WithoutCreated(self.registry))
        return body, CONTENT_TYPE_PLAIN_0_0_4

    def attach(self, *, ledger: Ledger | None = None, risk: RiskGate | None = None) -> None:
        """Read the ledger's gauges and the kill switch from these at scrape time.

        `on_slice` attaches its ledger too; attach at start-up so equity shows before the
        first slice (after the account was adopted, say). With `risk` attached the kill-switch
        gauge follows `risk.kill_switch`, resets included.
        """
        if ledger is not None:
            self._ledger = ledger
        if risk is not None:
            self._risk = risk

    # -- driver calls -------------------------------------------------------------------------

    def bar_received(self, symbol: str) -> None:
        self._bars_received[symbol].inc()

    def bar_accepted(self, symbol: str, ts: int) -> None:
        """An accepted bar (`ts`: its start, UTC ns); restarts the symbol's freshness clock."""
        self._bars_accepted[symbol].inc()
        if symbol in self._bars_accepted:
            self._last_bar[symbol] = self._monotonic()
            if ts > self._last_bar_ts.get(symbol, -(2**63)):
                self._last_bar_ts[symbol] = ts

    def bar_rejected(self, symbol: str, reason: str) -> None:
        child = self._bar_reject_children.get((symbol, reason))
        if child is None:
            label_symbol = symbol if symbol in self._bars_accepted else OTHER
            label_reason = reason if reason in BAR_REJECT_REASONS else OTHER
            child = self._bars_rejected.labels(label_symbol, label_reason)
        child.inc()

    def bar_late(self, symbol: str) -> None:
        self._bars_late[symbol].inc()

    def bar_updated(self, symbol: str) -> None:
        self._bars_updated[symbol].inc()

    def slice_decided(self, decision_latency_s: float) -> None:
        """A slice was decided and its orders handed over, `decision_latency_s` after its close."""
        self._slices.inc()
        self._decision_latency.observe(max(decision_latency_s, 0.0))

    def feed_connected(self, connected: bool) -> None:
        self._feed_connected.set(1 if connected else 0)

    def feed_reconnected(self) -> None:
        self._feed_reconnects.inc()

    def market_open(self, is_open: bool) -> None:
        self._market_open.set(1 if is_open else 0)

    def order_submitted(self, symbol: str, client_order_id: str) -> None:
        """An order was handed to the broker: starts its acknowledgement and fill clocks."""
        self._submitted[symbol].inc()
        clocks = self._clocks
        if len(clocks) >= _MAX_OPEN_CLOCKS:
            del clocks[next(iter(clocks))]  # the oldest: its events were lost
        clocks[client_order_id] = [self._monotonic(), False]

    def broker_stream(self, up: bool) -> None:
        self._broker_stream.set(1 if up else 0)

    def reconciliation(self, differences: int) -> None:
        """A reconciliation ran and found `differences` differences (0: the books agree)."""
        self._reconciliations.inc()
        if differences > 0:
            self._differences.inc(differences)

    def halted(self, on: bool) -> None:
        self._halted.set(1 if on else 0)

    def ready(self, ok: bool) -> None:
        self._ready.set(1 if ok else 0)

    def kill_switch_reset(self) -> None:
        """The kill switch was reset (only needed when no RiskGate is attached)."""
        self._kill = False

    def loop_lag(self, seconds: float) -> None:
        self._loop_lag.observe(max(seconds, 0.0))

    async def measure_loop_lag(
        self,
        interval_s: float = 0.5,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Observe how late the loop wakes a timer due every `interval_s`; runs until cancelled.

        The deadlines are fixed multiples of the interval from the start (no drift); a wake-up
        more than one interval late skips the missed deadlines instead of bursting.
        """
        loop = asyncio.get_running_loop()
        due = loop.time() + interval_s
        while True:
            await sleep(max(due - loop.time(), 0.0))
            now = loop.time()
            self.loop_lag(now - due)
            due += interval_s
            if due <= now:
                due = now + interval_s

    # -- EngineListener -----------------------------------------------------------------------

    def on_slice(self, ts: int, ledger: Ledger) -> None:
        self._ledger = ledger
        self._last_slice_ts = ts

    def on_targets(self, targets: Targets) -> None:
        weights = targets.weights
        for symbol, child in self._target_weight.items():
            child.set(weights.get(symbol, 0.0))
        strategy_weights = targets.strategy_weights
        for strategy, child in self._strategy_weight.items():
            child.set(strategy_weights.get(strategy, 0.0))

    def on_decision(self, decision: Decision) -> None:
        event = decision.risk_event
        if event is None:
            return
        if decision.risk == "denied":
            self._denied[event.reason].inc()
        elif decision.risk == "clipped":
            for reason in event.reason.split(","):
                self._clipped[reason.strip()].inc()

    def on_kill_switch(self, event: KillSwitchTripped) -> None:
        self._kill = True

    def on_execution(self, event: ExecutionEvent, applied: bool) -> None:
        clocks = self._clocks
        match event:
            case OrderAccepted():
                clock = clocks.get(event.client_order_id)
                if clock is not None and not clock[1]:
                    clock[1] = True
                    self._ack.observe(max(self._monotonic() - float(clock[0]), 0.0))
            case OrderFilled():
                if not applied:
                    return  # a duplicate of a fill already counted
                self._filled[event.symbol].inc()
                clock = clocks.pop(event.client_order_id, None)
                if clock is not None:
                    self._fill.observe(max(self._monotonic() - float(clock[0]), 0.0))
            case OrderPartiallyFilled():
                pass
            case OrderRejected():
                self._rejected[order_reject_reason(event.reason)].inc()
                clocks.pop(event.client_order_id, None)
            case OrderCanceled():
                self._canceled[event.symbol].inc()
                clocks.pop(event.client_order_id, None)

    def on_stale(self, symbol: str, ts: int, stale: bool) -> None:
        self._stale[symbol].set(1 if stale else 0)

    # -- read at scrape time ------------------------------------------------------------------

    def _scrape(self) -> Iterator[Metric]:
        now = self._monotonic()
        since = GaugeMetricFamily(
            "tradingd_seconds_since_last_bar",
            "Seconds since the symbol's last accepted bar (since start-up before the first).",
            labels=("symbol",),
        )
        last_ts = GaugeMetricFamily(
            "tradingd_last_bar_timestamp_seconds",
            "Start time of the symbol's newest accepted bar (Unix seconds).",
            labels=("symbol",),
        )
        for symbol in self.symbols:
            since.add_metric((symbol,), max(now - self._last_bar.get(symbol, self._started), 0.0))
            ts = self._last_bar_ts.get(symbol)
            if ts is not None:
                last_ts.add_metric((symbol,), ts / 1e9)
        yield since
        yield last_ts

        slice_ts = GaugeMetricFamily(
            "tradingd_last_slice_timestamp_seconds",
            "Start time of the last slice decided (Unix seconds).",
        )
        if self._last_slice_ts is not None:
            slice_ts.add_metric((), self._last_slice_ts / 1e9)
        yield slice_ts

        risk = self._risk
        yield GaugeMetricFamily(
            "tradingd_kill_switch",
            "1 while the kill switch is latched (new exposure denied until reset).",
            value=1 if (risk.kill_switch if risk is not None else self._kill) else 0,
        )

        ledger = self._ledger
        money = " In account currency units."
        families = {
            "equity": GaugeMetricFamily(
                "tradingd_equity", "Cash plus positions at the last marks." + money
            ),
            "cash": GaugeMetricFamily("tradingd_cash", "Cash after fills and commissions." + money),
            "gross": GaugeMetricFamily(
                "tradingd_gross_exposure", "Sum of |quantity x last price|." + money
            ),
            "net": GaugeMetricFamily(
                "tradingd_net_exposure", "Sum of quantity x last price (signed)." + money
            ),
            "drawdown": GaugeMetricFamily(
                "tradingd_drawdown_ratio", "(high water - equity) / high water, from 0 to 1."
            ),
        }
        qty = GaugeMetricFamily(
            "tradingd_position_quantity",
            "Signed position quantity per symbol of the universe (shares).",
            labels=("symbol",),
        )
        value = GaugeMetricFamily(
            "tradingd_position_value",
            "Signed market value per symbol of the universe, at the last mark." + money,
            labels=("symbol",),
        )
        if ledger is not None:
            families["equity"].add_metric((), float(ledger.equity))
            families["cash"].add_metric((), float(ledger.cash))
            families["gross"].add_metric((), float(ledger.gross_exposure))
            families["net"].add_metric((), float(ledger.net_exposure))
            families["drawdown"].add_metric((), ledger.drawdown)
            positions = ledger.positions
            for symbol in self.symbols:
                pos = positions.get(symbol)
                if pos is None:
                    qty.add_metric((symbol,), 0.0)
                    value.add_metric((symbol,), 0.0)
                else:
                    qty.add_metric((symbol,), float(pos.qty))
                    value.add_metric((symbol,), float(pos.qty * pos.last_price))
        yield from families.values()
        yield qty
        yield value


class _ScrapeTimeCollector(Collector):
    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def collect(self) -> Iterable[Metric]:
        return self._telemetry._scrape()


class _WithoutCreated(Collector):
    """The registry without the `*_created` series prometheus-client adds to counters and
    histograms (the text format has no use for them; they double the series count). Filtered
    here rather than with `disable_created_metrics()`, which changes process-wide state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if family.type in ("counter", "histogram", "summary"):
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
