"""Composition methods: how capital is split between strategies and, within one, its symbols.

A method is a `CompositionMethod`, built from the settings and each strategy's symbols, chosen
from the literal mapping `METHODS` keyed by `ComposerSettings.method`. Adding one is a new class
and one mapping entry (and its name in the `method` Literal of the settings).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Final, NamedTuple, Protocol, TypeAlias

from composer.indicators import RollingMeanStd
from composer.settings import ComposerSettings
from feeds.bar import Bar

_log = math.log


class Allocation(NamedTuple):
    """What a method decides at a rebalance.

    Attributes:
        strategy_weights: strategy id -> capital weight w_s.
        symbol_weights: strategy id -> symbol -> a_s[sym], the share of the strategy's capital
            given to each of its symbols.
    """

    strategy_weights: dict[str, float]
    symbol_weights: dict[str, dict[str, float]]


class CompositionMethod(Protocol):
    """The contract of a composition method.

    `observes_bars` False tells the composer not to call `on_bar` at all (stateless methods
    cost nothing per bar).
    """

    @property
    def warmup_bars(self) -> int:
        """Bars per symbol the method's own state needs (0 if it has none)."""
        ...

    @property
    def observes_bars(self) -> bool:
        """Whether `on_bar` must see every bar of the strategies' symbols."""
        ...

    def on_bar(self, bar: Bar) -> None:
        """Update the method's per-symbol state with one bar (HOT)."""
        ...

    def allocate(self, ts: int, signals: Mapping[str, Mapping[str, float]]) -> Allocation:
        """Decide the allocation at `ts` from each strategy's current signals.

        The composer never mutates the returned dicts, and a method must not mutate them
        either once returned: returning the same dict objects as at the previous call says
        "unchanged", and lets the composer reuse its previous targets when the signals did not
        change either. A method whose allocation changed returns new dicts.

        Args:
            ts: the slice time (UTC ns).
            signals: strategy id -> symbol -> signal, for every strategy and each of its
                symbols, in the configured order of the strategies.
        """
        ...


MethodFactory: TypeAlias = Callable[
    [ComposerSettings, Mapping[str, Sequence[str]]], CompositionMethod
]


def _equal_split(symbols_of: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    return {sid: dict.fromkeys(syms, 1.0 / len(syms)) for sid, syms in symbols_of.items()}


class EqualMethod:
    """Each of n strategies gets 1/n; each strategy splits equally over its symbols."""

    warmup_bars = 0
    observes_bars = False

    def __init__(self, settings: ComposerSettings, symbols_of: Mapping[str, Sequence[str]]) -> None:
        n = len(symbols_of)
        self._allocation = Allocation(dict.fromkeys(symbols_of, 1.0 / n), _equal_split(symbols_of))

    def on_bar(self, bar: Bar) -> None:
        """Stateless: never called (observes_bars is False)."""

    def allocate(self, ts: int, signals: Mapping[str, Mapping[str, float]]) -> Allocation:
        return self._allocation


class StaticMethod:
    """Capital weights as configured in `strategy_weights` (missing: 0); equal split."""

    warmup_bars = 0
    observes_bars = False

    def __init__(self, settings: ComposerSettings, symbols_of: Mapping[str, Sequence[str]]) -> None:
        configured = settings.strategy_weights
        self._allocation = Allocation(
            {sid: float(configured.get(sid, 0.0)) for sid in symbols_of},
            _equal_split(symbols_of),
        )

    def on_bar(self, bar: Bar) -> None:
        """Stateless: never called (observes_bars is False)."""

    def allocate(self, ts: int, signals: Mapping[str, Mapping[str, float]]) -> Allocation:
        return self._allocation


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

    def __init__(self, settings: ComposerSettings, symbols_of: Mapping[str, Sequence[str]]) -> None:
        lookback = settings.vol_lookback
        self.warmup_bars = lookback + 1  # n returns need n + 1 closes
        n = len(symbols_of)
        self._weights = dict.fromkeys(symbols_of, 1.0 / n)
        self._symbols_of = {sid: tuple(syms) for sid, syms in symbols_of.items()}
        self._equal = _equal_split(symbols_of)
        self._states = {sym: _VolState(lookback) for syms in symbols_of.values() for sym in syms}
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
        vols: dict[str, float] = {}
        for sym, st in self._states.items():
            stats = st.stats
            if stats.ready:
                v = stats.std
                vols[sym] = v
                if 0.0 < v < floor:
                    floor = v
        self._min_positive_vol = floor
        equal = self._equal
        if floor == math.inf:
            return Allocation(self._weights, equal)
        split: dict[str, dict[str, float]] = {}
        for sid, syms in self._symbols_of.items():
            inverse: dict[str, float] = {}
            for s in syms:
                vol = vols.get(s)
                if vol is None:  # not every symbol has a full window: split equally
                    split[sid] = equal[sid]
                    break
                inverse[s] = 1.0 / (vol if vol > 0.0 else floor)
            else:
                total = math.fsum(inverse.values())
                split[sid] = {s: x / total for s, x in inverse.items()}
        return Allocation(self._weights, split)


METHODS: Final[Mapping[str, MethodFactory]] = MappingProxyType(
    {
        "equal": EqualMethod,
        "static": StaticMethod,
        "inverse_vol": InverseVolMethod,
    }
)
"""Composition methods by `ComposerSettings.method`."""
