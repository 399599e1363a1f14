"""The metric families of `Telemetry`, registered on its registry, and their bounded labels.

Label values come only from the configured universe, the strategy ids and fixed sets of reasons:
anything else is counted under "other", so the number of series stays bounded whatever a broker
or a feed sends. The families are registered in a fixed order, which is the order of the
exposition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Final, Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.gc_collector import GCCollector

from feeds.sanity import Reason
from portfolio.risk import DENY_REASONS

OTHER: Final = "other"
"""The label value for anything outside the known set (a symbol, a reason)."""

BAR_REJECT_REASONS: Final = (*(reason.value for reason in Reason), "unknown_symbol")
"""The sanity checks' reasons, and the engine's own for a symbol outside the universe."""
ORDER_REJECT_REASONS: Final = ("rejected", "not_sent", "halted", "insufficient_buying_power")
TASKS: Final = (
    "engine",
    "start",
    "data-stream",
    "backfill",
    "broker",
    "broker-pump",
    "clock",
    "loop-lag",
    "watchdog",
    "control",
)
"""The live daemon's long-lived tasks (and its start-up), as `tradingd_task_failures_total`
labels them."""
NOT_SENT_LABELS: Final = ("superseded", "stale", "stopped")
"""Why an order handed to the broker never left its queue (brokers.base.NOT_SENT_*)."""

# 0.1 ms steps up to 5 ms, so that "p99 under 2 ms" (issue 13's target at 500 symbols) is
# readable off the histogram; 5 ms steps to 30 ms ("under 20 ms" for a slice of 400 orders);
# coarse above, where a slow slice only needs its order of size.
_LATENCY_BUCKETS = (
    *(round(k * 0.0001, 4) for k in range(1, 51)),
    0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_ACK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Market orders fill at the next bar's open: about a minute after the decision, or much later.
_FILL_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 90.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# 1 ms steps up to 10 ms (the event-loop lag target is a p99 under 10 ms).
_LAG_BUCKETS = (
    0.0005, *(round(k * 0.001, 3) for k in range(1, 11)),
    0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
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


class Bounded(Generic[_M]):
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


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedMetrics:
    """Market data: bars in, quarantined, late or corrected; the stream; the market clock."""

    bars_received: Bounded[Counter]
    bars_accepted: Bounded[Counter]
    bars_rejected: Counter
    # (symbol, reason) -> child, made up front: a rejection is counted without a labels() call.
    bar_reject_children: dict[tuple[str, str], Counter]
    bars_late: Bounded[Counter]
    bars_updated: Bounded[Counter]
    stale: Bounded[Gauge]
    feed_connected: Gauge
    feed_reconnects: Counter
    market_open: Gauge


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionMetrics:
    """Slices decided, how fast, and the weights they composed."""

    slices: Counter
    decision_latency: Histogram
    target_weight: Bounded[Gauge]
    strategy_weight: Bounded[Gauge]


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderMetrics:
    """Orders by outcome, the risk gate's refusals and clips, and the round-trip clocks."""

    submitted: Bounded[Counter]
    filled: Bounded[Counter]
    canceled: Bounded[Counter]
    rejected: Bounded[Counter]
    not_sent: Bounded[Counter]
    denied: Bounded[Counter]
    clipped: Bounded[Counter]
    ack: Histogram
    fill: Histogram


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonMetrics:
    """The broker's stream, reconciliations, the operator's halt, readiness, the event loop."""

    halted: Gauge
    broker_stream: Gauge
    reconciliations: Counter
    differences: Counter
    ready: Gauge
    loop_lag: Histogram
    task_failures: Bounded[Counter]


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricFamilies:
    """Every family `Telemetry` moves, by group."""

    feed: FeedMetrics
    decisions: DecisionMetrics
    orders: OrderMetrics
    daemon: DaemonMetrics


def register_families(
    registry: CollectorRegistry, *, mode: str, symbols: Sequence[str], strategies: Sequence[str]
) -> MetricFamilies:
    """Register the process collectors, `tradingd_info` and every family on `registry`, with
    the children of the known label values made up front (so they show before any event)."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    f = _Factory(registry)
    info = f.gauge(
        "tradingd_info", "The daemon's mode and version (always 1).", ("mode", "version")
    )
    info.labels(mode, _tradingd_version()).set(1)
    # Keyword arguments are evaluated in order: the groups register in this order.
    return MetricFamilies(
        feed=_feed(f, symbols),
        decisions=_decisions(f, symbols, strategies),
        orders=_orders(f, symbols),
        daemon=_daemon(f),
    )


@dataclass(frozen=True, slots=True)
class _Factory:
    """Families on one registry (never prometheus-client's global one)."""

    registry: CollectorRegistry

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, doc, labelnames=labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, doc, labelnames=labels, registry=self.registry)

    def histogram(self, name: str, doc: str, buckets: Sequence[float]) -> Histogram:
        return Histogram(name, doc, buckets=buckets, registry=self.registry)


def _feed(f: _Factory, syms: Sequence[str]) -> FeedMetrics:
    received = Bounded(
        f.counter("tradingd_bars_received", "Bars received from the feed.", ("symbol",)), syms
    )
    accepted = Bounded(
        f.counter("tradingd_bars_accepted", "Bars that passed the sanity checks.", ("symbol",)),
        syms,
    )
    rejected = f.counter(
        "tradingd_bars_rejected", "Bars quarantined, by reason.", ("symbol", "reason")
    )
    # Keyword arguments are evaluated in order: the families register in this order.
    return FeedMetrics(
        bars_received=received,
        bars_accepted=accepted,
        bars_rejected=rejected,
        bar_reject_children={
            (s, reason): rejected.labels(s, reason) for s in syms for reason in BAR_REJECT_REASONS
        },
        bars_late=Bounded(
            f.counter(
                "tradingd_bars_late",
                "Bars that arrived after their slice was decided (they only mark positions).",
                ("symbol",),
            ),
            syms,
        ),
        bars_updated=Bounded(
            f.counter(
                "tradingd_bars_updated",
                "Corrected bars (updatedBars) that came after their slice was decided.",
                ("symbol",),
            ),
            syms,
        ),
        stale=Bounded(
            f.gauge(
                "tradingd_symbol_stale",
                "1 while the symbol has had no bar for stale_after_slices slices.",
                ("symbol",),
            ),
            syms,
        ),
        feed_connected=f.gauge(
            "tradingd_feed_connected", "1 while the market-data stream is connected."
        ),
        feed_reconnects=f.counter(
            "tradingd_feed_reconnects", "Reconnects of the market-data stream."
        ),
        market_open=f.gauge(
            "tradingd_market_open", "1 while the market is open (the broker's clock)."
        ),
    )


def _decisions(f: _Factory, syms: Sequence[str], strategies: Sequence[str]) -> DecisionMetrics:
    return DecisionMetrics(
        slices=f.counter("tradingd_slices_decided", "Slices decided (warm-up excluded)."),
        decision_latency=f.histogram(
            "tradingd_decision_latency_seconds",
            "From a slice's close to its orders handed to the broker.",
            _LATENCY_BUCKETS,
        ),
        target_weight=Bounded(
            f.gauge(
                "tradingd_target_weight",
                "The composed target weight per symbol (fraction of equity, signed).",
                ("symbol",),
            ),
            syms,
        ),
        strategy_weight=Bounded(
            f.gauge(
                "tradingd_strategy_weight",
                "The capital weight the composer gives each strategy.",
                ("strategy",),
            ),
            strategies,
        ),
    )


def _orders(f: _Factory, syms: Sequence[str]) -> OrderMetrics:
    return OrderMetrics(
        submitted=Bounded(
            f.counter("tradingd_orders_submitted", "Orders handed to the broker.", ("symbol",)),
            syms,
        ),
        filled=Bounded(
            f.counter("tradingd_orders_filled", "Orders filled completely.", ("symbol",)), syms
        ),
        canceled=Bounded(
            f.counter(
                "tradingd_orders_canceled",
                "Orders canceled or expired at the broker.",
                ("symbol",),
            ),
            syms,
        ),
        rejected=Bounded(
            f.counter(
                "tradingd_orders_rejected",
                "Orders rejected by the broker or not sent (halted, unreachable), by reason.",
                ("reason",),
            ),
            ORDER_REJECT_REASONS,
        ),
        not_sent=Bounded(
            f.counter(
                "tradingd_orders_not_sent",
                "Orders the broker's queue took back unsent: superseded by a later decision, "
                "too old when the rate limit let them through (stale), or at the stop.",
                ("reason",),
            ),
            NOT_SENT_LABELS,
        ),
        denied=Bounded(
            f.counter(
                "tradingd_orders_denied", "Orders the risk gate refused, by rule.", ("reason",)
            ),
            DENY_REASONS,
        ),
        clipped=Bounded(
            f.counter(
                "tradingd_orders_clipped",
                "Orders the risk gate reduced, by rule (an order clipped by two rules counts in "
                "both).",
                ("reason",),
            ),
            DENY_REASONS,
        ),
        ack=f.histogram(
            "tradingd_order_ack_seconds",
            "From an order's submission to the broker's acknowledgement.",
            _ACK_BUCKETS,
        ),
        fill=f.histogram(
            "tradingd_order_fill_seconds",
            "From an order's submission to its final fill.",
            _FILL_BUCKETS,
        ),
    )


def _daemon(f: _Factory) -> DaemonMetrics:
    return DaemonMetrics(
        halted=f.gauge("tradingd_halted", "1 while an operator halted new orders."),
        broker_stream=f.gauge(
            "tradingd_broker_stream_up", "1 while the broker's trade-update stream is up."
        ),
        reconciliations=f.counter(
            "tradingd_reconciliations", "Reconciliations with the broker's account."
        ),
        differences=f.counter(
            "tradingd_reconciliation_differences",
            "Differences reconciliations found between the ledger and the broker.",
        ),
        ready=f.gauge("tradingd_ready", "1 while every readiness check passes (/readyz)."),
        loop_lag=f.histogram(
            "tradingd_event_loop_lag_seconds",
            "How late the event loop woke a periodic timer.",
            _LAG_BUCKETS,
        ),
        task_failures=Bounded(
            f.counter(
                "tradingd_task_failures",
                "Unexpected errors (bugs) that ended one of the daemon's tasks; each one stops "
                "the daemon.",
                ("task",),
            ),
            TASKS,
        ),
    )


def _tradingd_version() -> str:
    try:
        return version("tradingd")
    except PackageNotFoundError:
        return "unknown"
