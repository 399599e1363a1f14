"""Bars for the composer tests."""

from __future__ import annotations

from collections.abc import Sequence

from feeds.bar import NS_PER_MINUTE, Bar


def bar(
    symbol: str, i: int, close: float, *, high: float | None = None, low: float | None = None
) -> Bar:
    """The i-th minute bar of `symbol` (ts = i minutes after the epoch)."""
    hi = close if high is None else high
    lo = close if low is None else low
    return Bar(
        symbol=symbol, ts=i * NS_PER_MINUTE, open=close, high=hi, low=lo, close=close, volume=1.0
    )


def bars(symbol: str, closes: Sequence[float]) -> list[Bar]:
    return [bar(symbol, i, c) for i, c in enumerate(closes)]
