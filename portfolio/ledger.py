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


class Ledger:
    """Positions, cash and P&L of one account.

    Attributes:
        cash: cash after fills and commissions.
        positions: open positions by symbol; a position closed to zero is removed.
        realized_pnl: total realized P&L (before commissions).
        commissions: total commissions paid.
        equity: cash + market value of positions at the last prices.
        high_water: the highest equity seen (start cash initially).
        drawdown: (high_water - equity) / high_water, in [0, 1].
        gross_exposure: sum of |qty * last_price|.
        net_exposure: sum of qty * last_price.
    """

    def __init__(self, start_cash: Decimal) -> None:
        self.start_cash = start_cash
        self.cash = start_cash
        self.positions: dict[str, Position] = {}
        self.realized_pnl = _ZERO
        self.commissions = _ZERO
        self.equity = start_cash
        self.high_water = start_cash
        self.drawdown = 0.0
        self.gross_exposure = _ZERO
        self.net_exposure = _ZERO
        self._applied: set[str] = set()
        # Per held symbol: the last float mark (to skip unchanged prices without converting)
        # and the signed market value, so a mark updates the sums by differences.
        self._marks: dict[str, float] = {}
        self._values: dict[str, Decimal] = {}

    def apply_fill(self, fill: Fill) -> bool:
        """Book one fill (full or partial).

        Returns:
            False, changing nothing, if a fill with this execution_id was applied before.
        """
        if fill.execution_id in self._applied:
            return False
        self._applied.add(fill.execution_id)
        qty = fill.qty if fill.side is OrderSide.BUY else -fill.qty
        price = fill.price
        self.cash -= qty * price + fill.commission
        self.commissions += fill.commission

        pos = self.positions.get(fill.symbol)
        if pos is None:
            self.positions[fill.symbol] = Position(
                symbol=fill.symbol, qty=qty, avg_cost=price, realized_pnl=_ZERO, last_price=price
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
                del self.positions[fill.symbol]
        self._marks.pop(fill.symbol, None)
        self._set_value(fill.symbol)
        self._update_equity()
        return True

    def mark(self, prices: Mapping[str, float]) -> None:
        """Mark held positions to the slice's closes and update equity, high water, drawdown.

        Hot: once per slice. `prices` holds only symbols that printed; others keep their mark.
        Only held symbols whose price changed are converted to Decimal.
        """
        marks = self._marks
        values = self._values
        net = self.net_exposure
        gross = self.gross_exposure
        changed = False
        for symbol, pos in self.positions.items():
            px = prices.get(symbol)
            if px is None or px == marks.get(symbol):
                continue
            marks[symbol] = px
            last = Decimal(repr(px))
            pos.last_price = last
            value = pos.qty * last
            old = values[symbol]
            values[symbol] = value
            net += value - old
            gross += abs(value) - abs(old)
            changed = True
        if changed:
            self.net_exposure = net
            self.gross_exposure = gross
            self._update_equity()

    def _set_value(self, symbol: str) -> None:
        """Re-derive one symbol's market value (after a fill) and the exposure sums."""
        old = self._values.pop(symbol, _ZERO)
        pos = self.positions.get(symbol)
        value = _ZERO if pos is None else pos.qty * pos.last_price
        if pos is not None:
            self._values[symbol] = value
        self.net_exposure += value - old
        self.gross_exposure += abs(value) - abs(old)

    def _update_equity(self) -> None:
        equity = self.cash + self.net_exposure
        self.equity = equity
        hwm = self.high_water
        if equity > hwm:
            self.high_water = hwm = equity
        self.drawdown = min(1.0, float((hwm - equity) / hwm)) if hwm > 0 else 0.0

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
