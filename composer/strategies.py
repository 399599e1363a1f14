"""The built-in strategies: sma_cross, momentum, mean_reversion, breakout.

Each keeps one small state object per symbol (its indicators and position), so `on_bar` is one
dict lookup and a few float operations. Signals are in [-1, 1] and stay 0.0 until the indicators
are ready. With `allow_short` False (the default), a bearish state reads 0.0 instead of -1.0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from composer.indicators import Lag, RollingMax, RollingMeanStd, RollingMin
from composer.strategy import Strategy, strategy
from feeds.bar import Bar
from feeds.limits import MAX_WINDOW_BARS


class StrategyParams(BaseModel):
    """Params every built-in shares.

    Attributes:
        allow_short: when False, a bearish state gives 0.0 instead of -1.0.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    allow_short: bool = False


# --------------------------------------------------------------------------- sma_cross


class SmaCrossParams(StrategyParams):
    fast: int = Field(
        default=10, ge=1, le=MAX_WINDOW_BARS, description="bars in the fast SMA of closes"
    )
    slow: int = Field(
        default=30, ge=2, le=MAX_WINDOW_BARS, description="bars in the slow SMA of closes"
    )

    @model_validator(mode="after")
    def _fast_below_slow(self) -> SmaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be less than slow ({self.slow})")
        return self


class _SmaCrossState:
    """Both SMAs over one ring buffer of the last `slow` closes (one update, not two).

    The close leaving the fast window is the one `fast` slots behind the write position. Both
    sums are recomputed exactly when the buffer wraps, so drift stays bounded.
    """

    __slots__ = ("buf", "count", "i", "sum_fast", "sum_slow")

    def __init__(self, slow: int) -> None:
        self.buf = [0.0] * slow
        self.i = 0
        self.count = 0
        self.sum_fast = 0.0
        self.sum_slow = 0.0


@strategy("sma_cross", params=SmaCrossParams)
class SmaCross(Strategy[SmaCrossParams]):
    """Long (+1) while the fast SMA of closes is above the slow one, else bearish."""

    def __init__(self, params: SmaCrossParams, symbols: Sequence[str]) -> None:
        super().__init__(params, symbols)
        self._bear = -1.0 if params.allow_short else 0.0
        self._fast = params.fast
        self._slow = params.slow
        self._inv_fast = 1.0 / params.fast
        self._inv_slow = 1.0 / params.slow
        self._states = {s: _SmaCrossState(params.slow) for s in self.symbols}

    @property
    def warmup_bars(self) -> int:
        return self.params.slow

    def on_bar(self, bar: Bar) -> None:
        # Bar is a NamedTuple: indexing is cheaper than its named attributes on this path.
        symbol = bar[0]
        close = bar[5]
        st = self._states[symbol]
        buf = st.buf
        i = st.i
        slow = self._slow
        j = i - self._fast
        if j < 0:
            j += slow
        sum_fast = st.sum_fast + close - buf[j]
        sum_slow = st.sum_slow + close - buf[i]
        buf[i] = close
        i += 1
        if i == slow:
            i = 0
            sum_slow = math.fsum(buf)
            sum_fast = math.fsum(buf[slow - self._fast :])
        st.i = i
        st.sum_fast = sum_fast
        st.sum_slow = sum_slow
        count = st.count
        if count < slow:
            count += 1
            st.count = count
            if count < slow:
                return
        self.signals[symbol] = (
            1.0 if sum_fast * self._inv_fast > sum_slow * self._inv_slow else self._bear
        )


# --------------------------------------------------------------------------- momentum


class MomentumParams(StrategyParams):
    lookback: int = Field(
        default=20, ge=1, le=MAX_WINDOW_BARS, description="bars back to compare the close with"
    )
    threshold: float = Field(
        default=0.0,
        ge=0.0,
        allow_inf_nan=False,
        description="return beyond which the signal is set",
    )


@strategy("momentum", params=MomentumParams)
class Momentum(Strategy[MomentumParams]):
    """r = close / close `lookback` bars ago - 1: +1 if r > threshold, bearish if r < -threshold,
    else 0."""

    def __init__(self, params: MomentumParams, symbols: Sequence[str]) -> None:
        super().__init__(params, symbols)
        self._bear = -1.0 if params.allow_short else 0.0
        self._threshold = params.threshold
        self._lags = {s: Lag(params.lookback) for s in self.symbols}

    @property
    def warmup_bars(self) -> int:
        return self.params.lookback + 1

    def on_bar(self, bar: Bar) -> None:
        symbol = bar[0]
        close = bar[5]
        lag = self._lags[symbol]
        lag.update(close)
        if lag.ready:
            past = lag.value
            if past <= 0.0:  # no return is defined against a non-positive price
                self.signals[symbol] = 0.0
                return
            r = close / past - 1.0
            th = self._threshold
            self.signals[symbol] = 1.0 if r > th else (self._bear if r < -th else 0.0)


# --------------------------------------------------------------------------- mean_reversion


class MeanReversionParams(StrategyParams):
    window: int = Field(
        default=20,
        ge=2,
        le=MAX_WINDOW_BARS,
        description="closes in the rolling mean and std (this one too)",
    )
    entry_z: float = Field(
        default=2.0, gt=0.0, allow_inf_nan=False, description="|z| beyond which a position opens"
    )
    exit_z: float = Field(
        default=0.5, ge=0.0, allow_inf_nan=False, description="|z| within which a position closes"
    )

    @model_validator(mode="after")
    def _exit_below_entry(self) -> MeanReversionParams:
        if self.exit_z >= self.entry_z:
            raise ValueError(f"exit_z ({self.exit_z}) must be less than entry_z ({self.entry_z})")
        return self


class _MeanReversionState:
    __slots__ = ("pos", "stats")

    def __init__(self, window: int) -> None:
        self.stats = RollingMeanStd(window)
        self.pos = 0  # -1 short, 0 flat, +1 long


@strategy("mean_reversion", params=MeanReversionParams)
class MeanReversion(Strategy[MeanReversionParams]):
    """Fade z-score extremes of the close against its rolling mean and std.

    flat -> long when z < -entry_z; long -> flat when z >= -exit_z; flat -> short when
    z > entry_z (only with allow_short); short -> flat when z <= exit_z. An exit and an entry can
    happen on the same bar (a long whose z jumps above entry_z goes short, or flat without
    allow_short). A zero std gives z = 0.
    """

    def __init__(self, params: MeanReversionParams, symbols: Sequence[str]) -> None:
        super().__init__(params, symbols)
        self._allow_short = params.allow_short
        self._entry = params.entry_z
        self._exit = params.exit_z
        self._states = {s: _MeanReversionState(params.window) for s in self.symbols}

    @property
    def warmup_bars(self) -> int:
        return self.params.window

    def on_bar(self, bar: Bar) -> None:
        symbol = bar[0]
        close = bar[5]
        st = self._states[symbol]
        stats = st.stats
        stats.update(close)
        if not stats.ready:
            return
        std = stats.std
        z = (close - stats.mean) / std if std > 0.0 else 0.0
        pos = st.pos
        if pos == 1:
            if z >= -self._exit:
                pos = 0
        elif pos == -1 and z <= self._exit:
            pos = 0
        if pos == 0:
            if z < -self._entry:
                pos = 1
            elif z > self._entry and self._allow_short:
                pos = -1
        st.pos = pos
        self.signals[symbol] = float(pos)


# --------------------------------------------------------------------------- breakout


class BreakoutParams(StrategyParams):
    entry: int = Field(
        default=20,
        ge=1,
        le=MAX_WINDOW_BARS,
        description="bars of the channel a close must break to enter",
    )
    exit: int = Field(
        default=10,
        ge=1,
        le=MAX_WINDOW_BARS,
        description="bars of the channel a close must break to exit",
    )


class _BreakoutState:
    __slots__ = ("entry_hi", "entry_lo", "exit_hi", "exit_lo", "pos")

    def __init__(self, entry: int, exit_: int, allow_short: bool) -> None:
        self.entry_hi = RollingMax(entry)
        self.exit_lo = RollingMin(exit_)
        # The short side's channels are only kept when shorts are allowed: half the work.
        self.entry_lo = RollingMin(entry) if allow_short else None
        self.exit_hi = RollingMax(exit_) if allow_short else None
        self.pos = 0


@strategy("breakout", params=BreakoutParams)
class Breakout(Strategy[BreakoutParams]):
    """Donchian channel breakout on the previous bars' highs and lows (this bar excluded).

    flat/short -> long when close > the highest high of the previous `entry` bars; long -> flat
    when close < the lowest low of the previous `exit` bars. With allow_short, symmetric:
    flat/long -> short when close < the lowest low of the previous `entry` bars; short -> flat
    when close > the highest high of the previous `exit` bars. An entry takes precedence over
    an exit on the same bar.
    """

    def __init__(self, params: BreakoutParams, symbols: Sequence[str]) -> None:
        super().__init__(params, symbols)
        self._states = {
            s: _BreakoutState(params.entry, params.exit, params.allow_short) for s in self.symbols
        }

    @property
    def warmup_bars(self) -> int:
        # The channels cover the previous bars, so the first decision is on the bar after them.
        return max(self.params.entry, self.params.exit) + 1

    def on_bar(self, bar: Bar) -> None:
        symbol, _, _, high, low, close, _, _, _ = bar
        st = self._states[symbol]
        entry_hi = st.entry_hi
        exit_lo = st.exit_lo
        entry_lo = st.entry_lo
        exit_hi = st.exit_hi
        # Decide on the channels of the previous bars, then add this bar to them.
        if entry_hi.ready and exit_lo.ready:
            pos = st.pos
            if close > entry_hi.value:
                pos = 1
            elif entry_lo is not None and close < entry_lo.value:
                pos = -1
            elif pos == 1:
                if close < exit_lo.value:
                    pos = 0
            elif pos == -1 and exit_hi is not None and close > exit_hi.value:
                pos = 0
            st.pos = pos
            self.signals[symbol] = float(pos)
        entry_hi.update(high)
        exit_lo.update(low)
        if entry_lo is not None and exit_hi is not None:
            entry_lo.update(low)
            exit_hi.update(high)


BUILTIN_STRATEGIES: tuple[type[Strategy[Any]], ...] = (Breakout, MeanReversion, Momentum, SmaCross)
"""The built-in strategy classes, collected by `composer.registry.load_registry`."""
