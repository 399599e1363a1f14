"""The risk gate: per-order limits and the kill switch.

Every order from the rebalancer passes `RiskGate.check` before it reaches a broker. Limits clip
or deny orders (events, not exceptions); the kill switch latches on a daily loss or a drawdown
and then lets through only orders that reduce a position, until an operator resets it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from brokers.orders import OrderSide, SubmitOrder
from feeds.days import next_local_midnight_ns
from feeds.limits import MAX_LEVERAGE, MAX_MONEY
from portfolio.events import KillSwitchTripped, OrderClipped, OrderDenied, RiskEvent
from portfolio.exposure import Exposure
from portfolio.ledger import Ledger, Position

_ZERO = Decimal(0)
_WHOLE = Decimal(1)
_FRACTION = Decimal("1e-9")


DENY_REASONS = (
    "kill_switch",
    "no_short",
    "no_price",
    "max_order_notional",
    "max_weight",
    "max_gross",
    "no_equity",
)
"""Every rule an order can be denied or clipped by (the `reason` of OrderDenied/OrderClipped)."""


class RiskSettings(BaseModel):
    """Risk limits (the `risk:` config section). Weights are fractions of equity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_weight: float = Field(default=0.25, gt=0, le=MAX_LEVERAGE, allow_inf_nan=False)
    max_gross: float = Field(default=1.0, gt=0, le=MAX_LEVERAGE, allow_inf_nan=False)
    max_order_notional: Decimal = Field(default=Decimal(1_000_000), gt=0, le=MAX_MONEY)
    allow_short: bool = False
    daily_loss_limit: float = Field(default=0.05, gt=0, lt=1)
    max_drawdown: float = Field(default=0.20, gt=0, lt=1)
    on_kill: Literal["halt", "flatten"] = "halt"
    day_timezone: str = "America/New_York"

    @field_validator("day_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown IANA time zone {value!r}") from e
        return value


class RiskGate:
    """Checks orders against the limits and watches equity for the kill switch.

    Args:
        settings: the limits.
        fractional: whether orders may carry fractional quantities; if not, clips round down
            to whole shares and a clip below one share denies the order.

    Attributes:
        kill_switch: latched once tripped, until `reset()`.
        kill_reason: ``daily_loss`` or ``max_drawdown`` while latched, else None.
        day_start_equity: the equity at the first mark of the current local day.
    """

    def __init__(self, settings: RiskSettings, *, fractional: bool) -> None:
        self.settings = settings
        self.fractional = fractional
        self.kill_switch = False
        self.kill_reason: str | None = None
        self.day_start_equity = _ZERO
        self._day_start_f = 0.0
        self._daily_loss_limit = settings.daily_loss_limit
        self._max_drawdown = settings.max_drawdown
        self._tz = ZoneInfo(settings.day_timezone)
        self._next_day_ns = -(1 << 62)  # the first mark starts a day
        self._quantum = _FRACTION if fractional else _WHOLE
        self._max_gross_f = settings.max_gross

    def reset(self, ledger: Ledger | None = None) -> None:
        """Unlatch the kill switch (an operator's decision). It trips again at the next mark
        if the loss or drawdown is still beyond its limit.

        Args:
            ledger: given, the day's loss counts from its equity now (the operator's new start).
        """
        self.kill_switch = False
        self.kill_reason = None
        if ledger is not None:
            self.day_start_equity = ledger.equity
            self._day_start_f = ledger.equity_float

    def latch(self, reason: str) -> None:
        """Set the kill switch as it was before a restart (no event: it tripped back then)."""
        self.kill_switch = True
        self.kill_reason = reason

    def on_mark(self, ts: int, ledger: Ledger) -> KillSwitchTripped | None:
        """Watch the freshly marked ledger; call once per slice, after `Ledger.mark`.

        The first mark of a new local date sets the day's start equity. Trips on a daily loss
        (from the day's start equity) or a drawdown (from the high-water mark) at or beyond its
        limit.

        Returns:
            The event when the kill switch trips now; None otherwise (also while latched).
        """
        if ts >= self._next_day_ns:
            self.day_start_equity = ledger.equity
            self._day_start_f = ledger.equity_float
            self._next_day_ns = next_local_midnight_ns(ts, self._tz)
        if self.kill_switch:
            return None
        # Hot: floats from the ledger's mirror; Decimal only when the switch trips.
        start = self._day_start_f
        if start > 0.0:
            loss = (start - ledger.equity_float) / start
            if loss >= self._daily_loss_limit:
                return self._trip(ts, ledger, "daily_loss", loss, self._daily_loss_limit)
        drawdown = ledger.drawdown
        if drawdown >= self._max_drawdown:
            return self._trip(ts, ledger, "max_drawdown", drawdown, self._max_drawdown)
        return None

    def _trip(
        self,
        ts: int,
        ledger: Ledger,
        reason: Literal["daily_loss", "max_drawdown"],
        value: float,
        limit: float,
    ) -> KillSwitchTripped:
        self.kill_switch = True
        self.kill_reason = reason
        return KillSwitchTripped(
            ts=ts, reason=reason, equity=ledger.equity, value=value, limit=limit
        )

    def check(
        self,
        order: SubmitOrder,
        ledger: Ledger,
        prices: Mapping[str, float],
        open_qty: Mapping[str, Decimal],
        exposure: Exposure | None = None,
    ) -> tuple[SubmitOrder | None, RiskEvent | None]:
        """Approve, clip or deny one order.

        In order: the kill switch (orders that increase |position| are denied; one that
        crosses zero is clipped to the close), no shorting (a sell beyond the held quantity,
        counting open sells, is clipped to it, or denied if nothing is held), then clips to
        `max_order_notional`, `max_weight` and `max_gross` after the trade. A symbol's position
        is its held quantity plus its open orders (`open_qty`: every order sent and not yet
        terminal, at its remaining quantity, so the orders approved earlier in the same slice
        too), as if they fill; for `max_gross` every other symbol counts that way, at `prices`
        (or its last mark). If an open order of another symbol has no price at all, the gross
        after the trade is unknown and the order is clipped to the part that reduces the
        position ("no_price"). The weight limits never clip an order below that part.

        Args:
            exposure: the gross of `ledger`, `prices` and `open_qty` in floats, kept by the
                caller across one rebalance: an order it shows surely within `max_gross`
                skips the exact sum over every symbol (the decision is the same).

        Returns:
            (the order to send or None, the OrderClipped/OrderDenied event or None). A clipped
            order keeps its client_order_id.
        """
        settings = self.settings
        symbol = order.symbol
        sign = 1 if order.side is OrderSide.BUY else -1
        pos = ledger.positions.get(symbol)
        held = pos.qty if pos is not None else _ZERO
        pending = open_qty.get(symbol, _ZERO)
        current = held + pending
        # The part of the order that moves the position toward zero.
        reducing = max(_ZERO, -sign * current)
        requested = order.qty
        qty = requested
        reasons: list[str] = []

        if self.kill_switch:
            if reducing <= 0:
                return None, self._denied(order, "kill_switch")
            if qty > reducing:
                qty = reducing
                reasons.append("kill_switch")

        if sign < 0 and not settings.allow_short:
            # Open buys may never fill, so only open sells count against what can be sold.
            sellable = held + min(pending, _ZERO)
            if sellable <= 0:
                return None, self._denied(order, "no_short")
            if qty > sellable:
                qty = sellable
                reasons.append("no_short")

        price = _price(order, pos, prices)
        if price is None or price <= 0:
            return None, self._denied(order, "no_price")

        cap = settings.max_order_notional / price
        if qty > cap:
            qty = cap
            reasons.append("max_order_notional")

        floor = min(qty, reducing)  # the weight limits never block a reduction
        if qty > floor:
            qty = self._clip_to_weights(
                order,
                qty,
                floor=floor,
                current=current,
                price=price,
                ledger=ledger,
                prices=prices,
                open_qty=open_qty,
                exposure=exposure,
                reasons=reasons,
            )

        if not reasons:
            return order, None
        qty = qty.quantize(self._quantum, rounding=ROUND_DOWN)
        if qty <= 0:
            return None, self._denied(order, reasons[-1])
        clipped = dataclasses.replace(order, qty=qty)
        return clipped, OrderClipped(
            client_order_id=order.client_order_id,
            symbol=symbol,
            side=order.side,
            requested_qty=requested,
            approved_qty=qty,
            reason=",".join(reasons),
            ts=order.ts,
        )

    def _clip_to_weights(
        self,
        order: SubmitOrder,
        qty: Decimal,
        *,
        floor: Decimal,
        current: Decimal,
        price: Decimal,
        ledger: Ledger,
        prices: Mapping[str, float],
        open_qty: Mapping[str, Decimal],
        exposure: Exposure | None,
        reasons: list[str],
    ) -> Decimal:
        """`qty` clipped to `max_weight` and `max_gross` after the trade, never below `floor`
        (the part that reduces the position); appends the reason of each clip to `reasons`.

        `current` is the symbol's position, held plus open."""
        equity = ledger.equity
        if equity <= 0:
            reasons.append("no_equity")
            return floor
        sign = 1 if order.side is OrderSide.BUY else -1
        # Largest |position| allowed on the order's side, then what the order may add.
        max_abs = Decimal(repr(self.settings.max_weight)) * equity / price
        allowed = max(floor, max_abs - sign * current)
        if qty > allowed:
            qty = allowed
            reasons.append("max_weight")
        gross = self._gross_allowed(
            order,
            qty=qty,
            floor=floor,
            current=current,
            price=price,
            equity=equity,
            ledger=ledger,
            prices=prices,
            open_qty=open_qty,
            exposure=exposure,
        )
        if gross is not None:
            qty, reason = gross
            reasons.append(reason)
        return qty

    def _gross_allowed(
        self,
        order: SubmitOrder,
        *,
        qty: Decimal,
        floor: Decimal,
        current: Decimal,
        price: Decimal,
        equity: Decimal,
        ledger: Ledger,
        prices: Mapping[str, float],
        open_qty: Mapping[str, Decimal],
        exposure: Exposure | None,
    ) -> tuple[Decimal, str] | None:
        """The `max_gross` step: (the clipped quantity, the reason), or None to keep `qty`."""
        symbol = order.symbol
        after = current + qty if order.side is OrderSide.BUY else qty - current
        if exposure is not None and exposure.surely_within(
            symbol, float(after) * float(price), self._max_gross_f * float(equity)
        ):
            return None
        others = _others_gross(symbol, ledger, prices, open_qty)
        if others is None:
            # An open order nothing prices: the gross after this order is unknown.
            return floor, "no_price"
        sign = 1 if order.side is OrderSide.BUY else -1
        gross_room = Decimal(repr(self.settings.max_gross)) * equity - others
        allowed = max(floor, gross_room / price - sign * current)
        if qty > allowed:
            return allowed, "max_gross"
        return None

    @staticmethod
    def _denied(order: SubmitOrder, reason: str) -> OrderDenied:
        return OrderDenied(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            reason=reason,
            ts=order.ts,
        )


def _price(order: SubmitOrder, pos: Position | None, prices: Mapping[str, float]) -> Decimal | None:
    """The order's price: the slice's, else the position's last mark, else its limit."""
    px = prices.get(order.symbol)
    if px is not None:
        return Decimal(repr(px))
    if pos is not None:
        return pos.last_price
    return order.limit_price


def _others_gross(
    symbol: str, ledger: Ledger, prices: Mapping[str, float], open_qty: Mapping[str, Decimal]
) -> Decimal | None:
    """Sum of |held + open quantity| x price over every symbol but `symbol`; None if an open
    order's symbol has no price (neither in `prices` nor as a held position's mark).

    Open orders count as if they fill, as the rebalancer counts them: an open sell of a held
    position frees room, an open buy takes it.
    """
    positions = ledger.positions
    total = _ZERO
    for other, pos in positions.items():
        if other != symbol:
            qty = pos.qty
            pending = open_qty.get(other)
            if pending is not None:
                qty += pending
            opx = prices.get(other)
            mark = Decimal(repr(opx)) if opx is not None else pos.last_price
            total += abs(qty * mark)
    for other, pending in open_qty.items():
        if other != symbol and other not in positions:
            opx = prices.get(other)
            if opx is None:
                return None
            total += abs(pending * Decimal(repr(opx)))
    return total
