"""The market regime of a reference symbol: trend (up/down) crossed with volatility (low/high).

Per bar of the reference symbol (HOT, O(log vol_history) compares plus one short memmove):
  trend:  up when close / close[trend_lookback bars ago] - 1 >= 0, else down;
  vol:    realized vol = population std of the last `vol_lookback` log returns; high when it
          is above (by more than a relative 1e-9) the `vol_percentile` quantile (lower
          nearest rank: sorted[int(q * (n - 1))]) of the last `vol_history` realized vols,
          itself included;
  dwell:  a newly classified regime takes effect once it was classified on `min_dwell`
          consecutive bars; until then the current regime (or None) stays.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

from composer.indicators import Lag, RollingMeanStd
from composer.settings import RegimeSettings
from feeds.bar import Bar

_log = math.log
_ABOVE = 1.0 + 1e-9


class RegimeDetector:
    """Classifies the regime from the bars of `settings.symbol`.

    Attributes:
        regime: the regime in effect, one of `composer.settings.REGIMES`, or None before the
            first one has persisted for `min_dwell` bars.
        history: (ts of the bar it took effect at, label) per change, oldest first.
        raw: the regime the last bar classified, before the dwell time (None while warming up).
    """

    __slots__ = (
        "_count",
        "_lag",
        "_last_close",
        "_min_dwell",
        "_pending",
        "_q",
        "_sorted",
        "_vol",
        "_vol_fifo",
        "_vol_history",
        "_warmup",
        "history",
        "raw",
        "regime",
        "symbol",
    )

    def __init__(self, settings: RegimeSettings) -> None:
        self.symbol = settings.symbol
        self._warmup = max(
            settings.trend_lookback + 1, settings.vol_lookback + settings.vol_history
        )
        self._lag = Lag(settings.trend_lookback)
        self._vol = RollingMeanStd(settings.vol_lookback)
        self._vol_history = settings.vol_history
        self._q = settings.vol_percentile
        self._min_dwell = settings.min_dwell
        self._sorted: list[float] = []
        self._vol_fifo: deque[float] = deque()
        self._last_close = 0.0
        self._pending: str | None = None
        self._count = 0
        self.regime: str | None = None
        self.raw: str | None = None
        self.history: list[tuple[int, str]] = []

    @property
    def warmup_bars(self) -> int:
        """Bars until the percentile history is full (the first regime can come earlier)."""
        return self._warmup

    def on_bar(self, bar: Bar) -> None:
        """Take one bar of the reference symbol (HOT)."""
        close = bar[5]
        last = self._last_close
        self._last_close = close
        lag = self._lag
        lag.update(close)
        if not (last > 0.0 and close > 0.0):
            return
        vol = self._vol
        vol.update(_log(close / last))
        if not (vol.ready and lag.ready):
            return
        v = vol.std
        ordered = self._sorted
        fifo = self._vol_fifo
        fifo.append(v)
        bisect.insort(ordered, v)
        if len(fifo) > self._vol_history:
            del ordered[bisect.bisect_left(ordered, fifo.popleft())]
        # "Above" by more than rounding: a constant vol recomputed each bar wobbles by ulps.
        high = v > ordered[int(self._q * (len(ordered) - 1))] * _ABOVE
        up = close >= lag.value
        raw = ("up" if up else "down") + ("_high_vol" if high else "_low_vol")
        self.raw = raw
        if raw == self.regime:
            self._pending = None
            return
        if raw == self._pending:
            self._count += 1
        else:
            self._pending = raw
            self._count = 1
        if self._count >= self._min_dwell:
            self.regime = raw
            self._pending = None
            self.history.append((bar[1], raw))
