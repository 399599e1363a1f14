"""Rebalancing: from target weights to the orders that move the book toward them."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from brokers.orders import OrderSide, OrderType, SubmitOrder, TimeInForce
from brokers.simulated import round_to_tick
from composer.targets import Targets
from feeds.bar import NS_PER_SECOND
from feeds.errors import ConfigError, InvariantViolation
from portfolio.ledger import Ledger

MAX_CLIENT_ORDER_ID_LEN = 48
MAX_ID_PREFIX_LEN = 16
_ZERO = Decimal(0)
_WHOLE = Decimal(1)
_FRACTION = Decimal("1e-9")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n: int) -> str:
    """`n` (non-negative) in base 36, lower case."""
    if n < 0:
        raise InvariantViolation(f"base36 of a negative number: {n}")
    digits = []
    while True:
        n, r = divmod(n, 36)
        digits.append(_BASE36[r])
        if not n:
            return "".join(reversed(digits))


class RebalanceSettings(BaseModel):
    """How targets become orders (the `rebalance:` config section)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_trade_notional: Decimal = Field(default=Decimal(100), ge=0)
    no_trade_band: float = Field(default=0.02, ge=0, lt=1)
    fractional: bool = False
    order_type: Literal["market", "limit"] = "market"
    limit_offset_bps: float = Field(default=10.0, ge=0)


class Rebalancer:
    """Turns target weights into orders, deterministically.

    Args:
        settings: the rebalance settings.
        id_prefix: the run's prefix of client order ids (1 to 16 printable ASCII characters,
            no whitespace).

    Raises:
        ConfigError: if `id_prefix` is empty, too long or not printable ASCII.
    """

    def __init__(self, settings: RebalanceSettings, *, id_prefix: str) -> None:
        if not id_prefix or len(id_prefix) > MAX_ID_PREFIX_LEN:
            raise ConfigError(
                f"id_prefix must be 1 to {MAX_ID_PREFIX_LEN} characters, got {id_prefix!r}"
            )
        if not (id_prefix.isascii() and id_prefix.isprintable()) or " " in id_prefix:
            raise ConfigError(f"id_prefix must be printable ASCII without spaces: {id_prefix!r}")
        self.settings = settings
        self.id_prefix = id_prefix
        self._quantum = _FRACTION if settings.fractional else _WHOLE
        # A hair of tolerance so a weight exactly on the band edge (0.10 vs 0.08 with a 0.02
        # band) counts as inside despite binary floats.
        self._band = settings.no_trade_band + 1e-12
        self._offset = Decimal(repr(settings.limit_offset_bps)) / Decimal(10_000)

    def client_order_id(self, ts: int, symbol: str, seq: int) -> str:
        """`{id_prefix}-{base36(ts seconds)}-{symbol}-{seq}`: the same inputs, the same id.

        Raises:
            InvariantViolation: if the id is longer than 48 characters or not ASCII.
        """
        cid = f"{self.id_prefix}-{base36(ts // NS_PER_SECOND)}-{symbol}-{seq}"
        if len(cid) > MAX_CLIENT_ORDER_ID_LEN or not cid.isascii():
            raise InvariantViolation(
                f"client order id {cid!r} is not at most {MAX_CLIENT_ORDER_ID_LEN} ASCII chars"
            )
        return cid

    def orders(
        self,
        targets: Targets,
        ledger: Ledger,
        prices: Mapping[str, float],
        open_qty: Mapping[str, Decimal],
        ts: int,
    ) -> list[SubmitOrder]:
        """The orders that move the book (positions plus open orders) toward `targets`.

        Held symbols absent from `targets` count as target 0. A symbol is left alone when its
        current weight is within the no-trade band of its target, or when the trade is smaller
        than `min_trade_notional`; except that a target of exactly 0 always closes a
        non-zero position. Target quantities round toward zero (whole shares unless
        fractional). A symbol without a price (in `prices` or as the ledger's last mark) is
        skipped.

        Args:
            ts: the decision time (the slice's close), UTC ns; it becomes `SubmitOrder.ts`.

        Returns:
            Sells first, then buys, each in symbol order; ids numbered in that order.
        """
        equity = ledger.equity
        # The band test runs in floats: most symbols stop there on most slices, unconverted.
        equity_f = float(equity)
        band = self._band
        weights = targets.weights
        positions = ledger.positions
        symbols = set(weights)
        symbols.update(positions)
        deltas: list[tuple[str, Decimal, Decimal]] = []
        for symbol in sorted(symbols):
            pos = positions.get(symbol)
            px = prices.get(symbol)
            if px is None:
                if pos is None:
                    continue
                px = float(pos.last_price)
            if not px > 0.0:
                continue
            current = open_qty.get(symbol, _ZERO)
            if pos is not None:
                current += pos.qty
            target_w = weights.get(symbol, 0.0)
            if target_w == 0.0:
                if current:
                    deltas.append((symbol, -current, Decimal(repr(px))))
                continue
            if equity_f <= 0.0:
                continue  # weights of nothing: only closes make sense
            if abs(float(current) * px / equity_f - target_w) <= band:
                continue
            price = Decimal(repr(px))
            target_qty = (Decimal(repr(target_w)) * equity / price).quantize(
                self._quantum, rounding=ROUND_DOWN
            )
            delta = target_qty - current
            if not delta:
                continue
            if target_qty and abs(delta) * price < self.settings.min_trade_notional:
                continue
            deltas.append((symbol, delta, price))

        # Sells first, so their proceeds are there when the buys fill; sorted() kept symbols.
        ordered = [d for d in deltas if d[1] < 0] + [d for d in deltas if d[1] > 0]
        return [
            self._order(symbol, delta, price, ts, seq)
            for seq, (symbol, delta, price) in enumerate(ordered)
        ]

    def _order(self, symbol: str, delta: Decimal, price: Decimal, ts: int, seq: int) -> SubmitOrder:
        buy = delta > 0
        limit = None
        order_type = OrderType.MARKET
        if self.settings.order_type == "limit":
            order_type = OrderType.LIMIT
            # Marketable: through the last close by the offset, rounded away from the market.
            if buy:
                limit = round_to_tick(price * (1 + self._offset), ROUND_CEILING)
            else:
                limit = round_to_tick(price * (1 - self._offset), ROUND_FLOOR)
        return SubmitOrder(
            client_order_id=self.client_order_id(ts, symbol, seq),
            symbol=symbol,
            side=OrderSide.BUY if buy else OrderSide.SELL,
            qty=abs(delta),
            order_type=order_type,
            ts=ts,
            limit_price=limit,
            time_in_force=TimeInForce.DAY,
        )
