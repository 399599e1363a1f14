"""What a composition method decides (`Allocation`) and the contract every method keeps
(`CompositionMethod`, built by a `MethodFactory`), with the equal splits methods start from."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeAlias

from composer.settings import ComposerSettings
from composer.strategy import Strategy
from feeds.bar import Bar


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
    cost nothing per bar); True routes the bars of `observed_symbols` to it, after the
    strategies have seen each bar.
    """

    @property
    def warmup_bars(self) -> int:
        """Bars per symbol the method's own state needs (0 if it has none)."""
        ...

    @property
    def observes_bars(self) -> bool:
        """Whether `on_bar` must see every bar of the strategies' symbols."""
        ...

    @property
    def observed_symbols(self) -> tuple[str, ...]:
        """The symbols whose bars `on_bar` must see (any symbol of the universe)."""
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
    [ComposerSettings, Mapping[str, Strategy[Any]], Sequence[str]], CompositionMethod
]
"""(settings, strategy id -> strategy, universe) -> method; raises ConfigError on settings
that do not fit the strategies or the universe, with the key path first in the message."""


def strategy_symbols(strategies: Mapping[str, Strategy[Any]]) -> dict[str, tuple[str, ...]]:
    """Strategy id -> its symbols."""
    return {sid: tuple(s.symbols) for sid, s in strategies.items()}


def equal_split(symbols_of: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Each strategy's capital split equally over its symbols."""
    return {sid: dict.fromkeys(syms, 1.0 / len(syms)) for sid, syms in symbols_of.items()}


def equal_allocation(symbols_of: Mapping[str, Sequence[str]]) -> Allocation:
    """1/n of the capital to each of n strategies, each split equally over its symbols."""
    return Allocation(dict.fromkeys(symbols_of, 1.0 / len(symbols_of)), equal_split(symbols_of))
