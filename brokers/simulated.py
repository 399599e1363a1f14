"""The simulated broker: fills orders against the bars the driver shows it.

It keeps its own account (cash and positions) the way a real broker does, so the ledger learns
about the account only through execution events, as it does live.

Fill rules:
    - Market orders fill on the first bar of their symbol that starts at or after the decision
      time (`fill_at="next_open"`, at that bar's open), or at submit at the close of the last
      bar seen (`fill_at="close"`). Either way the price moves against the trader by
      `slippage_bps`. A bar that started before the decision never fills an order: no
      look-ahead.
    - Auction orders (market only, whole shares, as at Alpaca) fill at an auction price, with
      the slippage and commission of market orders, whatever `fill_at` says. `opg` orders fill
      at the open of the first bar of their symbol in the next session that opens at or after
      the decision (its first minute for minute bars, its daily bar for daily bars). `cls`
      orders fill at the close of the session that closes after the decision: the close of the
      bar that reaches the close (the last minute, or the daily bar), or, if the symbol's last
      minute came earlier, of that last minute once a later bar shows the session is over. An
      auction order the session passes by without a bar of its symbol is canceled (expired),
      and what the volume cap leaves of one is canceled too: auctions happen once. Both need
      the broker's session calendar and bar length.
    - Limit orders rest until a bar trades through the limit: a buy fills when `low < limit` at
      `min(open, limit)`, a sell when `high > limit` at `max(open, limit)`; no slippage. DAY
      orders still open at the first bar of a later America/New_York date expire.
    - Prices are rounded to the tick: 0.01 at or above $1, 0.0001 below.
    - A cash account rejects a buy that the cash does not cover, unless a market sell decided
      at or before the bar is still open: then the buy waits for a later bar of its symbol, as
      the sells of one rebalance may print after its buys. An auction buy waiting so keeps
      its auction price, and fills as soon as a sell's proceeds arrive.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

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
from brokers.settings import SimulatedBrokerSettings
from brokers.ticks import CENT, round_to_tick
from feeds.bar import NS_PER_SECOND, Bar
from feeds.calendar import SessionCalendar
from feeds.days import next_local_midnight_ns

_ZERO = Decimal(0)
_WHOLE = Decimal(1)
_QTY_QUANTUM = Decimal("1e-9")
_EXCHANGE_TZ = ZoneInfo("America/New_York")
_AUCTIONS = (TimeInForce.OPG, TimeInForce.CLS)
_AUCTION_NAME = {TimeInForce.OPG: "opening", TimeInForce.CLS: "closing"}


class _Order:
    """One open order's mutable state inside the simulated broker."""

    __slots__ = (
        "auction",
        "auction_name",
        "broker_order_id",
        "client_order_id",
        "due",
        "expires_ns",
        "fills",
        "is_buy",
        "leaves",
        "limit",
        "session",
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
        # Auction orders: opg or cls, the (open, close) of their session, and the bar whose
        # open (opg) or close (cls) is their price once it is known.
        tif = command.time_in_force
        self.auction: TimeInForce | None = tif if tif in _AUCTIONS else None
        self.auction_name = _AUCTION_NAME.get(tif, "")
        self.session = (0, 0)
        self.due: Bar | None = None


class SimulatedBroker:
    """A broker that fills against bars; implements `brokers.base.Broker`.

    Deterministic: the same commands and bars always give the same events, broker order ids
    (`SIM-00000001`, ...) and execution ids (`SIM-00000001-1`, ...).

    Args:
        settings: fill, cost and account rules.
        start_cash: the account's cash at the start.
        calendar: the exchange's sessions; needed by `opg` and `cls` orders.
        bar_ns: the length of the bars shown to `on_bar` (1 minute, 1 day); needed by `opg`
            and `cls` orders.
        remember_ids: past client_order_ids kept to ignore a repeat (a bound on memory).

    Attributes:
        cash: the account's cash, after fills and commissions.
        positions: signed quantity per symbol (no zero entries).
        duplicates_ignored: submits ignored because their client_order_id was seen before
            (among the last `remember_ids`, or an open order's).
    """

    def __init__(
        self,
        settings: SimulatedBrokerSettings,
        *,
        start_cash: Decimal,
        calendar: SessionCalendar | None = None,
        bar_ns: int | None = None,
        remember_ids: int = 65_536,
    ) -> None:
        self.settings = settings
        self.cash = start_cash
        self.positions: dict[str, Decimal] = {}
        self.duplicates_ignored = 0
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()  # the same ids, oldest first
        self._remember = remember_ids
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
        self._calendar = calendar
        self._bar_ns = bar_ns or 0
        # Auction orders whose price is known, waiting for the proceeds of sells (cash account).
        self._waiting: list[_Order] = []

    # -- the Broker protocol -------------------------------------------------------------------

    def submit(self, command: SubmitOrder) -> None:
        """Accept (or reject) an order; a client_order_id seen before is ignored silently."""
        cid = command.client_order_id
        if cid in self._seen or cid in self._by_id:
            self.duplicates_ignored += 1
            return
        self._seen.add(cid)
        self._seen_order.append(cid)
        if len(self._seen_order) > self._remember:
            self._seen.discard(self._seen_order.popleft())
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
        elif command.time_in_force in _AUCTIONS:
            reason = self._auction_problem(command)
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
        if order.auction is not None:
            order.session = self._auction_session(order.auction, command.ts)
        self._events.append(
            OrderAccepted(
                client_order_id=cid, symbol=symbol, ts=command.ts, broker_order_id=broker_id
            )
        )
        self._by_id[cid] = order
        self._open.setdefault(symbol, []).append(order)
        if order.auction is not None:
            # A daily bar seen before a cls decision within its session already holds the
            # session's close.
            if order.auction is TimeInForce.CLS and self._reaches_close(order, last):
                order.due = last
                self._auction_fill(order, command.ts)
                self._drop_done(symbol)
        elif self._fill_at_close and order.limit is None:
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

    def open_order_ids(self) -> list[str]:
        """The client order ids of the orders still open, in the order they were accepted."""
        return list(self._by_id)

    # -- the market ----------------------------------------------------------------------------

    def on_bar(self, bar: Bar) -> None:
        """Show the broker one accepted bar: it fills, expires or leaves the symbol's orders.

        Hot path: with no open order for the symbol this is a dict store and a dict lookup.
        """
        symbol = bar[0]  # Bar is a NamedTuple: indexing beats attribute access
        last_bar = self._last_bar
        previous = last_bar.get(symbol)
        last_bar[symbol] = bar
        if self._participation is not None:
            # A new bar brings new volume; the first fill against it computes the allowance.
            self._volume_left.pop(symbol, None)
        orders = self._open.get(symbol)
        if not orders:
            return
        ts = bar.ts
        cash = self.cash
        for order in tuple(orders):
            if order.auction is not None:
                self._auction_bar(order, bar, previous)
            elif ts >= order.expires_ns:
                self._expire(order, ts, "expired")
            elif ts >= order.ts:
                self._try_fill(order, bar, ts)
        self._drop_done(symbol)
        if self._waiting and self.cash > cash:
            self._retry_waiting(ts)

    # -- auctions ------------------------------------------------------------------------------

    def _auction_problem(self, command: SubmitOrder) -> str | None:
        """Why an opg/cls order cannot be filled as the auction fills it, or None."""
        tif = command.time_in_force
        if command.order_type is not OrderType.MARKET:
            return (
                f"time_in_force {tif} needs a market order: the simulated broker fills only"
                f" market orders in the {_AUCTION_NAME[tif]} auction"
            )
        if command.qty != command.qty.to_integral_value():
            return f"time_in_force {tif} needs a whole qty (Alpaca: fractional orders are day)"
        if self._calendar is None or not self._bar_ns:
            return f"time_in_force {tif} needs the simulated broker's calendar and bar length"
        return None

    def _auction_session(self, tif: TimeInForce, ts: int) -> tuple[int, int]:
        """The session of an auction order decided at `ts`: the first that opens (opg) or
        closes (cls) after it."""
        assert self._calendar is not None  # checked at submit
        day = dt.datetime.fromtimestamp(ts // NS_PER_SECOND, self._calendar.tz).date()
        first, second = self._calendar.sessions(day, 2)  # that date's (or the next) and after
        ahead = first[0] >= ts if tif is TimeInForce.OPG else first[1] > ts
        return first if ahead else second

    def _overlaps(self, order: _Order, bar: Bar) -> bool:
        """Whether `bar` covers part of the order's session."""
        open_ns, close_ns = order.session
        return bar.ts < close_ns and bar.ts + self._bar_ns > open_ns

    def _reaches_close(self, order: _Order, bar: Bar) -> bool:
        """Whether `bar` is in the order's session and covers its close."""
        return self._overlaps(order, bar) and bar.ts + self._bar_ns >= order.session[1]

    def _auction_bar(self, order: _Order, bar: Bar, previous: Bar | None) -> None:
        """Show an auction order a bar of its symbol: it learns its price, fills or expires."""
        if order.due is None:
            close_ns = order.session[1]
            if order.auction is TimeInForce.OPG:
                if bar.ts >= order.ts and self._overlaps(order, bar):
                    order.due = bar
            elif self._reaches_close(order, bar):
                order.due = bar
            elif bar.ts >= close_ns and previous is not None and self._overlaps(order, previous):
                # The symbol's last minute came before the close: the session is over now.
                order.due = previous
            if order.due is None:
                if bar.ts >= close_ns:
                    self._expire(order, bar.ts, f"expired: no {order.auction_name} auction print")
                return
        self._auction_fill(order, bar.ts)

    def _auction_fill(self, order: _Order, ts: int) -> None:
        """Fill an auction order whose price is known; what cannot fill now is canceled,
        unless a cash buy waits for the proceeds of sells."""
        assert order.due is not None
        if self._try_fill(order, order.due, ts):
            if order not in self._waiting:
                self._waiting.append(order)
            return
        if order in self._waiting:
            self._waiting.remove(order)
        if order.expires_ns >= 0:
            self._expire(order, ts, f"not filled in the {order.auction_name} auction (volume)")

    def _retry_waiting(self, ts: int) -> None:
        """After a sell raised the cash: fill the auction buys waiting for it, oldest first."""
        for order in tuple(self._waiting):
            if order.expires_ns < 0:
                self._waiting.remove(order)
                continue
            self._auction_fill(order, ts)
            self._drop_done(order.symbol)

    # -- internals -----------------------------------------------------------------------------

    def _try_fill(self, order: _Order, bar: Bar, ts: int) -> bool:
        """Fill what the bar allows of the order. Returns True if a cash buy waits for the
        proceeds of sells due now (it stays open), False otherwise."""
        price = self._fill_price(order, bar)
        if price is None:
            return False
        qty = order.leaves
        if self._participation is not None:
            left = self._volume_left.get(order.symbol)
            if left is None:
                left = Decimal(repr(bar.volume * self._participation))
            cap = left.quantize(_WHOLE if order.whole else _QTY_QUANTUM, rounding=ROUND_DOWN)
            if cap <= _ZERO:
                return False
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
                        return True
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
                return False

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
        return False

    def _fill_price(self, order: _Order, bar: Bar) -> Decimal | None:
        """The price this bar fills the order at (slipped, on the tick), or None when a limit
        order's price was not traded through."""
        limit = order.limit
        if limit is None:
            if order.auction is not None:
                base = bar.open if order.auction is TimeInForce.OPG else bar.close
            else:
                base = bar.close if self._fill_at_close else bar.open
            raw = base * (1.0 + self._slip) if order.is_buy else base * (1.0 - self._slip)
            return round_to_tick(Decimal(repr(raw)))
        if order.is_buy:
            if not bar.low < limit:
                return None
            return round_to_tick(min(Decimal(repr(bar.open)), limit))
        if not bar.high > limit:
            return None
        return round_to_tick(max(Decimal(repr(bar.open)), limit))

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

    def _expire(self, order: _Order, ts: int, reason: str) -> None:
        """Cancel an open order on the broker's side."""
        self._finish(order)
        self._events.append(
            OrderCanceled(
                client_order_id=order.client_order_id, symbol=order.symbol, ts=ts, reason=reason
            )
        )

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
