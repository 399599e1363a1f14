"""Bounds on configured numbers that a real account and a real machine can meet.

The config models check them, so `tradingd check-config` refuses what a replay would choke on:
a window of 10^11 bars (a buffer that never fits in memory), cash beyond what Decimal's 28
digits can carry to the cent, a date outside what a ns timestamp can stamp.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

MAX_WINDOW_BARS = 100_000
"""The longest lookback or window of any indicator, strategy, composer or sanity check, in bars
(or slices): about 400 years of daily bars, 256 sessions of minute bars."""

MAX_LEVERAGE = 10.0
"""The most gross exposure, or exposure to one symbol, as a multiple of equity."""

MAX_MONEY = Decimal(10**12)
"""The largest amount of money a setting may name: cash, an order's notional, a commission."""

MONEY_PLACES = 2
"""Decimal places of an amount of money (cents)."""

MAX_BPS = 10_000.0
"""Basis points of a price (slippage, limit offset, commission): 100% at most, so that a price
moved by it stays at or above zero."""

MAX_SECONDS = 86_400.0
"""The longest timeout, grace or poll interval: a day."""

FIRST_DATE = dt.date(1900, 1, 1)
LAST_DATE = dt.date(2199, 12, 31)
"""The dates a run may start or end on: well inside the 1677-2262 span of int64 ns time."""


def check_money_places(value: Decimal) -> Decimal:
    """`value` if it has at most `MONEY_PLACES` decimal places.

    Raises:
        ValueError: more places than cents (the message says how to write it).
    """
    # Trailing zeros (100.000) are the same amount: only real sub-cent digits are refused.
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MONEY_PLACES:
        raise ValueError(
            f"{value} has more than {MONEY_PLACES} decimal places: give it to the cent"
        )
    return value


def check_date(value: dt.date | None) -> dt.date | None:
    """`value` if it lies within `FIRST_DATE`..`LAST_DATE` (None passes).

    Raises:
        ValueError: outside that span.
    """
    if value is not None and not FIRST_DATE <= value <= LAST_DATE:
        raise ValueError(f"must be from {FIRST_DATE} to {LAST_DATE}, got {value}")
    return value
