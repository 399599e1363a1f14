"""The Bar: one OHLCV interval of one symbol, stamped by its start."""

from __future__ import annotations

from dataclasses import dataclass

NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND
NS_PER_DAY = 86_400 * NS_PER_SECOND


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One bar. Prices and volume are float (market data); the ledger converts to Decimal.

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
