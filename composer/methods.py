"""Composition methods: how capital is split between strategies and, within one, its symbols.

A method is a `composer.allocation.CompositionMethod`, built from the settings, the strategies
and the universe, chosen from the literal mapping `METHODS` keyed by `ComposerSettings.method`.
Adding one is a new class and one mapping entry (and its name in the `method` Literal of the
settings).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from operator import attrgetter, truediv
from types import MappingProxyType
from typing import Any, Final

import numpy as np

from composer.allocation import (
    Allocation,
    MethodFactory,
    equal_allocation,
    equal_split,
    strategy_symbols,
)
from composer.covariance import risk_parity_weights, shrunk_covariance
from composer.indicators import RollingMeanStd
from composer.regime import RegimeDetector
from composer.returns import PaperReturns, SymbolReturns
from composer.settings import (
    REGIMES,
    ComposerSettings,
    PerformanceSettings,
    RegimeSettings,
    RiskParitySettings,
)
from composer.strategy import Strategy
from feeds.bar import Bar
from feeds.errors import ConfigError

_log = math.log


class _FixedMethod:
    """A method whose allocation is decided once, at construction: it watches no bars."""

    warmup_bars = 0
    observes_bars = False
    observed_symbols: tuple[str, ...] = ()
    _allocation: Allocation

    def on_bar(self, bar: Bar) -> None:
        """Stateless: never called (observes_bars is False)."""

    def allocate(self, ts: int, signals: Mapping[str, Mapping[str, float]]) -> Allocation:
        return self._allocation


class EqualMethod(_FixedMethod):
    """Each of n strategies gets 1/n; each strategy splits equally over its symbols."""

    def __init__(
        self,
        settings: ComposerSettings,
        strategies: Mapping[str, Strategy[Any]],
        universe: Sequence[str],
    ) -> None:
        symbols_of = strategy_symbols(strategies)
        n = len(symbols_of)
        self._allocation = Allocation(dict.fromkeys(symbols_of, 1.0 / n), equal_split(symbols_of))


class StaticMethod(_FixedMethod):
    """Capital weights as configured in `strategy_weights` (missing: 0); equal split."""

    def __init__(
        self,
        settings: ComposerSettings,
        strategies: Mapping[str, Strategy[Any]],
        universe: Sequence[str],
    ) -> None:
        symbols_of = strategy_symbols(strategies)
        configured = settings.strategy_weights
        self._allocation = Allocation(
            {sid: float(configured.get(sid, 0.0)) for sid in symbols_of},
            equal_split(symbols_of),
        )


_READY = attrgetter("ready")
_STD = attrgetter("std")
_POSITIVE = (0.0).__lt__  # std is a float: never NotImplemented


class _VolState:
    __slots__ = ("last_close", "stats", "update")

    def __init__(self, lookback: int) -> None:
        self.last_close = 0.0
        self.stats = RollingMeanStd(lookback)
        self.update = self.stats.update  # bound once: on_bar calls it for every bar


class InverseVolMethod:
    """Each of n strategies gets 1/n; within one, symbols get shares proportional to 1/vol.

    vol is the population std of the last `vol_lookback` close-to-close log returns, kept
    incrementally per bar. A strategy splits equally until every one of its symbols has a full
    window. A zero vol counts as the smallest positive vol seen so far (at this or any earlier
    rebalance, over all symbols); if none was ever positive, the split is equal.
    """

    observes_bars = True

    def __init__(
        self,
        settings: ComposerSettings,
        strategies: Mapping[str, Strategy[Any]],
        universe: Sequence[str],
    ) -> None:
        symbols_of = strategy_symbols(strategies)
        lookback = settings.vol_lookback
        self.warmup_bars = lookback + 1  # n returns need n + 1 closes
        n = len(symbols_of)
        self._weights = dict.fromkeys(symbols_of, 1.0 / n)
        self._symbols_of = {sid: tuple(syms) for sid, syms in symbols_of.items()}
        self._equal = equal_split(symbols_of)
        self._states = {sym: _VolState(lookback) for syms in symbols_of.values() for sym in syms}
        self.observed_symbols = tuple(self._states)
        self._stats = tuple(st.stats for st in self._states.values())
        # Every strategy trades every symbol, in the same order (the common case).
        self._one_split = all(syms == self.observed_symbols for syms in self._symbols_of.values())
        self._min_positive_vol = math.inf

    def on_bar(self, bar: Bar) -> None:
        st = self._states.get(bar[0])
        if st is None:
            return
        close = bar[5]
        last = st.last_close
        if last > 0.0 and close > 0.0:
            st.update(_log(close / last))
        st.last_close = close

    def vol(self, symbol: str) -> float | None:
        """The current vol of `symbol`, or None until its window is full."""
        stats = self._states[symbol].stats
        return stats.std if stats.ready else None

    def allocate(self, ts: int, signals: Mapping[str, Mapping[str, float]]) -> Allocation:
        floor = self._min_positive_vol
        if all(map(_READY, self._stats)):
            # Every window full (the common case): the loop below's numbers, by C loops.
            return self._allocate_ready(floor)
        vols: dict[str, float] = {}
        for sym, st in self._states.items():
            stats = st.stats
            if stats.ready:
                v = stats.std
                vols[sym] = v
                if 0.0 < v < floor:
                    floor = v
        self._min_positive_vol = floor
        return self._split(vols, floor)

    def _allocate_ready(self, floor: float) -> Allocation:
        std = list(map(_STD, self._stats))
        floor = min(floor, min(filter(_POSITIVE, std), default=math.inf))
        self._min_positive_vol = floor
        if floor == math.inf:
            return Allocation(self._weights, self._equal)
        everyone = self.observed_symbols
        if not self._one_split:
            return self._split(dict(zip(everyone, std, strict=True)), floor)
        # One split, shared by every strategy (as `_split` shares it).
        if not all(map(_POSITIVE, std)):
            std = [v if v > 0.0 else floor for v in std]
        inverse = list(map(truediv, repeat(1.0), std))
        total = math.fsum(inverse)
        shared = dict(zip(everyone, map(truediv, inverse, repeat(total)), strict=True))
        return Allocation(self._weights, dict.fromkeys(self._symbols_of, shared))

    def _split(self, vols: Mapping[str, float], floor: float) -> Allocation:
        equal = self._equal
        if floor == math.inf:
            return Allocation(self._weights, equal)
        split: dict[str, dict[str, float]] = {}
        # Strategies over the same symbols (often all of them) share one split: the same
        # numbers, computed once (a Targets' dicts are never mutated).
        shares: dict[tuple[str, ...], dict[str, float]] = {}
        for sid, syms in self._symbols_of.items():
            shared = shares.get(syms)
            if shared is not None:
                split[sid] = shared
                continue
            inverse: dict[str, float] = {}
            for s in syms:
                vol = vols.get(s)
                if vol is None:  # not every symbol has a full window: split equally
                    split[sid] = equal[sid]
                    break
                inverse[s] = 1.0 / (vol if vol > 0.0 else floor)
            else:
                total = math.fsum(inverse.values())
                split[sid] = shares[syms] = {s: x / total for s, x in inverse.items()}
        return Allocation(self._weights, split)


class RiskParityMethod:
    """Equal risk contributions, from a rolling covariance with shrinkage (`risk_parity:`).

    across "symbols": each of n strategies gets 1/n; within one, its symbols get the long-only
    shares whose contributions to the variance of the strategy's capital are equal, from the
    covariance of the symbols' last `lookback` close-to-close returns. A strategy splits
    equally until each of its symbols has a full window.

    across "strategies": the capital weights are the equal-risk weights of the covariance of
    the strategies' paper returns (`composer.returns.PaperReturns`, one per slice); each
    strategy splits equally over its symbols. Equal weights until every strategy has a full
    window.

    The covariance is shrunk toward its diagonal; a singular one (a constant series, perfectly
    collinear returns with no shrinkage) falls back to inverse volatility.
    """

    observes_bars = True

    def __init__(
        self,
        settings: ComposerSettings,
        strategies: Mapping[str, Strategy[Any]],
        universe: Sequence[str],
    ) -> None:
        rp = settings.risk_parity or RiskParitySettings()
        self._shrinkage = rp.shrinkage
        self._symbols_of = strategy_symbols(strategies)
        self._last = equal_allocation(self._symbols_of)
        self._equal = self._last
        self._last_version = -1
        self.warmup_bars = rp.lookback + 1
        self.observed_symbols = tuple(
            dict.fromkeys(s for v in self._symbols_of.values() for s in v)
        )
        self._paper: PaperReturns | None = None
        self._returns: SymbolReturns | None = None
        self.on_bar: Callable[[Bar], None]
        if rp.across == "symbols":
            self._returns = SymbolReturns(self.observed_symbols, rp.lookback)
            self.on_bar = self._returns.on_bar
        else:
            self._paper = PaperReturns(strategies, rp.lookback)
            self.on_bar = self._paper.on_bar

    def allocate(self, ts: int, signals: Mapping[str, Mapping[str, float]]) -> Allocation:
        if self._returns is not None:
            return self._across_symbols(self._returns)
        assert self._paper is not None
        return self._across_strategies(self._paper)

    def _across_symbols(self, returns: SymbolReturns) -> Allocation:
        if returns.version == self._last_version:
            return self._last
        self._last_version = returns.version
        ready = [s for s in self.observed_symbols if returns.ready((s,))]
        if not ready:
            return self._last
        cov = shrunk_covariance(returns.matrix(ready), self._shrinkage)
        col = {s: k for k, s in enumerate(ready)}
        equal = self._equal.symbol_weights
        split: dict[str, dict[str, float]] = {}
        for sid, syms in self._symbols_of.items():
            if not all(s in col for s in syms):
                split[sid] = equal[sid]
                continue
            idx = [col[s] for s in syms]
            w = risk_parity_weights(cov[np.ix_(idx, idx)])
            split[sid] = dict(zip(syms, w.tolist(), strict=True))
        self._last = Allocation(self._equal.strategy_weights, split)
        return self._last

    def _across_strategies(self, paper: PaperReturns) -> Allocation:
        paper.flush()
        if paper.version == self._last_version:
            return self._last
        self._last_version = paper.version
        if not paper.ready():
            return self._last
        w = risk_parity_weights(shrunk_covariance(paper.matrix(), self._shrinkage))
        weights = dict(zip(self._symbols_of, w.tolist(), strict=True))
        self._last = Allocation(weights, self._equal.symbol_weights)
        return self._last


# A paper-return std at or below this is zero: the returns are constant.
_ZERO_STD = 1e-14


class PerformanceMethod:
    """Capital weights from each strategy's trailing risk-adjusted paper returns.

    At each rebalance (`allocate`), with s_i = mean / std of strategy i's last `lookback`
    paper returns (`composer.returns.PaperReturns`, one per slice):

        p_i = max(s_i, 0) / sum_j max(s_j, 0)      (all <= 0: p_i = 1/n; a zero std with a
                                                    positive mean ranks above any finite s)
        w_i = (1 - shrink) * p_i + shrink / n
        w   = w bounded to [floor, cap] with the excess spread over the others in proportion,
              so that sum(w) = 1

    Equal weights until every strategy has a full window. Symbols split equally.

    Raises:
        ConfigError: floor * n > 1 or cap * n < 1 (no weights can sum to 1).
    """

    observes_bars = True

    def __init__(
        self,
        settings: ComposerSettings,
        strategies: Mapping[str, Strategy[Any]],
        universe: Sequence[str],
    ) -> None:
        perf = settings.performance or PerformanceSettings()
        n = len(strategies)
        if perf.floor * n > 1.0:
            raise ConfigError(
                f"composer.performance.floor: {perf.floor} for each of {n} strategies is "
                "more than all the capital"
            )
        if perf.cap * n < 1.0:
            raise ConfigError(
                f"composer.performance.cap: {perf.cap} for each of {n} strategies cannot "
                "place all the capital"
            )
        self._perf = perf
        symbols_of = strategy_symbols(strategies)
        self._ids = tuple(symbols_of)
        self._last = equal_allocation(symbols_of)
        self._last_version = -1
        self._paper = PaperReturns(strategies, perf.lookback)
        self.on_bar: Callable[[Bar], None] = self._paper.on_bar
        self.observed_symbols = tuple(dict.fromkeys(s for v in symbols_of.values() for s in v))
        self.warmup_bars = perf.lookback + 1

    def allocate(self, ts: int, signals: Mapping[str, Mapping[str, float]]) -> Allocation:
        paper = self._paper
        paper.flush()
        if paper.version == self._last_version:
            return self._last
        self._last_version = paper.version
        if not paper.ready():
            return self._last
        weights = dict(zip(self._ids, self.weights(paper.matrix()), strict=True))
        if weights != self._last.strategy_weights:
            self._last = Allocation(weights, self._last.symbol_weights)
        return self._last

    def weights(self, returns: Any) -> list[float]:
        """The capital weights from a (periods x strategies) array of paper returns."""
        perf = self._perf
        mean = returns.mean(axis=0).tolist()
        std = returns.std(axis=0).tolist()
        n = len(mean)
        scores = [
            (m / sd if sd > _ZERO_STD else (math.inf if m > 0.0 else 0.0))
            for m, sd in zip(mean, std, strict=True)
        ]
        best = [max(x, 0.0) for x in scores]
        if math.inf in best:
            k = best.count(math.inf)
            p = [1.0 / k if x == math.inf else 0.0 for x in best]
        elif (total := math.fsum(best)) > 0.0:
            p = [x / total for x in best]
        else:
            p = [1.0 / n] * n
        shrink = perf.shrink
        w = [(1.0 - shrink) * x + shrink / n for x in p]
        return _bounded(w, perf.floor, perf.cap)


def _bounded(w: list[float], floor: float, cap: float) -> list[float]:
    """`w` (summing to 1) with each weight in [floor, cap], still summing to 1.

    Weights beyond a bound are fixed at it and the rest rescaled in proportion to fill the
    remainder, repeatedly (n rounds at most). Needs floor * n <= 1 <= cap * n.
    """
    n = len(w)
    fixed: dict[int, float] = {}
    out = list(w)
    for _ in range(n):
        free = [i for i in range(n) if i not in fixed]
        if not free:
            break
        rest = 1.0 - math.fsum(fixed.values())
        total = math.fsum(w[i] for i in free)
        for i in free:
            out[i] = w[i] * rest / total if total > 0.0 else rest / len(free)
        over = [i for i in free if out[i] > cap]
        under = [] if over else [i for i in free if out[i] < floor]
        if not over and not under:
            break
        for i in over:
            fixed[i] = out[i] = cap
        for i in under:
            fixed[i] = out[i] = floor
    return out


class RegimeMethod:
    """Capital weights from the table row of the current market regime (`regime:`).

    The regime comes from a `composer.regime.RegimeDetector` on the reference symbol. Before
    the first regime takes effect every strategy gets 1/n. Symbols split equally.

    Raises:
        ConfigError: no `regime:` settings; the reference symbol outside the universe; a
            table row naming an unknown strategy, or a regime without a row.
    """

    observes_bars = True

    def __init__(
        self,
        settings: ComposerSettings,
        strategies: Mapping[str, Strategy[Any]],
        universe: Sequence[str],
    ) -> None:
        rs: RegimeSettings | None = settings.regime
        if rs is None:
            raise ConfigError("composer.regime: required for method 'regime'")
        if rs.symbol not in universe:
            raise ConfigError(
                f"composer.regime.symbol: {rs.symbol} is not in the universe (symbols)"
            )
        for regime in REGIMES:
            if regime not in rs.table:
                raise ConfigError(f"composer.regime.table.{regime}: missing")
        for regime, row in rs.table.items():
            for sid in row:
                if sid not in strategies:
                    raise ConfigError(
                        f"composer.regime.table.{regime}.{sid}: no such strategy; "
                        f"strategies: {', '.join(strategies)}"
                    )
        symbols_of = strategy_symbols(strategies)
        self._initial = equal_allocation(symbols_of)
        split = self._initial.symbol_weights
        self._by_regime = {
            regime: Allocation({sid: float(row.get(sid, 0.0)) for sid in symbols_of}, split)
            for regime, row in rs.table.items()
        }
        self.detector = RegimeDetector(rs)
        self.observed_symbols = (rs.symbol,)
        # Only the reference symbol is routed here: no filtering per bar.
        self.on_bar: Callable[[Bar], None] = self.detector.on_bar
        self.warmup_bars = self.detector.warmup_bars

    def allocate(self, ts: int, signals: Mapping[str, Mapping[str, float]]) -> Allocation:
        regime = self.detector.regime
        return self._initial if regime is None else self._by_regime[regime]


METHODS: Final[Mapping[str, MethodFactory]] = MappingProxyType(
    {
        "equal": EqualMethod,
        "static": StaticMethod,
        "inverse_vol": InverseVolMethod,
        "risk_parity": RiskParityMethod,
        "performance": PerformanceMethod,
        "regime": RegimeMethod,
    }
)
"""Composition methods by `ComposerSettings.method`."""
