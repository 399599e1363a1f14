"""Volatility targeting: the factor that scales composed weights toward a target annual vol."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from composer.returns import SymbolReturns
from composer.settings import VolTargetSettings
from feeds.bar import Bar


class VolTarget:
    """Keeps each symbol's recent returns (per bar, HOT) and scales weights at a rebalance.

    Args:
        settings: the `composer.vol_target:` settings.
        symbols: the universe.
    """

    __slots__ = ("_annual_vol", "_per_year", "_returns", "on_bar", "warmup_bars")

    def __init__(self, settings: VolTargetSettings, symbols: Sequence[str]) -> None:
        self._annual_vol = settings.annual_vol
        self._per_year = settings.periods_per_year
        self._returns = SymbolReturns(symbols, settings.lookback)
        self.on_bar: Callable[[Bar], None] = self._returns.on_bar
        """Take one bar (HOT)."""
        self.warmup_bars = settings.lookback + 1

    def annual_vol(self, weights: Mapping[str, float]) -> float | None:
        """The annualized vol of `weights` over the window; None until every weighted symbol
        has a full window."""
        held = [s for s, w in weights.items() if w != 0.0]
        if not held:
            return 0.0
        returns = self._returns
        if not returns.ready(held):
            return None
        w = np.array([weights[s] for s in held])
        x = returns.matrix(held)
        cov = np.atleast_2d(np.cov(x, rowvar=False, ddof=0))
        var = max(float(w @ cov @ w), 0.0)
        return math.sqrt(var * self._per_year)

    def scale(self, weights: Mapping[str, float]) -> float:
        """target / realized annual vol of `weights`: inf when that vol is zero, 1.0 when it
        is not known yet (or nothing is held). The caller caps the scaled gross."""
        vol = self.annual_vol(weights)
        if vol is None:
            return 1.0
        if vol == 0.0:
            return 1.0 if not any(weights.values()) else math.inf
        return self._annual_vol / vol
