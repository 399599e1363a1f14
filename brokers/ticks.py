"""US equity price increments, shared by everything that prices an order."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
SUB_DOLLAR_TICK = Decimal("0.0001")
_ONE = Decimal(1)


def tick_size(price: Decimal) -> Decimal:
    """The US equity tick for `price`: $0.01 at or above $1, $0.0001 below (Reg NMS 612)."""
    return CENT if price >= _ONE else SUB_DOLLAR_TICK


def round_to_tick(price: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Round `price` to its tick with the given `decimal` rounding mode (nearest by default)."""
    return price.quantize(tick_size(price), rounding=rounding)
