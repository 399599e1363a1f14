"""The engine: the synchronous core that every driver feeds. No I/O, no awaits, no wall clock.

    bar -> sanity -> (quarantine | accept) -> slice (all bars of one timestamp)
        -> ledger.mark -> strategies -> composer -> targets -> rebalance -> risk gate
        -> SubmitOrder commands (returned to the driver, which hands them to the broker)
    broker events -> order book, ledger

The driver owns time: it calls `on_bar` for each bar, `close_slice` when the slice is complete
(replay: a later timestamp arrived; live: every symbol reported or the grace period passed), and
`on_events` with the broker's execution events. Everything the engine decides is reported to an
`EngineListener` (outputs, logs, metrics) and returned as commands; the listener must not call
back into the engine.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, KeysView, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, assert_never

from brokers.base import NOT_SENT_STALE, NOT_SENT_SUPERSEDED
from brokers.orders import (
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    SubmitOrder,
)
from composer.composer import Composer
from composer.targets import Targets
from feeds.bar import NS_PER_SECOND, Bar
from feeds.errors import InvariantViolation
from feeds.sanity import SanityChecker
from portfolio.events import KillSwitchTripped, OrderClipped, OrderDenied, RiskEvent
from portfolio.exposure import Exposure
from portfolio.ledger import Ledger
from portfolio.order_book import OrderBook
from portfolio.rebalance import Rebalancer, base36
from portfolio.risk import RiskGate

# Orders an adapter took back unsent: what they were to trade is owed to the next rebalance.
_TAKEN_BACK = frozenset({NOT_SENT_SUPERSEDED, NOT_SENT_STALE})


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Why an order exists (or was denied): the trace logged with every order.

    Attributes:
        slice_ts: start of the slice that decided it; the order's ts is that slice's close.
        signals: each strategy's signal for the symbol at the decision.
        target_weight: the composed target weight of the symbol.
        risk: "approved", "clipped" or "denied".
        order: the order handed to the broker (None when denied).
    """

    slice_ts: int
    symbol: str
    client_order_id: str
    signals: dict[str, float]
    target_weight: float
    current_weight: float
    requested: SubmitOrder
    risk: str
    risk_event: RiskEvent | None
    order: SubmitOrder | None


class EngineListener(Protocol):
    """Receives what the engine decides. Called synchronously; must not call the engine."""

    def on_slice(self, ts: int, ledger: Ledger) -> None:
        """A slice closed (ts = its start) and the ledger was marked at its closes."""

    def on_targets(self, targets: Targets) -> None: ...

    def on_decision(self, decision: Decision) -> None: ...

    def on_kill_switch(self, event: KillSwitchTripped) -> None: ...

    def on_execution(self, event: ExecutionEvent, applied: bool) -> None:
        """A broker event; `applied` is False for a fill already applied (a duplicate)."""

    def on_stale(self, symbol: str, ts: int, stale: bool) -> None:
        """`symbol` has had no bar for `stale_after_slices` slices (or is fresh again)."""


class ListenerFanout:
    """Hands every engine callback to several listeners, in order (outputs, then metrics)."""

    def __init__(self, *listeners: EngineListener) -> None:
        self.listeners = listeners

    def on_slice(self, ts: int, ledger: Ledger) -> None:
        for listener in self.listeners:
            listener.on_slice(ts, ledger)

    def on_targets(self, targets: Targets) -> None:
        for listener in self.listeners:
            listener.on_targets(targets)

    def on_decision(self, decision: Decision) -> None:
        for listener in self.listeners:
            listener.on_decision(decision)

    def on_kill_switch(self, event: KillSwitchTripped) -> None:
        for listener in self.listeners:
            listener.on_kill_switch(event)

    def on_execution(self, event: ExecutionEvent, applied: bool) -> None:
        for listener in self.listeners:
            listener.on_execution(event, applied)

    def on_stale(self, symbol: str, ts: int, stale: bool) -> None:
        for listener in self.listeners:
            listener.on_stale(symbol, ts, stale)


@dataclass(slots=True)
class EngineCounters:
    bars_accepted: int = 0
    bars_late: int = 0
    bars_updated: int = 0  # corrections that came after their slice was decided
    slices: int = 0  # every slice closed, warm-up slices included
    warmup_slices: int = 0
    rebalances: int = 0
    orders: int = 0
    denied_orders: int = 0
    clipped_orders: int = 0
    fills: int = 0
    duplicate_fills: int = 0
    rejected_orders: int = 0
    held_slices: int = 0  # decided without orders (catch-up, broker unavailable)


def _no_route(bar: Bar) -> None:
    """The route of a symbol no strategy trades: its bars only price and mark."""


class Engine:
    """The decision core. Deterministic: the same bars and config give the same commands."""

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        bar_ns: int,
        sanity: SanityChecker,
        composer: Composer,
        ledger: Ledger,
        order_book: OrderBook,
        rebalancer: Rebalancer,
        risk: RiskGate,
        listener: EngineListener,
        stale_after_slices: int,
        flatten_on_kill: bool,
        trade_from_ts: int | None = None,
        decides: bool = True,
    ) -> None:
        self.symbols = tuple(symbols)
        self.bar_ns = bar_ns
        self.sanity = sanity
        self.composer = composer
        self.ledger = ledger
        self.order_book = order_book
        self.rebalancer = rebalancer
        self.risk = risk
        self.listener = listener
        self.counters = EngineCounters()
        self.rejected: Counter[str] = Counter()
        self.slice_ts: int | None = None
        # The start of the last slice decided: a bar at or before it is late.
        self.last_decided_ts = -(2**63)
        self.last_targets: Targets | None = None
        self.halted = False  # an operator's halt: decide, but send nothing
        # Latest accepted close per symbol: what the rebalancer and the risk gate price with.
        self.last_close: dict[str, float] = {}
        self._universe = frozenset(symbols)
        self._slice_closes: dict[str, float] = {}
        self._stale_after = stale_after_slices
        # The slice number each symbol last printed in; a slice where every symbol printed
        # only sets _all_seen, so a full slice costs nothing here.
        self._last_seen: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self._all_seen = 0
        self._n_symbols = len(self.symbols)
        self._stale: set[str] = set()
        self._flatten_on_kill = flatten_on_kill
        # Slices that start before this only warm the strategies up: no targets, no orders.
        self.trade_from_ts = trade_from_ts if trade_from_ts is not None else -(2**63)
        # False: follow an account without deciding (tracking): slices are marked and reported
        # to the listener, nothing is composed or ordered.
        self.decides = decides
        # A rebalance due on a slice decided without orders: the next slice that sends trades.
        self.owed_rebalance = False
        # Bound once: these run for every bar.
        self._check = sanity.check
        # Each symbol's strategies' callable, looked up once (the composer's routes are fixed):
        # membership and routing in one dict lookup per bar.
        self._routes: dict[str, Callable[[Bar], None]] = {
            s: composer.route(s) or _no_route for s in self.symbols
        }

    def on_bar(self, bar: Bar) -> str | None:
        """Check one bar and, if accepted, feed it into the open slice.

        Returns:
            None when accepted (or used only to mark, when late), else the quarantine reason.
            A bar of a symbol outside the universe is rejected as "unknown_symbol".
        """
        symbol, ts, _, _, _, close, _, _, _ = bar
        route = self._routes.get(symbol)
        if route is None:
            self.rejected["unknown_symbol"] += 1
            return "unknown_symbol"
        reason = self._check(bar)
        if reason is not None:
            self.rejected[reason] += 1
            return reason
        self.counters.bars_accepted += 1
        slice_ts = self.slice_ts
        if ts == slice_ts:
            pass
        elif slice_ts is None:
            if ts <= self.last_decided_ts:
                # Live: its slice was decided (and closed) already: it only marks positions.
                self._mark_late(symbol, close)
                return None
            self.slice_ts = ts
        elif ts < slice_ts:
            # Its slice was decided already: it only marks positions.
            self._mark_late(symbol, close)
            return None
        else:
            raise InvariantViolation(
                f"bar at {ts} for {symbol} while slice {slice_ts} is open: "
                "the driver must close the slice first"
            )
        self._slice_closes[symbol] = close
        route(bar)
        return None

    def _mark_late(self, symbol: str, close: float) -> None:
        self.counters.bars_late += 1
        self.last_close[symbol] = close
        if symbol in self.ledger.qty_float:
            self.ledger.mark({symbol: close})

    def on_updated_bar(self, bar: Bar) -> bool:
        """A corrected bar of a minute already seen (Alpaca's `updatedBars`).

        The strategies saw the original; the correction only marks positions and prices the
        next decision. In the open slice it replaces the symbol's close.

        Returns:
            True when it came after its slice was decided.
        """
        symbol, ts, close = bar.symbol, bar.ts, bar.close
        if symbol not in self._universe or not math.isfinite(close) or close <= 0:
            return False
        if ts == self.slice_ts and symbol in self._slice_closes:
            self._slice_closes[symbol] = close
            return False
        self.counters.bars_updated += 1
        self.last_close[symbol] = close
        if symbol in self.ledger.qty_float:
            self.ledger.mark({symbol: close})
        return True

    @property
    def slice_symbols(self) -> KeysView[str]:
        """The symbols with a bar in the open slice."""
        return self._slice_closes.keys()

    @property
    def slice_complete(self) -> bool:
        """Every symbol of the universe has a bar in the open slice."""
        return self.slice_ts is not None and len(self._slice_closes) == self._n_symbols

    @property
    def bars_in(self) -> int:
        """Every bar the engine was shown: accepted or rejected."""
        return self.counters.bars_accepted + sum(self.rejected.values())

    def close_slice(self, *, send: bool = True, decided_at: int | None = None) -> list[SubmitOrder]:
        """Decide at the close of the open slice; return the orders to hand to the broker.

        Args:
            send: False for a slice decided without orders: a catch-up slice rebuilt from
                history after an outage, or one decided while the broker cannot take orders.
                The strategies and the composer see it as any other (their state stays that of
                an uninterrupted run); a rebalance it was due is owed to the next slice that
                sends, which trades once, from the latest targets and prices.
        """
        slice_ts = self.slice_ts
        if slice_ts is None:
            return []
        self.slice_ts = None
        self.last_decided_ts = slice_ts
        decision_ts = slice_ts + self.bar_ns if decided_at is None else decided_at
        closes = self._slice_closes
        self._slice_closes = {}
        self.last_close.update(closes)
        ledger = self.ledger
        ledger.mark(closes)
        counters = self.counters
        counters.slices += 1
        if len(closes) == self._n_symbols and not self._stale:
            self._all_seen = counters.slices  # every symbol printed: nobody is stale
        else:
            self._track_staleness(closes, slice_ts)

        risk = self.risk
        tripped = risk.on_mark(decision_ts, ledger)
        if tripped is not None:
            self.listener.on_kill_switch(tripped)
        flatten = self._flatten_on_kill and risk.kill_switch and self._holds_positions()
        due = self.composer.due(slice_ts)  # asked every slice: schedules track the dates seen
        if slice_ts < self.trade_from_ts:
            counters.warmup_slices += 1
            return []  # warming up: the strategies saw the bars; nothing is decided or recorded
        if not self.decides:
            self.listener.on_slice(slice_ts, ledger)
            return []
        orders: list[SubmitOrder] = []
        targets = self.last_targets
        if flatten or due:
            if flatten:
                targets = Targets(ts=slice_ts, weights=dict.fromkeys(self.symbols, 0.0))
            else:
                targets = self.composer.compose(slice_ts)
            counters.rebalances += 1
            self.last_targets = targets
            self.listener.on_targets(targets)
        if not send:
            counters.held_slices += 1
            self.owed_rebalance = self.owed_rebalance or flatten or due
        elif (flatten or due or self.owed_rebalance) and targets is not None:
            self.owed_rebalance = False
            if not self.halted:
                orders = self._orders_for(targets, slice_ts, decision_ts)
        self.listener.on_slice(slice_ts, ledger)
        return orders

    # -- an operator's controls (the driver calls them between slices) ------------------------

    def halt(self) -> None:
        """No new orders until `resume()`: slices are still decided and recorded."""
        self.halted = True

    def resume(self) -> None:
        self.halted = False

    def flatten(self, ts: int, *, sequence: int | None = None) -> list[SubmitOrder]:
        """Close every position now (market orders through the risk gate, which lets
        reductions pass), and halt so the next slice does not buy back.

        Args:
            ts: now, UTC ns: the orders' decision time. Never a minute's first second, where
                slice decisions stamp their client order ids.
            sequence: the flatten's number in the journal (`Journal.next_sequence`): the ids
                are stamped `F{base36(sequence)}`, unique per call (two flattens in the same
                second both act). None: stamped with `ts`'s second (a replay without journal).
        """
        self.halted = True
        if (ts // NS_PER_SECOND) % 60 == 0:
            ts += NS_PER_SECOND
        slice_ts = self.last_decided_ts if self.last_decided_ts > -(2**63) else ts
        held = {s for s, p in self.ledger.positions.items() if p.qty}
        targets = Targets(ts=slice_ts, weights=dict.fromkeys(sorted(held | set(self.symbols)), 0.0))
        stamp = None if sequence is None else "F" + base36(sequence)
        return self._orders_for(targets, slice_ts, ts, stamp)

    def reset_kill_switch(self) -> None:
        """Unlatch the kill switch on purpose: drawdown and the day's loss count from here."""
        self.ledger.rebase_high_water()
        self.risk.reset(self.ledger)

    def on_events(self, events: Sequence[ExecutionEvent]) -> None:
        """Apply the broker's execution events to the order book and the ledger."""
        counters = self.counters
        for event in events:
            self.order_book.on_event(event)
            applied = True
            match event:
                case OrderFilled() | OrderPartiallyFilled():
                    applied = self.ledger.apply_fill(event)
                    if applied:
                        counters.fills += 1
                    else:
                        counters.duplicate_fills += 1
                case OrderRejected():
                    counters.rejected_orders += 1
                case OrderCanceled(reason=reason):
                    if reason in _TAKEN_BACK:
                        # A later decision takes its place: the next slice that sends
                        # rebalances, from the latest targets and prices.
                        self.owed_rebalance = True
                case OrderAccepted():
                    pass
                case _:
                    assert_never(event)
            self.listener.on_execution(event, applied)

    def _orders_for(
        self, targets: Targets, slice_ts: int, decision_ts: int, stamp: str | None = None
    ) -> list[SubmitOrder]:
        ledger = self.ledger
        prices = self.last_close
        # A live view: each approved order is in it (for the next check) once submitted.
        open_qty = self.order_book.open_qty()
        intents = self.rebalancer.orders(
            targets, ledger, prices, open_qty, decision_ts, stamp=stamp
        )
        if not intents:
            return []
        # The book's gross in floats across this rebalance: most gross checks settle in O(1).
        exposure = Exposure(ledger, prices, open_qty)
        counters = self.counters
        approved_orders: list[SubmitOrder] = []
        for intent in intents:
            approved, event = self.risk.check(intent, ledger, prices, open_qty, exposure)
            if approved is None:
                verdict = "denied"
                counters.denied_orders += 1
            elif isinstance(event, OrderClipped):
                verdict = "clipped"
                counters.clipped_orders += 1
            else:
                verdict = "approved"
            if approved is not None:
                counters.orders += 1
                self.order_book.on_submit(approved)
                exposure.refresh(approved.symbol)
                approved_orders.append(approved)
            symbol = intent.symbol
            self.listener.on_decision(
                Decision(
                    slice_ts=slice_ts,
                    symbol=symbol,
                    client_order_id=intent.client_order_id,
                    signals={sid: sig.get(symbol, 0.0) for sid, sig in targets.signals.items()},
                    target_weight=targets.weights.get(symbol, 0.0),
                    current_weight=ledger.weight(symbol),
                    requested=intent,
                    risk=verdict,
                    risk_event=event if isinstance(event, OrderDenied | OrderClipped) else None,
                    order=approved,
                )
            )
        return approved_orders

    def _holds_positions(self) -> bool:
        return any(p.qty != 0 for p in self.ledger.positions.values())

    def _track_staleness(self, closes: Mapping[str, float], slice_ts: int) -> None:
        seen = self.counters.slices
        last_seen = self._last_seen
        for symbol in closes:
            last_seen[symbol] = seen
            if symbol in self._stale:
                self._stale.discard(symbol)
                self.listener.on_stale(symbol, slice_ts, False)
        for symbol in self.symbols:
            last = max(last_seen[symbol], self._all_seen)
            if symbol not in self._stale and seen - last >= self._stale_after:
                self._stale.add(symbol)
                self.listener.on_stale(symbol, slice_ts, True)

    @property
    def stale_symbols(self) -> frozenset[str]:
        return frozenset(self._stale)
