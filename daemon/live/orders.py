"""Orders out and executions in: where the live daemon decides whether an order leaves.

Out: a slice is closed by the engine, its decision and the intents of its orders are journaled
(write-ahead), and only then are the orders handed to the broker. Without a journal nothing
leaves; a halted symbol's orders end as rejections here. In: every execution event is journaled
before the ledger applies it (a fill journaled before is a duplicate and skipped); events of
orders this daemon did not place are booked only as `state.unknown_positions` says.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from brokers.base import (
    NOT_SENT_REASONS,
    NOT_SENT_STALE,
    NOT_SENT_STOPPED,
    NOT_SENT_SUPERSEDED,
    LiveBroker,
)
from brokers.orders import (
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    SubmitOrder,
)
from daemon.engine import Engine
from daemon.live.crash import CrashPoints
from daemon.live.guard import JournalGuard
from daemon.logs import EventLog
from daemon.service.telemetry import Telemetry
from daemon.settings import Settings
from daemon.timeutil import iso_utc
from feeds.bar import NS_PER_MINUTE
from feeds.errors import InvariantViolation, TradingdError


@dataclass(slots=True)
class SliceLog:
    """What the latest decided slices held: the evidence that no slice closed early.

    Bounded: a daemon runs for months; the journal keeps every slice.
    """

    decided: list[int] = field(default_factory=list)
    symbols: dict[int, int] = field(default_factory=dict)
    keep: int = 20_000

    def add(self, slice_ts: int, n_symbols: int) -> None:
        self.decided.append(slice_ts)
        self.symbols[slice_ts] = n_symbols
        if len(self.decided) > self.keep:
            dropped = self.decided[: self.keep // 2]
            del self.decided[: self.keep // 2]
            for ts in dropped:
                self.symbols.pop(ts, None)


class OrderPath:
    """The engine's decisions to the broker, and the broker's events to the engine.

    Args:
        own_prefix: the client order id prefix of this daemon's orders.
        policy: `state.unknown_positions`, for events of orders it did not place.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        broker: LiveBroker,
        guard: JournalGuard,
        telemetry: Telemetry,
        log: EventLog,
        crash: CrashPoints,
        own_prefix: str,
        policy: str,
        max_decision_age_s: float,
        market_now: Callable[[], int],
        journaled: Callable[[str], bool],
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.guard = guard
        self.telemetry = telemetry
        self.log = log
        self.crash = crash
        self.own_prefix = own_prefix
        self.policy = policy
        self.halted_symbols: set[str] = set()
        self.halted_orders = 0
        self.slices = SliceLog()
        self.trading = False  # set once started: a foreign fill then halts under "refuse"
        self.kill_journaled = False
        self.max_decision_age_s = max_decision_age_s
        self.market_now = market_now
        self.held: dict[str, int] = {}  # slices decided without orders, by reason
        # A slice without orders is journaled behind: its records are written at the loop's
        # next turn, before any later record (the live loop sets this and writes them).
        self.journal_behind = False
        # Orders to send now of a decision's; others wait (auction orders outside their window).
        self.defer: Callable[[list[SubmitOrder]], list[SubmitOrder]] = _now
        self.not_sent: Counter[str] = Counter()  # orders the broker took back unsent, by why
        self._journaled = journaled
        broker.limit_age(max_decision_age_s, market_now)

    # -- out ------------------------------------------------------------------------------------

    def decide(self, *, catch_up: bool = False, decided_at: int | None = None) -> None:
        """Close the open slice and hand its orders to the broker.

        Args:
            catch_up: the slice was rebuilt from history after a gap, and later ones wait:
                it feeds the strategies but sends nothing (decisions are made on fresh data
                only; the latest slice trades what is owed).
            decided_at: the decision's time when not the bar's end (a daily bar decided
                before the close).
        """
        slice_ts = self.engine.slice_ts
        if slice_ts is None:
            return
        started = time.perf_counter()
        # The decision's info lines (one or two per order) are written in one go once the
        # orders are handed over: inside the measured time, as the loop runs nothing else
        # meanwhile. Warnings and errors go at once (`EventLog.held`).
        with self.telemetry.deciding(), self.log.held():
            self._decide(slice_ts, catch_up=catch_up, decided_at=decided_at)
        self.telemetry.slice_decided(time.perf_counter() - started)

    def _decide(self, slice_ts: int, *, catch_up: bool, decided_at: int | None) -> None:
        engine = self.engine
        n_symbols = len(engine.slice_symbols)
        self.apply_events(self.broker.poll_events())  # fills first: the decision sees them
        decision_ts = slice_ts + engine.bar_ns if decided_at is None else decided_at
        held = self.hold_reason(decision_ts, catch_up=catch_up)
        if held is None and (superseded := self.withdraw_unsent(NOT_SENT_SUPERSEDED)):
            # What the broker could not take yet is replaced, not queued behind: this slice
            # decides afresh from the latest targets and prices (the engine owes a rebalance).
            self.log.info("orders_superseded", orders=superseded, slice_time=iso_utc(slice_ts))
        orders = engine.close_slice(send=held is None, decided_at=decided_at)
        if held is not None:
            self.held[held] = self.held.get(held, 0) + 1
        self.slices.add(slice_ts, n_symbols)
        targets = engine.last_targets
        decided = targets if targets is not None and targets.ts == slice_ts else None
        # Write-ahead: the slice, its decision and the intents are on disk before any order
        # leaves; without a journal nothing leaves. A slice that sends nothing is written
        # behind (`journal_behind`): no order waits on it.
        behind = self.journal_behind and not orders
        if self.guard.failed is not None or not self.guard.write(
            lambda j: j.close_slice(
                slice_ts, targets=decided, orders=orders, held=held, behind=behind
            )
        ):
            self.unsent(orders, "journal unavailable: not sent")
            orders = []
        elif orders:
            self.crash.reached("after_intent")
        self.persist_kill_switch(slice_ts)
        self.send(self.defer(orders))

    def hold_reason(self, decision_ts: int, *, catch_up: bool) -> str | None:
        """Why a slice deciding at `decision_ts` must send nothing, or None when it may."""
        if catch_up:
            return "catch_up"
        health = self.broker.health()
        if not (health.reconciled and health.rest_ok):
            return "broker_unavailable"
        age_s = (self.market_now() - decision_ts) / 1e9
        if age_s > self.max_decision_age_s:
            self.log.warning(
                "slice_too_old", age_s=round(age_s, 3), limit_s=self.max_decision_age_s
            )
            return "stale"
        return None

    def send(self, orders: list[SubmitOrder]) -> None:
        """Hand orders to the broker (halted symbols' orders become rejections here)."""
        if not orders:
            return
        broker = self.broker
        if broker.read_only:
            raise InvariantViolation(f"{len(orders)} orders decided for a read-only broker")
        halted = [o for o in orders if o.symbol in self.halted_symbols]
        for n, order in enumerate(o for o in orders if o.symbol not in self.halted_symbols):
            if n == 1:
                self.crash.reached("mid_slice")
            self.telemetry.order_submitted(order.symbol, order.client_order_id)
            broker.submit(order)
        if halted:
            self.halted_orders += len(halted)
            self.unsent(halted, "trading halted: not sent")
        self.apply_events(broker.poll_events())

    def withdraw_unsent(self, reason: str) -> int:
        """Take back from the broker every order it has not sent yet; their OrderCanceled
        (`reason`) events are journaled and applied now. How many."""
        if self.broker.read_only:
            return 0
        n = self.broker.withdraw_unsent(reason)
        if n:
            self.apply_events(self.broker.poll_events())
        return n

    def stop_accounting(self, cancelled: int) -> dict[str, Any]:
        """What became of the orders handed to the broker this run (for the stop's summary):
        sent, cancelled at the stop, and never sent (superseded, too old, stopped)."""
        health = self.broker.health()
        never = {
            "superseded": self.not_sent[NOT_SENT_SUPERSEDED],
            "stale": self.not_sent[NOT_SENT_STALE],
            "stopped": self.not_sent[NOT_SENT_STOPPED],
        }
        return {
            "sent": health.sent,
            "cancelled": cancelled,
            "never_sent": sum(never.values()),
            "never_sent_by_reason": never,
            "in_flight": health.in_flight,
        }

    async def settle_at_stop(self) -> bool:
        """At the stop, with the trade stream down but REST answering: read the account
        through REST, so the summary holds what the broker holds, not what the stream last
        said. True if it did (its events wait in the broker)."""
        if self.broker.fatal is not None:
            return False
        try:
            settled = await self.broker.settle()
        except TradingdError as e:
            self.log.error("stop_reconcile_failed", error=str(e))
            return False
        if settled:
            self.log.info("stop_reconciled_through_rest")
        return settled

    def unsent(self, orders: Iterable[SubmitOrder], reason: str) -> None:
        """Orders decided but not sent end as rejections (the order book closes them)."""
        self.apply_events(
            [
                OrderRejected(
                    client_order_id=o.client_order_id, symbol=o.symbol, ts=o.ts, reason=reason
                )
                for o in orders
            ]
        )

    def kill_reset(self) -> None:
        """The kill switch was reset by a control that journaled it."""
        self.kill_journaled = False

    def persist_kill_switch(self, ts: int) -> None:
        risk = self.engine.risk
        if risk.kill_switch != self.kill_journaled and self.guard.write(
            lambda j: j.set_kill_switch(risk.kill_switch, risk.kill_reason, ts)
        ):
            self.kill_journaled = risk.kill_switch

    # -- in -------------------------------------------------------------------------------------

    def apply_events(self, events: Iterable[ExecutionEvent]) -> None:
        """Journal the events, then apply them (write-ahead); a fill journaled before is
        skipped. One transaction for them all, unless a crash drill is armed: then each is
        journaled and applied before the next one's crash point."""
        crash = self.crash
        batch: list[ExecutionEvent] = []
        for event in events:
            if self.foreign(event) and not self._take_foreign(event):
                continue
            if isinstance(event, OrderCanceled) and event.reason in NOT_SENT_REASONS:
                self.not_sent[event.reason] += 1
            if crash.point is not None:
                if isinstance(event, OrderAccepted):
                    crash.reached("after_send")
                elif isinstance(event, OrderFilled | OrderPartiallyFilled):
                    crash.reached("after_fill")
                self._journal_and_apply([event])
            else:
                batch.append(event)
        if batch:
            self._journal_and_apply(batch)

    def _journal_and_apply(self, events: list[ExecutionEvent]) -> None:
        fresh = self.guard.events(events)
        self.engine.on_events([e for e, new in zip(events, fresh, strict=True) if new])

    async def cancel_ours(self) -> int:
        """Cancel the open orders this daemon placed (by its prefix or its journal), no others."""
        cancelled = await self.broker.cancel_open(self.ours)
        for cid in cancelled:
            self.log.info("order_cancelled_on_stop", client_order_id=cid)
        return len(cancelled)

    def ours(self, client_order_id: str) -> bool:
        """This daemon placed the order: it names new orders with its prefix, and the journal
        has every order it ever decided (whatever prefix an earlier config gave them)."""
        return client_order_id.startswith(self.own_prefix) or self._journaled(client_order_id)

    def foreign(self, event: ExecutionEvent) -> bool:
        """An order this daemon did not place (a person's, another program's) on its account."""
        return self.broker.shares_account and not self.ours(event.client_order_id)

    def _take_foreign(self, event: ExecutionEvent) -> bool:
        """Whether the ledger books a foreign event: its fills only, under "adopt"."""
        if not isinstance(event, OrderFilled | OrderPartiallyFilled):
            return False
        fields = {
            "client_order_id": event.client_order_id,
            "symbol": event.symbol,
            "side": str(event.side),
            "qty": str(event.qty),
            "policy": self.policy,
        }
        if self.policy == "adopt":
            self.log.warning("foreign_fill_adopted", **fields)
            return True
        if self.policy == "ignore":
            self.log.warning("foreign_fill_ignored", **fields)
        elif self.trading:
            self.log.error("foreign_fill_refused", action="halted: no new orders", **fields)
            self.engine.halt()
            self.telemetry.halted(True)
        return False


def _now(orders: list[SubmitOrder]) -> list[SubmitOrder]:
    return orders


def order_rate_warning(
    *,
    symbols: int,
    every: str,
    minutes: int | None,
    max_requests_per_minute: int,
    bar_minutes: int = 1,
) -> dict[str, Any] | None:
    """The numbers of a warning when one rebalance can decide more orders (one per symbol)
    than the broker's rate limit lets out before the next one is due; None when it cannot.

    `bar_minutes` is the strategies' bar (a slice) in minutes. Orders beyond the limit wait in
    the broker's queue: superseded by the next decision or dropped once older than
    `live.max_decision_age_s`, never sent late.
    """
    # Minutes between two rebalances; daily: at least a session's.
    bars = {"slice": bar_minutes, "minutes": max(minutes or 1, bar_minutes)}.get(
        every, max(390, bar_minutes)
    )
    allowed = max_requests_per_minute * bars
    if symbols <= allowed:
        return None
    return {
        "symbols": symbols,
        "rebalance_every": every if every != "minutes" else f"{minutes} minutes",
        "orders_per_rebalance_max": symbols,
        "requests_per_rebalance_allowed": allowed,
        "max_requests_per_minute": max_requests_per_minute,
    }


def warn_order_rate(settings: Settings, symbols: list[str], mode: str, log: EventLog) -> None:
    """At start-up, one line when a rebalance can ask for more orders than the broker's rate
    limit sends before the next one (paper and live: the simulated broker has no limit)."""
    if mode not in ("paper", "live"):
        return
    schedule = settings.composer.rebalance
    numbers = order_rate_warning(
        symbols=len(symbols),
        every=schedule.every,
        minutes=schedule.minutes,
        max_requests_per_minute=settings.live.max_requests_per_minute,
        bar_minutes=max(1, settings.data.bar_ns() // NS_PER_MINUTE),
    )
    if numbers is not None:
        log.warning("order_rate_above_limit", **numbers)
