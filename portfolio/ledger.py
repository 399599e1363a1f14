"""The ledger: cash, positions, P&L and exposure, from fills and the slices' closes.

Quantities, cash and fill prices are Decimal; market prices arrive as float and are converted
only for held symbols. Average cost is the weighted cost of the open quantity; realized P&L is
booked when a position is reduced, closed or flipped through zero (the flip opens the new side at
the fill price). Commissions reduce cash and are tracked apart, not in realized P&L.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from brokers.orders import Fill, OrderSide

_ZERO = Decimal(0)
# Sound while gross exposure stays below ~1e6 x the high water (far beyond any real leverage).
_MIRROR_MARGIN = 1e-9
_ULP = 2.0**-52  # twice the unit roundoff of a float


@dataclass(slots=True)
class Position:
    """One open position.

    Attributes:
        qty: signed quantity (+ long, - short), never zero while in the ledger.
        avg_cost: average price of the open quantity.
        realized_pnl: P&L booked on this symbol since the position was opened (flips keep it).
        last_price: the latest mark (or the last fill price before the first mark).
    """

    symbol: str
    qty: Decimal
    avg_cost: Decimal
    realized_pnl: Decimal
    last_price: Decimal


# Execution ids the ledger remembers. Live, every fill is looked up in the journal's fill table
# before it reaches the ledger; a replay's broker reports each fill once.
APPLIED_KEPT = 20_000


class Ledger:
    """Positions, cash and P&L of one account.

    Money is Decimal and exact. Marking is hot (once per slice), so `mark` works on a float
    mirror: it converts a changed price to Decimal through a small cache (minute closes repeat
    on the cent grid) and leaves the Decimal sums (`equity`, `net_exposure`,
    `gross_exposure`) to be computed exactly on first read. The high-water mark stays exact: the
    float mirror only rules out a new high; a possible one is decided in Decimal.

    Attributes:
        cash: cash after fills and commissions.
        positions: open positions by symbol; a position closed to zero is removed.
        realized_pnl: total realized P&L (before commissions).
        commissions: total commissions paid.
        equity: cash + market value of positions at the last prices (Decimal, exact).
        high_water: the highest equity seen (start cash initially), exact.
        drawdown: (high_water - equity) / high_water, in [0, 1], from the float mirror.
        gross_exposure: sum of |qty * last_price|.
        net_exposure: sum of qty * last_price.
        equity_float: float mirror of `equity` (approximate; for hot-path tests only).
        qty_float: float mirror of each held position's quantity (read-only for callers).
    """

    # Beyond this many cached price conversions the cache starts over (bounded memory).
    _PRICE_CACHE_MAX = 65_536

    def __init__(self, start_cash: Decimal) -> None:
        self.start_cash = start_cash
        self.cash = start_cash
        self.positions: dict[str, Position] = {}
        self.realized_pnl = _ZERO
        self.commissions = _ZERO
        self.high_water = start_cash
        self.drawdown = 0.0
        self.equity_float = float(start_cash)
        # Float mirror of the gross exposure, summed with the equity mirror (same pass).
        self._gross_f = 0.0
        self.qty_float: dict[str, float] = {}
        # The last execution ids applied, oldest first (a second line against duplicates: the
        # journal is the source of truth for them, so months of fills are not all kept here).
        self._applied: dict[str, None] = {}
        self._cash_f = self.equity_float
        self._high_water_f = self.equity_float
        # The float mirror's error is ~1e-16 of the gross value: further than this margin below
        # the high water, equity cannot be a new high; closer, it is decided in Decimal.
        self._high_water_margin = abs(self.equity_float) * _MIRROR_MARGIN
        # Per held symbol: [position, float qty, float mark, last converted float (or None)].
        self._held: dict[str, list[Any]] = {}
        self._decimals: dict[float, Decimal] = {}
        # The exact sums, valid while not _stale.
        self._equity = start_cash
        self._net = _ZERO
        self._gross = _ZERO
        self._stale = False

    @property
    def equity(self) -> Decimal:
        """Cash + market value of positions at the last prices (exact)."""
        if self._stale:
            self._refresh()
        return self._equity

    @property
    def net_exposure(self) -> Decimal:
        """Sum of qty * last_price (exact)."""
        if self._stale:
            self._refresh()
        return self._net

    @property
    def gross_exposure(self) -> Decimal:
        """Sum of |qty * last_price| (exact)."""
        if self._stale:
            self._refresh()
        return self._gross

    def _refresh(self) -> None:
        net = _ZERO
        gross = _ZERO
        for pos in self.positions.values():
            value = pos.qty * pos.last_price
            net += value
            gross += abs(value)
        self._net = net
        self._gross = gross
        self._equity = self.cash + net
        self._stale = False

    def apply_fill(self, fill: Fill) -> bool:
        """Book one fill (full or partial).

        Returns:
            False, changing nothing, if a fill with this execution_id was applied before (one
            of the last `APPLIED_KEPT`: older duplicates are the journal's to catch).
        """
        applied = self._applied
        if fill.execution_id in applied:
            return False
        applied[fill.execution_id] = None
        if len(applied) > APPLIED_KEPT:
            del applied[next(iter(applied))]
        qty = fill.qty if fill.side is OrderSide.BUY else -fill.qty
        price = fill.price
        self.cash -= qty * price + fill.commission
        self.commissions += fill.commission

        symbol = fill.symbol
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position(
                symbol=symbol, qty=qty, avg_cost=price, realized_pnl=_ZERO, last_price=price
            )
        else:
            old = pos.qty
            new = old + qty
            if (old > 0) == (qty > 0):
                # Adding to the position: the cost is the weighted average.
                pos.avg_cost = (old * pos.avg_cost + qty * price) / new
            else:
                closed = min(abs(qty), abs(old))
                pnl = (
                    closed * (price - pos.avg_cost) if old > 0 else closed * (pos.avg_cost - price)
                )
                pos.realized_pnl += pnl
                self.realized_pnl += pnl
                if new and (new > 0) != (old > 0):
                    pos.avg_cost = price  # flipped through zero: the rest opens at this price
            pos.qty = new
            pos.last_price = price
            if not new:
                del self.positions[symbol]
        self._cash_f = float(self.cash)
        if symbol in self.positions:
            qty_f = float(pos.qty)
            self.qty_float[symbol] = qty_f
            # No converted mark yet (None): the next mark converts its price even if equal.
            self._held[symbol] = [pos, qty_f, float(price), None]
        else:
            self.qty_float.pop(symbol, None)
            self._held.pop(symbol, None)
        self._stale = True
        self._update_equity()
        return True

    def adopt(
        self,
        cash: Decimal,
        positions: Mapping[str, tuple[Decimal, Decimal, Decimal]],
        *,
        restart: bool = False,
    ) -> list[str]:
        """Take the broker's account as the truth: its cash and its positions.

        Args:
            positions: symbol -> (signed qty, average entry price, last price).
            restart: this is the start of a session: equity becomes the start and the high water
                (drawdown restarts at zero) rather than carrying on.

        Returns:
            What differed from this ledger before, one line each (nothing when they agreed).
        """
        differences: list[str] = []
        if cash != self.cash:
            differences.append(f"cash {self.cash} -> {cash}")
        for symbol in sorted(set(self.positions) | set(positions)):
            mine = self.positions[symbol].qty if symbol in self.positions else _ZERO
            theirs = positions[symbol][0] if symbol in positions else _ZERO
            if mine != theirs:
                differences.append(f"{symbol} qty {mine} -> {theirs}")
        self.cash = cash
        self._cash_f = float(cash)
        realized = {s: p.realized_pnl for s, p in self.positions.items()}
        self.positions = {}
        self.qty_float = {}
        self._held = {}
        for symbol, (qty, avg_cost, last_price) in positions.items():
            if not qty:
                continue
            pos = self.positions[symbol] = Position(
                symbol=symbol,
                qty=qty,
                avg_cost=avg_cost,
                realized_pnl=realized.get(symbol, _ZERO),
                last_price=last_price,
            )
            qty_f = float(qty)
            self.qty_float[symbol] = qty_f
            self._held[symbol] = [pos, qty_f, float(last_price), None]
        self._stale = True
        if restart:
            self.start_cash = self.equity
            self.rebase_high_water()
        self._update_equity()
        return differences

    def restore_high_water(self, high_water: Decimal) -> None:
        """Carry a high-water mark over a restart (never below the equity now)."""
        self.high_water = max(high_water, self.equity)
        self._high_water_f = float(self.high_water)
        self._high_water_margin = abs(self._high_water_f) * _MIRROR_MARGIN
        self._set_drawdown(self.equity_float)

    def rebase_high_water(self) -> None:
        """Make the current equity the high-water mark: drawdown counts from here."""
        self.high_water = self.equity
        self._high_water_f = float(self.high_water)
        self._high_water_margin = abs(self._high_water_f) * _MIRROR_MARGIN
        self.drawdown = 0.0

    def mark(self, prices: Mapping[str, float]) -> None:
        """Mark held positions to the slice's closes and update equity, high water, drawdown.

        Hot: once per slice. `prices` holds only symbols that printed; others keep their mark.
        Only held symbols whose price changed are converted to Decimal (through the cache).
        """
        cache = self._decimals
        changed = False
        get = prices.get
        equity_f = self._cash_f
        gross_f = 0.0
        # One pass: convert changed prices and sum the float mirrors (no method calls).
        for symbol, held in self._held.items():
            px = get(symbol)
            if px is not None and px != held[3]:
                held[2] = held[3] = px
                last = cache.get(px)
                if last is None:
                    if len(cache) >= self._PRICE_CACHE_MAX:
                        cache.clear()
                    last = cache[px] = Decimal(repr(px))
                held[0].last_price = last
                changed = True
            value = held[1] * held[2]
            equity_f += value
            gross_f += abs(value)
        if not changed:
            return
        self._stale = True
        self.equity_float = equity_f
        self._gross_f = gross_f
        hwm_f = self._high_water_f
        if equity_f >= hwm_f - self._high_water_margin:
            self._update_high_water(equity_f)
        elif hwm_f > 0.0:
            drawdown = (hwm_f - equity_f) / hwm_f
            self.drawdown = drawdown if drawdown < 1.0 else 1.0
        else:
            self.drawdown = 0.0

    def _update_equity(self) -> None:
        """Refresh the float mirror, drawdown and (exactly, when it may move) the high water."""
        equity_f = self._cash_f
        gross_f = 0.0
        for _pos, qty_f, px, _key in self._held.values():
            value = qty_f * px
            equity_f += value
            gross_f += abs(value)
        self.equity_float = equity_f
        self._gross_f = gross_f
        if equity_f >= self._high_water_f - self._high_water_margin:
            self._update_high_water(equity_f)
        else:
            self._set_drawdown(equity_f)

    def _update_high_water(self, equity_f: float) -> None:
        equity = self.equity
        if equity >= self.high_water:
            self.high_water = equity
            self._high_water_f = equity_f
            self._high_water_margin = abs(equity_f) * _MIRROR_MARGIN
            self.drawdown = 0.0
        else:
            self._set_drawdown(equity_f)

    def _set_drawdown(self, equity_f: float) -> None:
        hwm_f = self._high_water_f
        if hwm_f > 0.0:
            drawdown = (hwm_f - equity_f) / hwm_f
            self.drawdown = 1.0 if drawdown > 1.0 else (drawdown if drawdown > 0.0 else 0.0)
        else:
            self.drawdown = 0.0

    def equity_float_error(self) -> float:
        """An upper bound of |equity - equity_float| (floats only: O(positions), no Decimal).

        The mirror sums cash and each position's qty x price in floats, each term within
        ~3 ulp of its Decimal and the running sum within n ulp of the terms' magnitudes: the
        bound is twice (positions + 8) ulp of |cash| + gross.
        """
        return (abs(self._cash_f) + self._gross_f) * (len(self._held) + 8) * _ULP

    def gross_exposure_float(self) -> float:
        """Float mirror of `gross_exposure`, for per-slice reports (kept with the equity mirror)."""
        return self._gross_f

    def unrealized_pnl(self) -> Decimal:
        """Sum over positions of qty * (last_price - avg_cost)."""
        return sum(
            (p.qty * (p.last_price - p.avg_cost) for p in self.positions.values()), start=_ZERO
        )

    def weight(self, symbol: str) -> float:
        """Signed market value of `symbol` / equity; 0.0 if not held or equity is not positive."""
        pos = self.positions.get(symbol)
        if pos is None or self.equity <= 0:
            return 0.0
        return float(pos.qty * pos.last_price / self.equity)

    def snapshot(self) -> dict[str, Any]:
        """The ledger as JSON-friendly data (Decimals as strings)."""
        return {
            "cash": str(self.cash),
            "equity": str(self.equity),
            "realized_pnl": str(self.realized_pnl),
            "unrealized_pnl": str(self.unrealized_pnl()),
            "commissions": str(self.commissions),
            "high_water": str(self.high_water),
            "drawdown": self.drawdown,
            "gross_exposure": str(self.gross_exposure),
            "net_exposure": str(self.net_exposure),
            "positions": {
                symbol: {
                    "qty": str(p.qty),
                    "avg_cost": str(p.avg_cost),
                    "realized_pnl": str(p.realized_pnl),
                    "last_price": str(p.last_price),
                    "weight": self.weight(symbol),
                }
                for symbol, p in sorted(self.positions.items())
            },
        }
