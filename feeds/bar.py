"""The Bar: one OHLCV interval of one symbol, stamped by its start."""

from __future__ import annotations

from typing import NamedTuple

NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND
NS_PER_DAY = 86_400 * NS_PER_SECOND


class Bar(NamedTuple):
    """One bar. Prices and volume are float (market data); the ledger converts to Decimal.

    A NamedTuple rather than a frozen dataclass: it is just as immutable, and a replay creates
    one per row, where a frozen dataclass's `__init__` alone costs about ten times as much.
    Hot code may unpack it (`symbol, ts, o, h, low, c, v, n, vw = bar`).

    Attributes:
        symbol: the instrument, as the broker names it (``SPY``).
        ts: start of the interval, UTC nanoseconds since the epoch (Alpaca's convention).
        trade_count: number of trades in the interval, when the source has it.
        vwap: volume-weighted average price, when the source has it.
    """

    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trade_count: int | None = None
    vwap: float | None = None
