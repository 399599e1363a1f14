"""The book's gross exposure in floats, kept across one rebalance's risk checks.

The risk gate's `max_gross` rule sums |held + open quantity| x price over every other symbol,
in Decimal, for every order: orders x symbols per slice. `Exposure` keeps that sum in floats
for one rebalance (the prices and the ledger do not change while its orders are checked; the
engine tells it of each order it submits), with a bound of its error, so that the gate can
settle "the order surely fits" in O(1) and take the exact Decimal sum only near the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from portfolio.ledger import Ledger

# Twice the unit roundoff of a float: each float below is within a few of these (relative) of
# its Decimal; the error bound counts them generously.
_ULP = 2.0**-52
# Within this (relative) of the limit, the exact sum decides.
_SLACK = 1e-12


class Exposure:
    """Sum over symbols of |held + open quantity| x price, in floats, with an error bound.

    Prices are `prices` or, for a held symbol without one, its last mark (as the gate prices
    other symbols). A symbol with open orders and no price at all makes the sum unknown.

    Args:
        ledger: the held positions (not changed while this lives).
        prices: the last closes (not changed while this lives).
        open_qty: the order book's live view of open quantities; call `refresh(symbol)` after
            each change to a symbol's open quantity.
    """

    def __init__(
        self, ledger: Ledger, prices: Mapping[str, float], open_qty: Mapping[str, Decimal]
    ) -> None:
        self._ledger = ledger
        self._prices = prices
        self._open_qty = open_qty
        self._terms: dict[str, float] = {}
        self._unpriced: set[str] = set()
        self._total = 0.0
        self._magnitude = 0.0  # sum of (|held| + |open|) x price: bounds every partial sum
        self._ops = 0
        for symbol in ledger.positions:
            self._add(symbol)
        for symbol in open_qty:
            if symbol not in ledger.positions:
                self._add(symbol)

    def refresh(self, symbol: str) -> None:
        """Take `symbol`'s open quantity anew (after an order of it was submitted)."""
        self._total -= self._terms.pop(symbol, 0.0)
        self._unpriced.discard(symbol)
        self._add(symbol)

    def surely_within(self, symbol: str, own_f: float, limit_f: float) -> bool:
        """Whether the gross of every other symbol plus `own_f` is surely at most `limit_f`.

        Args:
            own_f: what the checked symbol adds after the order (its signed position after
                the order x its price, as the gate's rule has it), in floats.
            limit_f: max_gross x equity, in floats.

        Returns:
            True only when even the float sum's error bound leaves it below the limit by a
            margin of 1e-12 of the magnitudes; False when unsure (or a price is missing).
        """
        if self._unpriced and (len(self._unpriced) > 1 or symbol not in self._unpriced):
            return False
        others = self._total - self._terms.get(symbol, 0.0)
        count = len(self._terms) + self._ops + 8
        error = count * _ULP * self._magnitude + _SLACK * (abs(others) + abs(own_f) + limit_f)
        return others + own_f + error < limit_f

    def _add(self, symbol: str) -> None:
        ledger = self._ledger
        pos = ledger.positions.get(symbol)
        held_f = ledger.qty_float.get(symbol, 0.0)
        pending = self._open_qty.get(symbol)
        pending_f = 0.0 if pending is None else float(pending)
        if pos is None and pending is None:
            return
        px = self._prices.get(symbol)
        if px is None:
            if pos is None:
                self._unpriced.add(symbol)
                return
            px = float(pos.last_price)
        term = abs((held_f + pending_f) * px)
        self._terms[symbol] = term
        self._total += term
        self._magnitude += (abs(held_f) + abs(pending_f)) * abs(px)
        self._ops += 1
