"""Rebalancing: from target weights to the orders that move the book toward them."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from brokers.orders import OrderSide, OrderType, SubmitOrder, TimeInForce
from brokers.ticks import round_to_tick
from composer.targets import Targets
from feeds.bar import NS_PER_SECOND
from feeds.errors import ConfigError, InvariantViolation
from feeds.limits import MAX_BPS, MAX_MONEY
from portfolio.ledger import Ledger, Position
from portfolio.trade_rule import SLACK, exact_trade, no_trade_in_float, trade_to, whole_target

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


def _undoes_open_order(pending: Decimal | None, pos: Position | None, target_qty: Decimal) -> bool:
    """Whether the trade to `target_qty` would only take back part of an open order's remainder.

    That is when the target lies between the held quantity (included) and the held plus the
    open quantity. Such a trade cannot amend the open order: it would sell what is not held
    yet (the risk gate denies it as no_short) or trade against the order still working. The
    order is left to fill, and a later rebalance trades the difference.
    """
    if not pending:
        return False
    held = pos.qty if pos is not None else _ZERO
    if pending > 0:
        return held <= target_qty < held + pending
    return held + pending < target_qty <= held


class RebalanceSettings(BaseModel):
    """How targets become orders (the `rebalance:` config section)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_trade_notional: Decimal = Field(default=Decimal(100), ge=0, le=MAX_MONEY)
    no_trade_band: float = Field(default=0.02, ge=0, lt=1)
    fractional: bool = False
    order_type: Literal["market", "limit"] = "market"
    limit_offset_bps: float = Field(default=10.0, ge=0, lt=MAX_BPS)
    # Slippage and commission push a buy's cost above its price x qty; without a margin, a
    # fully invested cash account would have its buys rejected.
    cash_buffer: float = Field(default=0.005, ge=0, lt=1)


class Rebalancer:
    """Turns target weights into orders, deterministically.

    Args:
        settings: the rebalance settings.
        id_prefix: the run's prefix of client order ids (1 to 16 printable ASCII characters,
            no whitespace).

    Raises:
        ConfigError: if `id_prefix` is empty, too long or not printable ASCII.
    """

    def __init__(
        self,
        settings: RebalanceSettings,
        *,
        id_prefix: str,
        cash_limited: bool = True,
        time_in_force: TimeInForce = TimeInForce.DAY,
    ) -> None:
        """Build the rebalancer of one account.

        Args:
            settings: the `rebalance:` config.
            id_prefix: the start of every client order id (1 to 16 printable ASCII characters).
            cash_limited: fit buys to the cash the account will have (a cash account); False
                for a margin account, whose gross exposure the risk gate limits instead.
            time_in_force: of every order: day, or an auction (opg, cls) for daily styles.
        """
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
        self._buy_markup = _WHOLE + self._offset if settings.order_type == "limit" else _WHOLE
        self._cash_buffer = Decimal(repr(settings.cash_buffer))
        self._min_notional = settings.min_trade_notional
        self._whole = not settings.fractional
        # Below this float, a trade's notional is surely below min_trade_notional.
        self._min_notional_f = float(settings.min_trade_notional) * (1.0 - 4 * SLACK)
        self._cash_limited = cash_limited
        self._tif = time_in_force
        # All orders of one rebalance share the time stamp: convert it once.
        self._stamp_s = -1
        self._stamp = ""

    def client_order_id(self, ts: int, symbol: str, seq: int, stamp: str | None = None) -> str:
        """`{id_prefix}-{base36(ts seconds)}-{symbol}-{seq}`: the same inputs, the same id.

        Args:
            stamp: replaces the time stamp (a flatten's `F` and its journal sequence number:
                unique per call, where two calls can fall in the same second).

        Raises:
            InvariantViolation: if the id is longer than 48 characters or not ASCII.
        """
        if stamp is None:
            ts_s = ts // NS_PER_SECOND
            if ts_s != self._stamp_s:
                self._stamp = base36(ts_s)
                self._stamp_s = ts_s
            stamp = self._stamp
        cid = f"{self.id_prefix}-{stamp}-{symbol}-{seq}"
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
        *,
        stamp: str | None = None,
    ) -> list[SubmitOrder]:
        """The orders that move the book (positions plus open orders) toward `targets`.

        Held symbols absent from `targets` count as target 0. A symbol is left alone when its
        current weight is within the no-trade band of its target, or when the trade is smaller
        than `min_trade_notional`; except that a target of exactly 0 always closes a
        non-zero position. Nor does a non-zero target between the held quantity and the held
        plus open quantity trade: that order would only take back part of a still-open order
        (a sell of shares not held yet, say); the open order fills and a later rebalance
        trades the rest. Target quantities round toward zero (whole shares unless
        fractional). A symbol without a price (in `prices` or as the ledger's last mark) is
        skipped. Buys are then scaled down, all by one factor, to the cash they can have (see
        `_fit_to_cash`), so a target of 1.0 leaves `cash_buffer` of equity for slippage and
        commission instead of being rejected by a cash account.

        Args:
            ts: the decision time (the slice's close), UTC ns; it becomes `SubmitOrder.ts`.
            stamp: the ids' stamp instead of the time's (see `client_order_id`).

        Returns:
            Sells first, then buys, each in symbol order; ids numbered in that order.
        """
        candidates = self._candidates(targets.weights, ledger, prices, open_qty)
        if not candidates:
            return []
        candidates.sort()
        deltas, equity = self._deltas(candidates, ledger, open_qty)

        # Sells first, so their proceeds are there when the buys fill; candidates were sorted.
        sells = [d for d in deltas if d[1] < 0]
        buys = [d for d in deltas if d[1] > 0]
        if buys and self._cash_limited:
            buys = self._fit_to_cash(
                buys=buys,
                sells=sells,
                ledger=ledger,
                prices=prices,
                open_qty=open_qty,
                equity=ledger.equity if equity is None else equity,
            )
        return [
            self._order(symbol, delta, price, ts, seq, stamp=stamp)
            for seq, (symbol, delta, price) in enumerate(sells + buys)
        ]

    def _candidates(
        self,
        weights: Mapping[str, float],
        ledger: Ledger,
        prices: Mapping[str, float],
        open_qty: Mapping[str, Decimal],
    ) -> list[tuple[str, float, float, int | None]]:
        """(symbol, target weight, price, whole-share target) of every symbol that may trade,
        decided in floats; the last is the exact target quantity when the floats settle it
        (`whole_target`), else None.

        Hot: every symbol, every rebalance. The band test runs on the ledger's float mirrors;
        most symbols stop there, or, with a narrow band, at the float pre-check of the exact
        rule (`no_trade_in_float`, from the float equity and its error bound). Only what is
        left is converted to Decimal.
        """
        equity_f = ledger.equity_float
        band = self._band
        positions = ledger.positions
        qty_float = ledger.qty_float
        get_price = prices.get
        whole = self._whole
        min_notional_f = self._min_notional_f
        rel_err = -1.0  # the relative error of the float equity, once needed
        candidates: list[tuple[str, float, float, int | None]] = []
        for symbol, target_w in weights.items():
            px = get_price(symbol)
            if px is None:
                pos = positions.get(symbol)
                if pos is None:
                    continue
                px = float(pos.last_price)
            if not px > 0.0:
                continue
            if target_w == 0.0:
                # Closes whatever is held or open; nothing to do for a symbol with neither.
                if symbol in qty_float or (open_qty and symbol in open_qty):
                    candidates.append((symbol, 0.0, px, None))
                continue
            if equity_f <= 0.0:
                continue  # weights of nothing: only closes make sense
            held_f = qty_float.get(symbol, 0.0)
            current_f = held_f
            pending = None
            if open_qty:
                pending = open_qty.get(symbol)
                if pending is not None:
                    current_f += float(pending)
            if abs(current_f * px / equity_f - target_w) <= band:
                continue
            if rel_err < 0.0:
                rel_err = SLACK + ledger.equity_float_error() / equity_f
            t = target_w * equity_f / px
            pos = positions.get(symbol)
            t_err = abs(t) * rel_err
            if no_trade_in_float(
                t,
                t_err,
                px,
                held=None if pos is None else pos.qty,
                held_f=held_f,
                pending=pending,
                whole=whole,
                min_notional_f=min_notional_f,
            ):
                continue
            candidates.append((symbol, target_w, px, whole_target(t, t_err) if whole else None))
        if not positions.keys() <= weights.keys():
            for symbol, pos in positions.items():
                if symbol not in weights:
                    px = get_price(symbol)
                    if px is None:
                        px = float(pos.last_price)
                    if px > 0.0:
                        candidates.append((symbol, 0.0, px, None))
        return candidates

    def _deltas(
        self,
        candidates: list[tuple[str, float, float, int | None]],
        ledger: Ledger,
        open_qty: Mapping[str, Decimal],
    ) -> tuple[list[tuple[str, Decimal, Decimal]], Decimal | None]:
        """The exact rule for each candidate: [(symbol, signed quantity, price)] of the trades,
        and the exact equity if it was needed (None: not computed). A target quantity the
        floats settled is taken as it is (the same Decimal the exact rule rounds to)."""
        positions = ledger.positions
        min_notional = self._min_notional
        equity: Decimal | None = None
        deltas: list[tuple[str, Decimal, Decimal]] = []
        for symbol, target_w, px, settled in candidates:
            pending = open_qty.get(symbol)
            current = _ZERO if pending is None else pending
            pos = positions.get(symbol)
            if pos is not None:
                current += pos.qty
            price = Decimal(repr(px))
            if target_w == 0.0:
                if current:
                    deltas.append((symbol, -current, price))
                continue
            if settled is not None:
                target_qty = Decimal(settled)
                found = trade_to(target_qty, current, price, min_notional)
                if found is None:
                    continue
                delta = found
            else:
                if equity is None:
                    equity = ledger.equity
                trade = exact_trade(
                    target_w,
                    equity,
                    price,
                    current,
                    quantum=self._quantum,
                    min_notional=min_notional,
                )
                if trade is None:
                    continue
                target_qty, delta = trade
            if pending is not None and _undoes_open_order(pending, pos, target_qty):
                continue
            deltas.append((symbol, delta, price))
        return deltas, equity

    def _fit_to_cash(
        self,
        *,
        buys: list[tuple[str, Decimal, Decimal]],
        sells: list[tuple[str, Decimal, Decimal]],
        ledger: Ledger,
        prices: Mapping[str, float],
        open_qty: Mapping[str, Decimal],
        equity: Decimal,
    ) -> list[tuple[str, Decimal, Decimal]]:
        """Scale the buys down, all by one factor, to the cash they can have.

        Available: cash + this rebalance's sells at the last price - open buys' notional -
        `cash_buffer` x equity. Buys are priced at the last price (marketable limits at their
        limit); slippage and commission are what the buffer is for.
        """
        available = ledger.cash - self._cash_buffer * max(equity, _ZERO)
        for _symbol, delta, price in sells:
            available -= delta * price  # delta < 0: proceeds
        for symbol, pending in open_qty.items():
            if pending > 0:
                px = prices.get(symbol)
                if px is not None:
                    available -= pending * Decimal(repr(px))
                elif (pos := ledger.positions.get(symbol)) is not None:
                    available -= pending * pos.last_price
        markup = self._buy_markup
        cost = sum((delta * price * markup for _s, delta, price in buys), start=_ZERO)
        if cost <= available:
            return buys
        if available <= 0:
            return []
        scale = available / cost
        fitted = []
        for symbol, delta, price in buys:
            qty = (delta * scale).quantize(self._quantum, rounding=ROUND_DOWN)
            if qty > 0 and qty * price >= self._min_notional:
                fitted.append((symbol, qty, price))
        return fitted

    def _order(
        self, symbol: str, delta: Decimal, price: Decimal, ts: int, seq: int, *, stamp: str | None
    ) -> SubmitOrder:
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
            client_order_id=self.client_order_id(ts, symbol, seq, stamp),
            symbol=symbol,
            side=OrderSide.BUY if buy else OrderSide.SELL,
            qty=abs(delta),
            order_type=order_type,
            ts=ts,
            limit_price=limit,
            time_in_force=self._tif,
        )
