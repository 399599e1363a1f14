"""The simulated broker: fills orders against the bars the driver shows it.

It keeps its own account (cash and positions) the way a real broker does, so the ledger learns
about the account only through execution events, as it does live.

Fill rules:
    - Market orders fill on the first bar of their symbol that starts at or after the decision
      time (`fill_at="next_open"`, at that bar's open), or at submit at the close of the last
      bar seen (`fill_at="close"`). Either way the price moves against the trader by
      `slippage_bps`. A bar that started before the decision never fills an order: no
      look-ahead.
    - Limit orders rest until a bar trades through the limit: a buy fills when `low < limit` at
      `min(open, limit)`, a sell when `high > limit` at `max(open, limit)`; no slippage. DAY
      orders still open at the first bar of a later America/New_York date expire.
    - Prices are rounded to the tick: 0.01 at or above $1, 0.0001 below.
    - A cash account rejects a buy that the cash does not cover, unless a market sell decided
      at or before the bar is still open: then the buy waits for a later bar of its symbol, as
      the sells of one rebalance may print after its buys.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from brokers.orders import (
    CancelOrder,
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    SubmitOrder,
    TimeInForce,
)
from brokers.ticks import CENT, round_to_tick
from feeds.bar import Bar
from feeds.days import next_local_midnight_ns
from feeds.limits import MAX_BPS, MAX_MONEY

_ZERO = Decimal(0)
_WHOLE = Decimal(1)
_QTY_QUANTUM = Decimal("1e-9")
_EXCHANGE_TZ = ZoneInfo("America/New_York")
MAX_COMMISSION_PER_SHARE = Decimal(100)


class SimulatedBrokerSettings(BaseModel):
    """Settings of the simulated broker (the `broker:` section with `type: simulated`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["simulated"] = "simulated"
    fill_at: Literal["next_open", "close"] = "next_open"
    slippage_bps: float = Field(default=1.0, ge=0, lt=MAX_BPS, allow_inf_nan=False)
    commission_per_share: Decimal = Field(default=Decimal(0), ge=0, le=MAX_COMMISSION_PER_SHARE)
    commission_min: Decimal = Field(default=Decimal(0), ge=0, le=MAX_MONEY)
    commission_bps: float = Field(default=0.0, ge=0, le=MAX_BPS, allow_inf_nan=False)
    account: Literal["cash", "margin"] = "cash"
    max_volume_participation: float | None = Field(default=None, gt=0, le=1)


class _Order:
    """One open order's mutable state inside the simulated broker."""

    __slots__ = (
        "broker_order_id",
        "client_order_id",
        "expires_ns",
        "fills",
        "is_buy",
        "leaves",
        "limit",
        "symbol",
        "ts",
        "whole",
    )

    def __init__(self, command: SubmitOrder, broker_order_id: str, expires_ns: int) -> None:
        self.client_order_id = command.client_order_id
        self.broker_order_id = broker_order_id
        self.symbol = command.symbol
        self.is_buy = command.side is OrderSide.BUY
        self.leaves = command.qty
        self.limit = command.limit_price if command.order_type is OrderType.LIMIT else None
        self.ts = command.ts
        self.expires_ns = expires_ns
        self.whole = command.qty == command.qty.to_integral_value()
        self.fills = 0


class SimulatedBroker:
    """A broker that fills against bars; implements `brokers.base.Broker`.

    Deterministic: the same commands and bars always give the same events, broker order ids
    (`SIM-00000001`, ...) and execution ids (`SIM-00000001-1`, ...).

    Attributes:
        cash: the account's cash, after fills and commissions.
        positions: signed quantity per symbol (no zero entries).
        duplicates_ignored: submits ignored because their client_order_id was seen before.
    """

    def __init__(self, settings: SimulatedBrokerSettings, *, start_cash: Decimal) -> None:
        self.settings = settings
        self.cash = start_cash
        self.positions: dict[str, Decimal] = {}
        self.duplicates_ignored = 0
        self._seen: set[str] = set()
        self._open: dict[str, list[_Order]] = {}
        self._by_id: dict[str, _Order] = {}
        self._last_bar: dict[str, Bar] = {}
        # Volume still available to fills in each symbol's current bar (participation cap).
        self._volume_left: dict[str, Decimal] = {}
        self._events: list[ExecutionEvent] = []
        self._next_id = 0
        self._slip = settings.slippage_bps / 1e4
        self._per_share = settings.commission_per_share
        self._commission_min = settings.commission_min
        self._commission_rate = Decimal(repr(settings.commission_bps)) / Decimal(10_000)
        self._participation = settings.max_volume_participation
        self._fill_at_close = settings.fill_at == "close"
        self._cash_account = settings.account == "cash"

    # -- the Broker protocol -------------------------------------------------------------------

    def submit(self, command: SubmitOrder) -> None:
        """Accept (or reject) an order; a client_order_id seen before is ignored silently."""
        cid = command.client_order_id
        if cid in self._seen:
            self.duplicates_ignored += 1
            return
        self._seen.add(cid)
        symbol = command.symbol
        last = self._last_bar.get(symbol)
        reason = None
        if last is None:
            reason = f"no price for {symbol}"
        elif command.qty <= _ZERO:
            reason = f"qty must be positive, got {command.qty}"
        elif command.order_type is OrderType.LIMIT and (
            command.limit_price is None or command.limit_price <= _ZERO
        ):
            reason = "limit order needs a positive limit_price"
        if reason is not None or last is None:
            self._events.append(
                OrderRejected(
                    client_order_id=cid, symbol=symbol, ts=command.ts, reason=reason or ""
                )
            )
            return
        self._next_id += 1
        broker_id = f"SIM-{self._next_id:08d}"
        expires_ns = (
            next_local_midnight_ns(command.ts, _EXCHANGE_TZ)
            if command.time_in_force is TimeInForce.DAY and command.order_type is OrderType.LIMIT
            else 1 << 62
        )
        order = _Order(command, broker_id, expires_ns)
        self._events.append(
            OrderAccepted(
                client_order_id=cid, symbol=symbol, ts=command.ts, broker_order_id=broker_id
            )
        )
        self._by_id[cid] = order
        self._open.setdefault(symbol, []).append(order)
        if self._fill_at_close and order.limit is None:
            # Fill against the bar that decided it, stamped at the decision time.
            self._try_fill(order, last, command.ts)
            self._drop_done(symbol)

    def cancel(self, command: CancelOrder) -> None:
        """Cancel an open order; an unknown or finished order is left alone (no event)."""
        order = self._by_id.pop(command.client_order_id, None)
        if order is None:
            return
        self._open[order.symbol].remove(order)
        self._events.append(
            OrderCanceled(
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                ts=command.ts,
                reason="canceled",
            )
        )

    def poll_events(self) -> list[ExecutionEvent]:
        """Events since the last call, in the order they happened."""
        events = self._events
        self._events = []
        return events

    # -- the market ----------------------------------------------------------------------------

    def on_bar(self, bar: Bar) -> None:
        """Show the broker one accepted bar: it fills, expires or leaves the symbol's orders.

        Hot path: with no open order for the symbol this is a dict store and a dict lookup.
        """
        symbol = bar[0]  # Bar is a NamedTuple: indexing beats attribute access
        self._last_bar[symbol] = bar
        if self._participation is not None:
            # A new bar brings new volume; the first fill against it computes the allowance.
            self._volume_left.pop(symbol, None)
        orders = self._open.get(symbol)
        if not orders:
            return
        ts = bar.ts
        for order in tuple(orders):
            if ts >= order.expires_ns:
                self._finish(order)
                self._events.append(
                    OrderCanceled(
                        client_order_id=order.client_order_id,
                        symbol=symbol,
                        ts=ts,
                        reason="expired",
                    )
                )
            elif ts >= order.ts:
                self._try_fill(order, bar, ts)
        self._drop_done(symbol)

    # -- internals -----------------------------------------------------------------------------

    def _try_fill(self, order: _Order, bar: Bar, ts: int) -> None:
        limit = order.limit
        if limit is None:
            base = bar.close if self._fill_at_close else bar.open
            raw = base * (1.0 + self._slip) if order.is_buy else base * (1.0 - self._slip)
            price = round_to_tick(Decimal(repr(raw)))
        elif order.is_buy:
            if not bar.low < limit:
                return
            price = round_to_tick(min(Decimal(repr(bar.open)), limit))
        else:
            if not bar.high > limit:
                return
            price = round_to_tick(max(Decimal(repr(bar.open)), limit))

        qty = order.leaves
        if self._participation is not None:
            left = self._volume_left.get(order.symbol)
            if left is None:
                left = Decimal(repr(bar.volume * self._participation))
            cap = left.quantize(_WHOLE if order.whole else _QTY_QUANTUM, rounding=ROUND_DOWN)
            if cap <= _ZERO:
                return
            qty = min(qty, cap)
            self._volume_left[order.symbol] = left - qty

        notional = qty * price
        commission = self._commission(qty, notional)
        held = self.positions.get(order.symbol, _ZERO)
        if self._cash_account:
            # Like a real broker, the whole remaining order must be covered, not just this fill.
            reason = None
            leaves = order.leaves
            if order.is_buy:
                need = leaves * price + self._commission(leaves, leaves * price)
                if need > self.cash:
                    if self._sells_due(ts):
                        # A rebalance sends its sells first, but the bars of one slice arrive
                        # symbol by symbol: wait for the proceeds of sells due now.
                        return
                    reason = f"insufficient buying power: need {need}, have {self.cash}"
            elif leaves > held:
                reason = "cash account cannot sell short"
            if reason is not None:
                self._finish(order)
                self._events.append(
                    OrderRejected(
                        client_order_id=order.client_order_id,
                        symbol=order.symbol,
                        ts=ts,
                        reason=reason,
                    )
                )
                return

        if order.is_buy:
            self.cash -= notional + commission
            new_qty = held + qty
            side = OrderSide.BUY
        else:
            self.cash += notional - commission
            new_qty = held - qty
            side = OrderSide.SELL
        if new_qty:
            self.positions[order.symbol] = new_qty
        else:
            self.positions.pop(order.symbol, None)

        order.fills += 1
        order.leaves -= qty
        execution_id = f"{order.broker_order_id}-{order.fills}"
        if order.leaves > _ZERO:
            self._events.append(
                OrderPartiallyFilled(
                    client_order_id=order.client_order_id,
                    symbol=order.symbol,
                    side=side,
                    qty=qty,
                    price=price,
                    commission=commission,
                    ts=ts,
                    execution_id=execution_id,
                    leaves_qty=order.leaves,
                )
            )
        else:
            self._finish(order)
            self._events.append(
                OrderFilled(
                    client_order_id=order.client_order_id,
                    symbol=order.symbol,
                    side=side,
                    qty=qty,
                    price=price,
                    commission=commission,
                    ts=ts,
                    execution_id=execution_id,
                )
            )

    def _sells_due(self, ts: int) -> bool:
        """Whether a market sell decided at or before `ts` is still open (it fills at its
        symbol's next bar). Only asked when a cash buy lacks the cash."""
        return any(
            not o.is_buy and o.limit is None and o.ts <= ts and o.expires_ns >= 0
            for o in self._by_id.values()
        )

    def _commission(self, qty: Decimal, notional: Decimal) -> Decimal:
        commission = _ZERO
        if self._per_share > _ZERO:
            commission = max(self._per_share * qty, self._commission_min)
        if self._commission_rate:
            commission += notional * self._commission_rate
        return commission.quantize(CENT, rounding=ROUND_HALF_UP)

    def _finish(self, order: _Order) -> None:
        """Mark an order done; it leaves the symbol's list at the next `_drop_done`."""
        self._by_id.pop(order.client_order_id, None)
        order.leaves = _ZERO
        order.expires_ns = -1

    def _drop_done(self, symbol: str) -> None:
        orders = self._open[symbol]
        live = [o for o in orders if o.expires_ns >= 0]
        if len(live) != len(orders):
            self._open[symbol] = live
