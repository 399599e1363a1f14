"""What the Alpaca adapter knows of orders, positions and cash: one state machine that the
trade stream and REST reconciliation both advance.

Fills are counted once: per order the cumulative filled quantity already reported is kept, and
a snapshot (from the stream or from REST) only reports what lies above it. Every order gets at
most one OrderAccepted and exactly one terminal event, nothing after it. Positions and cash are
those of the last reconciliation, kept current from fills until the next one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from brokers.alpaca_json import OrderSnapshot, opt_decimal, opt_ts, parse_order
from brokers.base import AccountSnapshot, PositionSnapshot, RestoredOrder
from brokers.orders import (
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSide,
    SubmitOrder,
)
from brokers.outbox import Outbox
from feeds.errors import InvariantViolation

_ZERO = Decimal(0)
_PRICE_QUANTUM = Decimal("1e-9")
# Ended orders placed this long before where any listing starts are forgotten (`prune`), looked
# at every so many trade updates and after every reconciliation.
_PRUNE_MARGIN_NS = 3_600 * 10**9
_PRUNE_EVERY = 2_000
_TERMINAL_STATUSES = {"canceled", "expired", "rejected"}
# Events that change nothing the ledger needs (their state shows up in later events or REST).
_QUIET_EVENTS = {
    "pending_new",
    "pending_cancel",
    "pending_replace",
    "calculated",
    "stopped",
    "suspended",
    "held",
    "order_cancel_rejected",
    "order_replace_rejected",
    "restated",
}
_ORDER_EVENTS = {"new", "accepted", "fill", "partial_fill", "canceled", "expired", "rejected"}
_LOUD_EVENTS = {"replaced", "trade_bust", "trade_correct"}


class TrackedOrder:
    """What the adapter knows of one order, keyed by client order id (unique per account)."""

    __slots__ = (
        "accepted",
        "broker_order_id",
        "cid",
        "created_ns",
        "cum_notional",
        "cum_qty",
        "ours",
        "qty",
        "side",
        "since_ns",
        "symbol",
        "terminal",
        "tif",
    )

    def __init__(self, cid: str, symbol: str, side: OrderSide, *, ours: bool) -> None:
        self.cid = cid
        self.symbol = symbol
        self.side = side
        self.ours = ours
        self.broker_order_id: str | None = None
        self.qty: Decimal | None = None
        self.tif = ""
        self.created_ns = 0  # when Alpaca created it (0 until a snapshot said)
        self.accepted = False
        self.terminal = False
        self.cum_qty = _ZERO
        self.cum_notional = _ZERO
        # A restored order's intent time: no submission can be older (the bulk lookup's start).
        self.since_ns: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """The execution details a stream fill carries (what REST snapshots lack)."""

    execution_id: str
    price: Decimal | None
    qty: Decimal | None
    position_qty: Decimal | None


class OrderTracker:
    """Orders by client order id (unique per account), positions and cash.

    Attributes:
        orders: every order learnt of: submitted, restored, or someone else's (`ours` False).
        positions, account: as of the last reconciliation (`adopt`), kept current from fills.
        last_seen_ns: the latest time of an order update applied (where the next
            reconciliation starts looking for orders).
        unacked_restored: restored orders the journal never saw acknowledged: looked up at
            reconciliation until Alpaca says whether their POST landed.
    """

    def __init__(self, outbox: Outbox, now_ns: Callable[[], int]) -> None:
        self._outbox = outbox
        self._now_ns = now_ns
        self.orders: dict[str, TrackedOrder] = {}
        self.positions: dict[str, PositionSnapshot] = {}
        self.account: AccountSnapshot | None = None
        self.last_seen_ns: int | None = None
        self.unacked_restored: set[str] = set()
        self._submitted: set[str] = set()
        self._warned_events: set[str] = set()
        self._updates_since_prune = 0

    def restore(self, r: RestoredOrder) -> None:
        """Take over one order of a journal: submitted already, fills counted up to its
        `filled_qty`.

        Raises:
            InvariantViolation: its client order id is known already.
        """
        cid = r.client_order_id
        if cid in self.orders or cid in self._submitted:
            raise InvariantViolation(f"restored order {cid} is known already")
        order = TrackedOrder(cid, r.symbol, r.side, ours=True)
        order.broker_order_id = r.broker_order_id
        order.since_ns = r.ts
        order.qty = r.qty
        order.cum_qty = r.filled_qty
        order.cum_notional = r.filled_notional
        # Booked fills imply Alpaca had the order: no second OrderAccepted for it.
        order.accepted = r.broker_order_id is not None or r.filled_qty > 0
        order.terminal = r.terminal or r.filled_qty >= r.qty
        self.orders[cid] = order
        self._submitted.add(cid)
        if not order.terminal and not order.accepted:
            self.unacked_restored.add(cid)

    def submitted(self, command: SubmitOrder) -> bool:
        """Record a submit; False (and nothing recorded) if its client order id is known."""
        cid = command.client_order_id
        if cid in self._submitted or cid in self.orders:
            return False
        self._submitted.add(cid)
        order = self.orders[cid] = TrackedOrder(cid, command.symbol, command.side, ours=True)
        order.since_ns = command.ts  # decided then: sent at or after it
        return True

    def prune(self) -> int:
        """Forget the orders that ended and were placed an hour or more before both where the
        next reconciliation's listing starts (the last update seen) and the oldest order still
        open (where a bulk listing would start): no listing can return them any more, and the
        journal keeps them, so months of orders do not stay in memory. Orders without a known
        time are kept. Returns how many were forgotten."""
        self._updates_since_prune = 0
        if self.last_seen_ns is None:
            return 0
        starts = [self.last_seen_ns] + [
            o.since_ns for o in self.orders.values() if not o.terminal and o.since_ns is not None
        ]
        before_ns = min(starts) - _PRUNE_MARGIN_NS
        old = [
            cid
            for cid, o in self.orders.items()
            if o.terminal and o.since_ns is not None and o.since_ns < before_ns
        ]
        for cid in old:
            del self.orders[cid]
            self._submitted.discard(cid)
        return len(old)

    def reject(self, command: SubmitOrder, reason: str) -> None:
        """End a submitted order as OrderRejected (unless it ended already)."""
        order = self.orders[command.client_order_id]
        if order.terminal:
            return
        order.terminal = True
        self._outbox.emit(
            OrderRejected(
                client_order_id=command.client_order_id,
                symbol=command.symbol,
                ts=self._now_ns(),
                reason=reason,
            )
        )

    def adopt(self, positions: list[PositionSnapshot], account: AccountSnapshot) -> None:
        """Take a reconciliation's positions and account as the state from now on."""
        self.positions = {p.symbol: p for p in positions}
        self.account = account

    def on_trade_update(self, data: dict[str, Any]) -> None:
        """Apply one trade update (the `data` of a `trade_updates` message)."""
        event = str(data.get("event", ""))
        raw_order = data.get("order")
        if event in _ORDER_EVENTS or (event == "done_for_day" and isinstance(raw_order, dict)):
            if not isinstance(raw_order, dict):
                self._outbox.notice("warning", "trade_update_without_order", trade_event=event)
                return
            try:
                snap = parse_order(raw_order)
                ts = opt_ts(data.get("timestamp"))
                execution = None
                if event in ("fill", "partial_fill"):
                    execution = Execution(
                        execution_id=str(data.get("execution_id") or ""),
                        price=opt_decimal(data.get("price")),
                        qty=opt_decimal(data.get("qty")),
                        position_qty=opt_decimal(data.get("position_qty")),
                    )
            except (KeyError, ValueError, ArithmeticError) as e:
                self._outbox.notice(
                    "error", "trade_update_unreadable", trade_event=event, error=str(e)
                )
                return
            self.apply(snap, ts=ts, execution=execution)
            self._updates_since_prune += 1
            if self._updates_since_prune >= _PRUNE_EVERY:
                self.prune()
        elif event in _QUIET_EVENTS:
            self._outbox.notice("debug", "trade_update_ignored", trade_event=event)
        elif event in _LOUD_EVENTS:
            self._outbox.notice("warning", "trade_update_unhandled", trade_event=event, data=data)
        elif event not in self._warned_events:
            self._warned_events.add(event)
            self._outbox.notice(
                "warning", "trade_update_unknown", trade_event=event, keys=sorted(data.keys())
            )

    def apply(
        self, snap: OrderSnapshot, *, ts: int | None = None, execution: Execution | None = None
    ) -> int:
        """Advance one order to what `snap` says; returns how many fill events it emitted."""
        ts = ts or snap.updated_at_ns or self._now_ns()
        self.last_seen_ns = max(self.last_seen_ns or 0, ts)
        order = self.orders.get(snap.client_order_id)
        if order is None:
            order = TrackedOrder(snap.client_order_id, snap.symbol, snap.side, ours=False)
            order.since_ns = snap.created_at_ns
            self.orders[order.cid] = order
            self._outbox.notice(
                "info", "foreign_order", client_order_id=order.cid, symbol=order.symbol
            )
        order.broker_order_id = snap.broker_order_id
        order.qty = snap.qty
        order.tif = snap.time_in_force
        order.created_ns = snap.created_at_ns or order.created_ns
        if order.terminal:
            if snap.filled_qty > order.cum_qty:
                self._outbox.notice(
                    "error",
                    "fill_after_terminal",
                    client_order_id=order.cid,
                    filled_qty=str(snap.filled_qty),
                )
            return 0
        status = snap.status
        if not order.accepted and status != "rejected":
            order.accepted = True
            self._outbox.emit(
                OrderAccepted(
                    client_order_id=order.cid,
                    symbol=order.symbol,
                    ts=snap.created_at_ns or ts,
                    broker_order_id=snap.broker_order_id,
                )
            )
        fills = 0
        if snap.filled_qty > order.cum_qty:
            fills = 1
            if self._fill(order, snap, ts, execution):
                return fills
        if status in _TERMINAL_STATUSES or (status == "done_for_day" and order.tif == "day"):
            order.terminal = True
            if status == "rejected":
                self._outbox.emit(
                    OrderRejected(
                        client_order_id=order.cid,
                        symbol=order.symbol,
                        ts=ts,
                        reason="rejected by Alpaca",
                    )
                )
            else:
                self._outbox.emit(
                    OrderCanceled(
                        client_order_id=order.cid, symbol=order.symbol, ts=ts, reason=status
                    )
                )
        elif status == "filled":
            self._outbox.notice("error", "filled_without_quantity", client_order_id=order.cid)
        return fills

    def _fill(
        self, order: TrackedOrder, snap: OrderSnapshot, ts: int, execution: Execution | None
    ) -> bool:
        """Emit the fill above what was reported; True if it was the order's last."""
        delta = snap.filled_qty - order.cum_qty
        if execution is not None and execution.price is not None and execution.qty == delta:
            price = execution.price
        elif snap.filled_avg_price:
            price = (snap.filled_avg_price * snap.filled_qty - order.cum_notional) / delta
            price = price.quantize(_PRICE_QUANTUM)
        elif execution is not None and execution.price is not None:
            price = execution.price
        else:
            raise InvariantViolation(
                f"order {order.cid} filled {snap.filled_qty} without any price from Alpaca"
            )
        if execution is not None and execution.execution_id:
            execution_id = execution.execution_id
        else:
            execution_id = f"{snap.broker_order_id}:{snap.filled_qty}"
        order.cum_qty = snap.filled_qty
        order.cum_notional += delta * price
        done = snap.status == "filled" or (snap.qty is not None and snap.filled_qty >= snap.qty)
        fill: dict[str, Any] = {
            "client_order_id": order.cid,
            "symbol": order.symbol,
            "side": order.side,
            "qty": delta,
            "price": price,
            "commission": _ZERO,
            "ts": ts,
            "execution_id": execution_id,
        }
        if done:
            order.terminal = True
            self._outbox.emit(OrderFilled(**fill))
        else:
            leaves = snap.qty - snap.filled_qty if snap.qty is not None else _ZERO
            self._outbox.emit(OrderPartiallyFilled(**fill, leaves_qty=leaves))
        self._book(order, delta, price, None if execution is None else execution.position_qty)
        return done

    def _book(
        self, order: TrackedOrder, delta: Decimal, price: Decimal, position_qty: Decimal | None
    ) -> None:
        """Keep positions and cash current from a fill until the next reconciliation."""
        signed = delta if order.side is OrderSide.BUY else -delta
        held = self.positions.get(order.symbol)
        old_qty = held.qty if held is not None else _ZERO
        new_qty = position_qty if position_qty is not None else old_qty + signed
        if new_qty == 0:
            self.positions.pop(order.symbol, None)
        else:
            if held is None or old_qty == 0 or (old_qty > 0) != (new_qty > 0):
                avg = price
            elif abs(new_qty) > abs(old_qty):
                avg = (old_qty * held.avg_entry_price + signed * price) / new_qty
            else:
                avg = held.avg_entry_price
            self.positions[order.symbol] = PositionSnapshot(
                symbol=order.symbol,
                qty=new_qty,
                avg_entry_price=avg,
                market_value=new_qty * price,
                current_price=price,
            )
        if self.account is not None:
            a = self.account
            self.account = dataclasses.replace(
                a, cash=a.cash - signed * price, buying_power=a.buying_power - signed * price
            )

    def differences(self, positions: list[PositionSnapshot], account: AccountSnapshot) -> list[str]:
        """Where Alpaca's `positions` and `account` disagree with the state kept from fills."""
        out = []
        theirs = {p.symbol: p.qty for p in positions}
        ours = {s: p.qty for s, p in self.positions.items()}
        for symbol in sorted(theirs.keys() | ours.keys()):
            a, b = ours.get(symbol, _ZERO), theirs.get(symbol, _ZERO)
            if a != b:
                out.append(f"{symbol}: tracked {a}, Alpaca {b}")
        if self.account is not None and self.account.cash != account.cash:
            out.append(f"cash: tracked {self.account.cash}, Alpaca {account.cash}")
        return out
