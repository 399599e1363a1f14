"""Bars and a constant-signal strategy for the composer tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from composer.strategy import Strategy, strategy
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


class NoParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@strategy("fixed", params=NoParams)
class Fixed(Strategy[NoParams]):
    """Constant signals."""

    def __init__(self, symbols: Sequence[str], signals: Mapping[str, float]) -> None:
        super().__init__(NoParams(), symbols)
        self.signals.update(signals)

    @property
    def warmup_bars(self) -> int:
        return 0

    def on_bar(self, bar: Bar) -> None:
        pass
